"""The composition root (``nurture.parts``) and ``nurture run``: every part in one process, on real servers."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from support import ChildOutput

from nurture.campaigns import find_campaign
from nurture.parts import RUN, Context, Options, render_processes, run_parts
from nurture.scheduler import enroll
from nurture.sender import SenderOptions
from nurture.store import open_async_store
from nurture.timeutil import utcnow

ROOT = Path(__file__).resolve().parent.parent


async def test_run_parts_sends_tracks_and_serves(make_settings, smtp_sink, tmp_path):
    settings = make_settings(smtp={"host": "127.0.0.1", "port": smtp_sink.port, "rate": "100/s"},
                             tracking={"listen": "127.0.0.1:0"})
    campaign = find_campaign(ROOT / "campaigns", "ec-payments")
    # Send windows are Mon–Fri 09:00–18:00 local: use a campaign without one for a real clock.
    campaign = replace(campaign, send_window=type(campaign.send_window)())
    store = open_async_store(settings.database)
    csv = tmp_path / "c.csv"
    csv.write_text("email,first_name,company,timezone\nkim@shop.example,Kim,Shop,Asia/Tokyo\n")
    from nurture.contacts import import_contacts

    await store.run(lambda s: import_contacts(s, csv, now=utcnow()))
    await store.run(lambda s: enroll(s, campaign, now=utcnow(), all_contacts=True))
    urls: dict[str, str] = {}
    stop = asyncio.Event()
    # The tracker's public URL must be known before rendering: bind it first.
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = replace(settings, tracking=replace(settings.tracking, base_url=f"http://127.0.0.1:{port}",
                                                  listen=f"127.0.0.1:{port}"))
    ctx = Context(settings=settings, store=store, campaigns={campaign.id: campaign}, stop=stop,
                  ready=urls.__setitem__, options=Options(reps_port=0, sender=SenderOptions(idle=0.1)))
    job = asyncio.create_task(run_parts([n for n in RUN if n != "webhooks"], ctx))
    try:
        for _ in range(200):
            if smtp_sink.sink.messages:
                break
            await asyncio.sleep(0.05)
        assert len(smtp_sink.sink.messages) == 1
        html = smtp_sink.sink.messages[0].message.get_body(preferencelist=("html",)).get_content()
        # The visible "Read the full story" button (the first href is the hidden honeypot).
        link = re.search(r'href="(http://127\.0\.0\.1:\d+/c/[^"]+)"[^>]*>Read the full story', html).group(1)
        browser = {"User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 "
                                 "(KHTML, like Gecko) Version/18.1 Safari/605.1.15"}
        async with aiohttp.ClientSession(headers=browser) as http:
            async with http.get(link, allow_redirects=False) as r:
                assert r.status == 302 and r.headers["Location"].startswith("https://acme.example/")
            async with http.get(urls["reps"] + "/healthz") as r:
                assert r.status == 200
        clicks = await store.run(lambda s: s.query("SELECT method, verdict FROM clicks"))
        assert clicks == [{"method": "GET", "verdict": "pending"}]
    finally:
        stop.set()
        await job
        await store.aclose()
    assert set(urls) == {"tracker", "reps"}


def test_nurture_run_stops_cleanly_on_sigterm(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"database: {tmp_path / 'n.db'}\ncampaigns_dir: {ROOT / 'campaigns'}\n"
                   f"templates_dir: {ROOT / 'templates'}\nsmtp: {{port: 1}}\n"
                   "tracking: {listen: '127.0.0.1:0'}\nreps_app: {listen: '127.0.0.1:0'}\n")
    # stdout only (the console's lines); the logs go to a file, not into the same pipe.
    with open(tmp_path / "stderr.log", "w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", "nurture", "--config", str(cfg), "run"],
                                stdout=subprocess.PIPE, stderr=err, text=True,
                                env={**os.environ, "COLUMNS": "200", "NURTURE_SECRET": "parts-test-secret"})
        out = ChildOutput(proc)
        listening = r"● (tracker \(public links\)|reps' app) listening on (http://127\.0\.0\.1:\d+)"
        ready = out.ready(listening, count=2, key=lambda m: m.group(1))
        assert {m.group(1) for m in ready} == {"tracker (public links)", "reps' app"}
        proc.send_signal(signal.SIGTERM)
        text = out.finish(timeout=30)
        assert proc.wait(10) == 0, text + err.read()
    assert text.splitlines()[-1].startswith("stopped: ")


BROWSER = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 "
           "(KHTML, like Gecko) Version/18.1 Safari/605.1.15")
ENV = {**os.environ, "COLUMNS": "200", "NURTURE_SECRET": "parts-test-secret"}


def _free_ports(n: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _sent_workspace(tmp_path: Path, *, contacts: int = 1) -> tuple[Path, list[str], int]:
    """A project whose `nurture send --once` has mailed ``contacts`` people: the config, one
    visible tracked link per mail, and the tracker's port. The mails are two minutes old, as
    a person's click would find them (a click seconds after delivery looks like a scanner's)."""
    import sqlite3

    from nurture.sink import Sink, start_sink

    tport, rport = _free_ports(2)
    cfg = tmp_path / "config.yaml"

    async def send_once() -> list:
        sink = await start_sink(Sink())
        # The shipped campaign without its send window, so the test does not depend on the hour.
        (tmp_path / "campaigns").mkdir()
        yaml_text = (ROOT / "campaigns" / "industry-news.yaml").read_text()
        yaml_text = re.sub(r"(?m)^send_window:.*\n", "", yaml_text)
        (tmp_path / "campaigns" / "industry-news.yaml").write_text(yaml_text)
        cfg.write_text(
            f"database: {tmp_path / 'n.db'}\ncampaigns_dir: {tmp_path / 'campaigns'}\n"
            f"templates_dir: {ROOT / 'templates'}\nsmtp: {{port: {sink.port}, rate: 50/s}}\n"
            f"tracking: {{listen: '127.0.0.1:{tport}', base_url: 'http://127.0.0.1:{tport}', settle: 1s}}\n"
            f"reps_app: {{listen: '127.0.0.1:{rport}'}}\n"
            "reps: [{id: aoki, name: Aoki Yui, email: aoki@acme.example, timezone: Asia/Tokyo, territory: [JP]}]\n")
        csv = tmp_path / "c.csv"
        csv.write_text("email,first_name,company,timezone,territory\n" + "".join(
            f"kim{i}@shop{i}.example,Kim,Shop {i},UTC,JP\n" for i in range(contacts)))
        for args in (["contacts", "import", str(csv)], ["enroll", "industry-news", "--all"],
                     ["send", "--once"]):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "nurture", "--config", str(cfg), *args, env=ENV,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out, _ = await proc.communicate()
            assert proc.returncode == 0, out.decode()
        await sink.aclose()
        return sink.sink.messages

    messages = asyncio.run(send_once())
    assert len(messages) == contacts
    with sqlite3.connect(tmp_path / "n.db") as db:
        db.execute("UPDATE sends SET sent_at = sent_at - 120")
    links = []
    for m in messages:
        html = m.message.get_body(preferencelist=("html",)).get_content()
        links.append(re.findall(r'href="(http://127\.0\.0\.1:\d+/c/[^"]+)"', html)[1])  # [0]: the honeypot
    return cfg, links, tport


def _wait_healthy(port: int, proc: subprocess.Popen[str]) -> None:
    import time
    import urllib.request

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the tracker did not come up")


def _click(url: str) -> None:
    """One click from a fresh connection (so SO_REUSEPORT may hand it to any worker)."""
    import http.client
    from urllib.parse import urlsplit

    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
    try:
        conn.request("GET", u.path, headers={"User-Agent": BROWSER, "Connection": "close"})
        assert conn.getresponse().status == 302
    finally:
        conn.close()


def _task_latencies(cfg: Path, links: list[str], tport: int, command: list[str]) -> list[float]:
    """Seconds from each click's 302 to its contact's task, through ``nurture <command>``."""
    import time

    from nurture.store import open_store

    proc = subprocess.Popen([sys.executable, "-m", "nurture", "--config", str(cfg), *command],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    store = open_store(str(cfg.parent / "n.db"))
    latencies = []
    try:
        _wait_healthy(tport, proc)
        for link in links:
            before = len(store.query("SELECT id FROM tasks"))
            _click(link)
            clicked = time.monotonic()
            while len(store.query("SELECT id FROM tasks")) == before:
                assert time.monotonic() - clicked < 30, "no task"
                time.sleep(0.02)
            latencies.append(time.monotonic() - clicked)
        assert [r["kind"] for r in store.query("SELECT kind FROM tasks")] == ["call"] * len(links)
    finally:
        store.close()
        proc.terminate()
        proc.wait(timeout=20)
    return latencies


def test_split_deployment_send_then_serve_raises_tasks(tmp_path):
    """`nurture send --once` then `nurture serve`: a person's click becomes a task for the rep."""
    cfg, links, tport = _sent_workspace(tmp_path)
    assert len(_task_latencies(cfg, links, tport, ["serve"])) == 1
    from nurture.store import open_store

    store = open_store(str(tmp_path / "n.db"))
    try:
        assert store.query("SELECT rep_id, kind FROM tasks") == [{"rep_id": "aoki", "kind": "call"}]
    finally:
        store.close()


