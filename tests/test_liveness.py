"""nurture.liveness: which lease owners are gone (a dead pid here, a stale heartbeat elsewhere)."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

from nurture.liveness import LeaseHolder, ProcessId, is_gone, process_alive, this_process

STALE = timedelta(seconds=60)


def holder(process: ProcessId | None, beat_at=None) -> LeaseHolder:
    return LeaseHolder(owner="h:1:x", rows=3, until=None, process=process, beat_at=beat_at)


def test_this_process_is_alive_and_a_reaped_child_is_not(now):
    me = this_process()
    assert process_alive(me)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = ProcessId(machine=me.machine, pid=child.pid, started=me.started)
    assert not process_alive(dead)
    assert is_gone(holder(dead, beat_at=now), now=now, stale_after=STALE, me=me)  # a fresh beat does not save it


def test_a_reused_pid_with_another_start_time_is_not_the_owner(now):
    me = this_process()
    impostor = ProcessId(machine=me.machine, pid=me.pid, started="1")
    assert me.started is not None
    assert not process_alive(impostor)


def test_another_machines_owner_is_gone_only_when_its_heartbeat_is_stale(now):
    me = this_process()
    other = ProcessId(machine="elsewhere/boot/1", pid=me.pid, started=None)
    assert not is_gone(holder(other, beat_at=now - timedelta(seconds=30)), now=now, stale_after=STALE, me=me)
    assert is_gone(holder(other, beat_at=now - timedelta(seconds=61)), now=now, stale_after=STALE, me=me)


def test_an_owner_without_heartbeat_keeps_its_lease(now):
    assert not is_gone(holder(None), now=now, stale_after=STALE, me=this_process())
