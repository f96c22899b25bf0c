"""tests/support.py: reading a child's ready lines survives what a shared pipe does to them."""

from __future__ import annotations

import subprocess
import sys

import pytest
from support import ChildOutput

READY = r"worker (\d+): tracker listening on (http://127\.0\.0\.1:\d+)"

# Two writers' lines torn into each other, as print() under PYTHONUNBUFFERED did, then whole ones.
TORN = r"""
import sys, time
w = sys.stdout.write
w("worker 1: tracker listening on http://127.0.0.1:33227"); w("reps' app listening on http://127.0.0.1:1\n"); w("\n")
w("worker 0: tracker listening on http://127.0.0.1:33227\n")
w("worker 0: tracker listening on http://127.0.0.1:9\n")  # a second line of worker 0 does not count twice
w("worker 1: tracker listening on http://127.0.0.1:33227\n")
sys.stdout.flush()
time.sleep(30)
"""


def child(code: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_torn_lines_never_yield_a_wrong_url() -> None:
    proc = child(TORN)
    try:
        found = ChildOutput(proc).ready(READY, count=2, key=lambda m: m.group(1), timeout=10)
        assert sorted((m.group(1), m.group(2)) for m in found) == [
            ("0", "http://127.0.0.1:33227"), ("1", "http://127.0.0.1:33227")]
    finally:
        proc.kill()
        proc.wait()


def test_a_child_that_exits_or_stays_silent_fails_with_its_output() -> None:
    proc = child("import sys; print('starting'); sys.exit('no database')")
    with pytest.raises(AssertionError, match=r"0 of 1 lines.*starting.*no database"):
        ChildOutput(proc).ready(READY, timeout=10)
    proc = child("import time; time.sleep(30)")
    with pytest.raises(AssertionError, match="0 of 1 lines"):
        ChildOutput(proc).ready(READY, timeout=0.5)
    assert proc.wait(5) != 0  # killed, not left running


def test_finish_returns_everything_printed() -> None:
    proc = child("print('worker 0: tracker listening on http://127.0.0.1:5'); print('stopped')")
    out = ChildOutput(proc)
    assert out.ready(READY)[0].group(2) == "http://127.0.0.1:5"
    assert out.finish(timeout=10).splitlines() == ["worker 0: tracker listening on http://127.0.0.1:5", "stopped"]
    assert proc.wait(5) == 0
