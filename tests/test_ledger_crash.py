"""The click ledger: group commit, flush on shutdown, and kill -9 under load loses no
click whose redirect the client received."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from support import ChildOutput
from test_store_tracking import seed

from nurture.signing import Signer
from nurture.store import open_async_store, open_store
from nurture.store.tracking import NewClick
from nurture.web.ledger import ClickLedger

SECRET = "crash-test-secret"


async def test_group_commit_batches_concurrent_clicks(db_path, now):
    store = open_async_store(db_path)
    seeded = await store.run(lambda s: seed(s, now=now))
    ledger = ClickLedger(store=store, interval=0.005)
    await ledger.start()
    try:
        ids = await asyncio.gather(*(ledger.record(NewClick(
            send_id=seeded.send_ids[0], link_id=seeded.link_ids["pricing"], at=now + timedelta(seconds=i),
            method="GET", user_agent=f"ua-{i}")) for i in range(500)))
    finally:
        await ledger.close()
    assert sorted(ids) == list(range(ids[0], ids[0] + 500))  # every click got its row id
    assert ledger.committed == 500 and ledger.commits < 50  # many clicks per transaction
    n = await store.run(lambda s: s.query("SELECT count(*) AS n FROM clicks")[0]["n"])
    assert n == 500
    await store.aclose()


async def test_close_flushes_everything_queued(db_path, now):
    store = open_async_store(db_path)
    seeded = await store.run(lambda s: seed(s, now=now))
    ledger = ClickLedger(store=store, interval=0.5)  # a long window: clicks are still queued
    await ledger.start()
    pending = [asyncio.create_task(ledger.record(NewClick(
        send_id=seeded.send_ids[0], link_id=seeded.link_ids["docs"], at=now, method="GET")))
        for _ in range(20)]
    await asyncio.sleep(0.01)
    await ledger.close()
    assert all(t.done() and t.result() for t in pending)
    assert await store.run(lambda s: s.query("SELECT count(*) AS n FROM clicks")[0]["n"]) == 20
    # After close, a late click is still written (directly), never dropped.
    assert await ledger.record(NewClick(send_id=seeded.send_ids[0], link_id=None, at=now,
                                        method="GET", kind="open"))
    await store.aclose()


#: The line each tracker worker prints once it listens (nurture/cli/tracking.py), whole.
READY = r"worker (\d+): tracker listening on (http://127\.0\.0\.1:\d+)"


def _start_server(tmp_path: Path, db: str, *args: str, workers: int = 1) -> tuple[subprocess.Popen, str]:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"database: {db}\ntracking:\n  listen: 127.0.0.1:0\n  group_commit_ms: 2\n"
                   "reps_app:\n  listen: 127.0.0.1:0\n")
    # Not PYTHONUNBUFFERED: the server flushes its ready lines itself, and unbuffered, print()
    # writes a line and its end separately, so lines of two workers on one pipe interleave.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"} | {"NURTURE_SECRET": SECRET}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from nurture.cli import main; main()", "--config", str(cfg), "serve", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    # Whole lines, one per worker: the workers share the pipe.
    ready = ChildOutput(proc).ready(READY, count=workers, key=lambda m: m.group(1))
    urls = {m.group(2) for m in ready}
    assert len(urls) == 1, urls  # every worker on the same port
    return proc, urls.pop()


async def _hammer(url: str, token: str, *, stop_after: int | None, proc: subprocess.Popen,
                  kill_signal: int) -> tuple[set[str], int]:
    """64 connections request /c/<token> with a unique User-Agent each; once ``stop_after``
    redirects came back, send ``kill_signal`` to the server while requests are in flight."""
    received: set[str] = set()
    counter = 0
    errors = 0
    killed = asyncio.Event()
    conn = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=5)) as http:
        async def client() -> None:
            nonlocal counter, errors
            while not killed.is_set() or errors < 64:
                counter += 1
                ua = f"load-{counter}"
                try:
                    async with http.get(f"{url}/c/{token}", headers={"User-Agent": ua},
                                        allow_redirects=False) as r:
                        if r.status == 302:
                            received.add(ua)
                            if len(received) == stop_after and not killed.is_set():
                                os.kill(proc.pid, kill_signal)
                                killed.set()
                except (TimeoutError, aiohttp.ClientError, OSError):
                    errors += 1
                    if killed.is_set():
                        return
                    await asyncio.sleep(0.01)
        await asyncio.gather(*(client() for _ in range(64)))
    return received, counter


def _recorded_agents(db: str) -> set[str]:
    """The user agents of every click in the database (each request sends its own)."""
    store = open_store(db)
    try:
        return {r["user_agent"] for r in store.query("SELECT user_agent FROM clicks")}
    finally:
        store.close()


@pytest.mark.slow
async def test_kill_9_under_load_loses_no_answered_click(tmp_path, now):
    db = str(tmp_path / "crash.db")
    store = open_store(db)
    seeded = seed(store, now=now)
    store.close()
    token = Signer({"k1": SECRET.encode()}, current="k1").sign(
        "click", seeded.send_ids[0], seeded.link_ids["pricing"])
    proc, url = _start_server(tmp_path, db)
    try:
        received, sent = await _hammer(url, token, stop_after=3000, proc=proc, kill_signal=signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    assert len(received) >= 3000 and sent > len(received)  # requests were in flight at the kill
    recorded = _recorded_agents(db)
    lost = received - recorded
    assert lost == set(), f"{len(lost)} answered clicks missing, e.g. {sorted(lost)[:5]}"


@pytest.mark.slow
async def test_sigterm_under_load_flushes_and_exits_cleanly(tmp_path, now):
    db = str(tmp_path / "term.db")
    store = open_store(db)
    seeded = seed(store, now=now)
    store.close()
    token = Signer({"k1": SECRET.encode()}, current="k1").sign(
        "click", seeded.send_ids[0], seeded.link_ids["docs"])
    proc, url = _start_server(tmp_path, db)
    try:
        received, _ = await _hammer(url, token, stop_after=1000, proc=proc, kill_signal=signal.SIGTERM)
        proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, proc.stderr.read()
    recorded = _recorded_agents(db)
    assert received and received <= recorded


@pytest.mark.slow
async def test_two_workers_share_the_port_and_the_database(tmp_path, now):
    db = str(tmp_path / "workers.db")
    store = open_store(db)
    seeded = seed(store, now=now)
    store.close()
    token = Signer({"k1": SECRET.encode()}, current="k1").sign(
        "click", seeded.send_ids[0], seeded.link_ids["case-study"])
    proc, url = _start_server(tmp_path, db, "--workers", "2", workers=2)
    try:
        async with aiohttp.ClientSession() as http:
            async def one(i: int) -> int:
                async with http.get(f"{url}/c/{token}", headers={"User-Agent": f"w-{i}"},
                                    allow_redirects=False) as r:
                    return r.status
            statuses = await asyncio.gather(*(one(i) for i in range(400)))
        assert set(statuses) == {302}
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, proc.stderr.read()
    store = open_store(db)
    assert store.query("SELECT count(*) AS n FROM clicks")[0]["n"] == 400
    store.close()
