"""Crash safety: kill -9 a sender process at random points, SIGTERM one, run two at once.

The sink runs in the test process and records every message; each message names its
(enrollment, step) in a header, so deliveries can be counted per outbox row.
"""

from __future__ import annotations

import asyncio
import functools
import random
import signal
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from support import worker_result

from nurture.sink import Sink, start_sink
from nurture.store import open_store
from tests._send_worker import header, seed

pytestmark = pytest.mark.slow

WORKER = str(Path(__file__).resolve().parent / "_send_worker.py")
POOL = 4
N = 3000


class Recorder:
    """A sink that notes which sender run was alive when each message arrived."""

    def __init__(self) -> None:
        self.run = 0
        self.sink = Sink()
        self.by_run: list[int] = []
        self.sink.on_message = lambda rec: self.by_run.append(self.run)

    def keys(self) -> list[str | None]:
        return [header(m.data, "X-Nurture-Send") for m in self.sink.messages]


async def start_worker(db: str, port: int, *extra: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, WORKER, db, "127.0.0.1", str(port), "--pool", str(POOL), *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    line = await asyncio.wait_for(proc.stdout.readline(), timeout=20)
    assert line.strip() == b"ready", (line, await proc.stderr.read())
    return proc


finish = functools.partial(worker_result, timeout=60)


@pytest.fixture
async def recorder():
    rec = Recorder()
    running = await start_sink(rec.sink)
    rec.port = running.port
    yield rec
    await running.aclose()


def seed_db(db_path: str, now) -> None:
    s = open_store(db_path)
    seed(s, n=N // 2, now=now, steps=("s1", "s2"))
    s.close()


async def test_kill_9_at_random_points_loses_nothing_and_doubles_only_in_flight(recorder, db_path, now):
    seed_db(db_path, now)
    rng = random.Random()
    crashes = 0
    for run in range(1, 7):
        recorder.run = run
        before = len(recorder.sink.messages)
        proc = await start_worker(db_path, recorder.port)
        # a random moment: right away, or after a random number of deliveries
        target = before + rng.choice([0, rng.randint(1, 50), rng.randint(50, 400)])
        for _ in range(2000):
            if len(recorder.sink.messages) >= target or proc.returncode is not None:
                break
            await asyncio.sleep(0.001)
        await asyncio.sleep(rng.random() * 0.02)
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
            crashes += 1
        await proc.wait()
    # Right after the kills, on the real clock (every lease still runs for minutes): the final
    # run finds the killed senders gone and takes their rows back.
    recorder.run = 99
    final = await finish(await start_worker(db_path, recorder.port))

    s = open_store(db_path)
    assert s.outbox_counts() == {"sent": N}
    mids = {r["id"]: r["message_id"] for r in s.query("SELECT id, message_id FROM sends")}
    s.close()
    keys = recorder.keys()
    count = Counter(keys)
    assert len(count) == N, "a send was lost"
    doubled = {k: n for k, n in count.items() if n > 1}
    # every copy of a doubled mail carries the same Message-ID, the one in the ledger
    by_key = defaultdict(set)
    for k, m in zip(keys, recorder.sink.messages, strict=True):
        by_key[k].add(m.message_id)
    assert all(len(by_key[k]) == 1 for k in doubled)
    assert {next(iter(v)) for v in by_key.values()} == set(mids.values())
    # doubles come only from sends in flight when a sender was killed: at most POOL per crash
    first_run = {}
    for k, run in zip(keys, recorder.by_run, strict=True):
        first_run.setdefault(k, run)
    per_run = Counter(first_run[k] for k in doubled)
    assert all(n <= POOL for n in per_run.values()), per_run
    assert sum(doubled.values()) - len(doubled) <= POOL * crashes
    assert final["sent"] >= 1
    assert crashes == 0 or final["recovered"] >= 1
    print(f"\n{crashes} crashes, {len(doubled)} doubled, final run sent {final['sent']}")


async def test_sigterm_drains_and_nothing_is_doubled(recorder, db_path, now):
    seed_db(db_path, now)
    proc = await start_worker(db_path, recorder.port)
    while len(recorder.sink.messages) < 300 and proc.returncode is None:
        await asyncio.sleep(0.002)
    proc.send_signal(signal.SIGTERM)
    first = await finish(proc)
    s = open_store(db_path)
    counts = s.outbox_counts()
    assert "sending" not in counts and counts["sent"] == first["sent"] == len(recorder.sink.messages)
    s.close()
    assert first["sent"] < N, "the run ended before the signal; nothing was drained"
    await finish(await start_worker(db_path, recorder.port))
    count = Counter(recorder.keys())
    assert len(count) == N and set(count.values()) == {1}


async def test_two_senders_on_one_database_never_send_the_same_row(recorder, db_path, now):
    seed_db(db_path, now)
    a, b = await asyncio.gather(start_worker(db_path, recorder.port, "--batch", "16"),
                                start_worker(db_path, recorder.port, "--batch", "16"))
    ra, rb = await asyncio.gather(finish(a), finish(b))
    count = Counter(recorder.keys())
    assert len(count) == N and set(count.values()) == {1}
    assert ra["sent"] + rb["sent"] == N
    assert ra["sent"] > 0 and rb["sent"] > 0
