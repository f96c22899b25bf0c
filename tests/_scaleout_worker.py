"""A sender process for the scale-out test and bench: sends what is due, then exits.

    python tests/_scaleout_worker.py DATABASE HOST PORT [--rate 20/s] [--pool N] [--batch N]

Prints ``ready`` once its store is open, then waits for a line on stdin (so several workers
start together), and ``done {...}`` with its counters at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _send_worker import FROM, stub_build  # noqa: E402


async def _main(args: argparse.Namespace) -> int:
    from nurture.config import settings_from_dict
    from nurture.sender import Backoff, SenderOptions, run_sender
    from nurture.store import open_async_store

    settings = settings_from_dict({
        "database": args.db, "sender": {"from": FROM},
        "smtp": {"host": args.host, "port": args.port, "max_connections": args.pool, "rate": args.rate,
                 "timeout": 5},
    })
    store = open_async_store(args.db)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    started = time.perf_counter()
    summary = await run_sender(
        store=store, settings=settings, build=stub_build, stop=asyncio.Event(), once=True,
        now=lambda: datetime.now(UTC),
        options=SenderOptions(lease=timedelta(seconds=60), backoff=Backoff(base=timedelta(0)),
                              batch=args.batch, shared_rate=not args.no_shared_rate),
    )
    elapsed = time.perf_counter() - started
    await store.aclose()
    print("done", {**summary.as_dict(), "seconds": round(elapsed, 4)}, flush=True)
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("db")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--rate", default="20/s")
    p.add_argument("--pool", type=int, default=4)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--no-shared-rate", action="store_true", help="per-process rate only (to show the difference)")
    sys.exit(asyncio.run(_main(p.parse_args())))