def test_a_click_through_serve_raises_its_task_as_fast_as_through_run(tmp_path):
    """The same wake-ups in both deployments: commit → settle (after the 1 s window) → task.
    Two serve workers: clicks that land on worker 1 wake worker 0's settle pass too."""
    run_dir, serve_dir = tmp_path / "run", tmp_path / "serve"
    run_dir.mkdir()
    serve_dir.mkdir()
    run = _task_latencies(*_sent_workspace(run_dir, contacts=3), ["run"])
    serve = _task_latencies(*_sent_workspace(serve_dir, contacts=6), ["serve", "--workers", "2"])
    # settle 1 s; without the wake-ups a click waits for the next timed round (2 s and more).
    assert max(run) < 1.8, run
    assert max(serve) < 1.8, serve


def test_a_database_that_cannot_be_opened_is_a_message_not_a_traceback(tmp_path):
    from click.testing import CliRunner

    from nurture.cli import main

    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"database: {tmp_path / 'missing' / 'n.db'}\n")
    out = CliRunner().invoke(main, ["--config", str(cfg), "tasks"])
    assert out.exit_code == 1
    assert "cannot open the database" in out.output and "does not exist" in out.output
    assert "Traceback" not in out.output


def test_the_sender_renders_in_a_process_of_its_own_with_a_second_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert render_processes() == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)  # pinned to one core
    assert render_processes() == 0
    assert render_processes(2) == 2 and render_processes(0) == 0 and render_processes(-1) == 0
