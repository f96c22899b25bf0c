"""Scale-out: two sender processes on one database share the outbox and the global rate.

On PostgreSQL the claims use FOR UPDATE SKIP LOCKED and the rate bucket is a row both
senders take tokens from in their claim transaction; on SQLite the same code serialises on
BEGIN IMMEDIATE. Either way no row goes out twice, and what arrives at the sink respects the
configured rate across both processes together.
"""

from __future__ import annotations

import asyncio
import functools
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from _send_worker import header, seed
from support import worker_result

from nurture.sink import Sink, start_sink
from nurture.store import open_store

WORKER = str(Path(__file__).resolve().parent / "_scaleout_worker.py")
RATE = 25.0  # per second, for both senders together
N = 100


async def start_worker(db: str, port: int, *extra: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, WORKER, db, "127.0.0.1", str(port), *extra,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
    assert line.strip() == b"ready", (line, await proc.stderr.read())
    return proc


finish = functools.partial(worker_result, timeout=90, tail=3000)


@pytest.fixture(params=["postgres", "sqlite"])
def shared_db(request, tmp_path):
    """The same database for two processes: a PostgreSQL database, or one SQLite file."""
    if request.param == "postgres":
        return request.getfixturevalue("pg_url")
    return str(tmp_path / "shared.db")


async def run_two(db: str, *extra: str) -> tuple[list, list[dict[str, float]]]:
    running = await start_sink(Sink())
    try:
        procs = await asyncio.gather(*(start_worker(db, running.port, *extra) for _ in range(2)))
        for p in procs:  # go together
            p.stdin.write(b"go\n")
            await p.stdin.drain()
        results = await asyncio.gather(*(finish(p) for p in procs))
        return list(running.sink.messages), list(results)
    finally:
        await running.aclose()


async def test_two_senders_send_each_row_once_within_the_global_rate(shared_db, now):
    s = open_store(shared_db)
    seed(s, n=N, now=now - timedelta(minutes=1))
    s.close()
    got, results = await run_two(shared_db, "--rate", f"{RATE:g}/s", "--batch", "16")

    keys = Counter(header(m.data, "X-Nurture-Send") for m in got)
    assert len(keys) == N and set(keys.values()) == {1}, "a row went out twice or not at all"
    assert sum(r["sent"] for r in results) == N
    assert all(r["sent"] > 0 for r in results), f"one sender did all the work: {results}"

    # The bucket allows a burst of one second's worth, then RATE per second: any k
    # consecutive arrivals span at least (k - burst) / RATE seconds. Tokens are taken at
    # claim time, so arrivals may bunch by what is in flight: slack of both pools (2 x 4
    # mails) and 10%. With --no-shared-rate (per-process limits only) this is ~38 mails over.
    burst = RATE
    times = sorted(m.at.timestamp() for m in got)
    worst = 0.0
    for i in range(len(times)):
        for j in range(i + 1, len(times)):
            allowed = burst + 8 + RATE * (times[j] - times[i]) * 1.1
            worst = max(worst, (j - i + 1) - allowed)
    assert worst <= 0, f"{worst:.1f} mails over the global rate"
    span = times[-1] - times[0]
    assert span >= (N - burst - 8) / RATE / 1.1, f"{N} mails in {span:.2f}s at {RATE}/s with two senders"
    after = open_store(shared_db)
    assert after.outbox_counts() == {"sent": N}
    assert after.rate_state()["tokens"] < burst
    after.close()


def test_trackers_on_two_connections_share_the_click_ledger(shared_db, now):
    """Two trackers (two connections, as on two machines) group-commit clicks at the same time:
    every click is stored once, and the id each gets back is the id of its own row."""
    import threading

    from nurture.store.tracking import NewClick

    s = open_store(shared_db)
    sends = seed(s, n=20, now=now)
    link = s.link_id("c1", "s1", "pricing", "https://acme.example/pricing")
    s.close()
    got: dict[str, dict[str, int]] = {}
    errors: list[BaseException] = []

    def tracker(name: str) -> None:
        try:
            t = open_store(shared_db)
            mine: dict[str, int] = {}
            # Big batches, so that the two INSERTs overlap: on PostgreSQL their ids then
            # interleave (assuming consecutive ids got ~10% of them wrong when tried).
            for batch in range(10):
                clicks = [NewClick(send_id=sends[(batch + i) % len(sends)], link_id=link, at=now, method="GET",
                                   ip="192.0.2.7", user_agent=f"{name}-{batch}-{i}") for i in range(1000)]
                for c, click_id in zip(clicks, t.record_clicks(clicks), strict=True):
                    mine[c.user_agent] = click_id
            got[name] = mine
            t.close()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=tracker, args=(n,)) for n in ("a", "b")]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    s = open_store(shared_db)
    stored = {r["user_agent"]: r["id"] for r in s.query("SELECT id, user_agent FROM clicks")}
    assert len(stored) == 2 * 10 * 1000
    assert stored == {**got["a"], **got["b"]}
    s.close()


def test_two_schedulers_take_disjoint_due_enrollments(pg_url, now):
    """On PostgreSQL a tick locks the due enrollments it reads (SKIP LOCKED): a second tick at
    the same moment gets the others, never a stale copy of the same ones."""
    from nurture.store.contacts import ContactRow

    a, b = open_store(pg_url), open_store(pg_url)
    a.upsert_contacts([ContactRow(f"p{i}@x.example") for i in range(10)], now=now)
    a.enroll_contacts(campaign_id="c", first_step="s1", first_at=now, version=1, now=now, all_contacts=True)
    with a.transaction():
        first = a.due_enrollments(campaign_ids=["c"], now=now, limit=6)
        second = b.due_enrollments(campaign_ids=["c"], now=now, limit=10)  # does not wait for a
    assert len(first) == 6 and len(second) == 4
    assert not {e.id for e in first} & {e.id for e in second}
    assert len(b.due_enrollments(campaign_ids=["c"], now=now, limit=10)) == 10  # a committed, locks gone
    a.close()
    b.close()


def test_two_follow_up_loops_take_disjoint_clicks(pg_url, now):
    """On PostgreSQL unhandled clicks read inside a transaction are locked (SKIP LOCKED): the
    follow-up loop of a second ``nurture serve`` gets other clicks, never the same ones."""
    from nurture.store.tracking import NewClick

    a, b = open_store(pg_url), open_store(pg_url)
    sends = seed(a, n=10, now=now)
    link = a.link_id("c1", "s1", "pricing", "https://acme.example/pricing")
    a.record_clicks([NewClick(send_id=s, link_id=link, at=now, method="GET", verdict="human") for s in sends])
    with a.transaction():
        first = a.unhandled_human_clicks(limit=6)
        second = b.unhandled_human_clicks(limit=10)  # does not wait for a
    assert len(first) == 6 and len(second) == 4
    assert not {c.click_id for c in first} & {c.click_id for c in second}
    a.close()
    b.close()
