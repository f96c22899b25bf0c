"""Small helpers shared by several test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime


class Clock:
    """A clock the test sets by hand (``clock.now = later``), for code that takes ``now()``."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def worker_result(proc: asyncio.subprocess.Process, *, timeout: float,
                        tail: int = 2000) -> dict[str, float]:
    """Wait for a worker script (tests/_send_worker.py, _scaleout_worker.py) to exit 0 and
    return the dict of numbers it printed after ``done``; stderr's last ``tail`` characters
    explain a failure."""
    out, err = await asyncio.wait_for(proc.communicate(), timeout=timeout)
    assert proc.returncode == 0, err.decode()[-tail:]
    m = re.search(rb"done (\{.*\})", out)
    assert m, out
    return eval(m.group(1))  # the worker prints a dict of numbers
