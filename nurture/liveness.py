"""Whether the process that holds an outbox lease is still alive.

A sender registers itself (:class:`ProcessId`: machine, pid, start time) and renews a
heartbeat while it runs. Another sender may take back the rows leased by an owner that is
gone: on the same machine the owner's pid is checked at once (a pid reused by a later
process has another start time), elsewhere an owner whose heartbeat is older than
``stale_after`` counts as gone. An owner with no heartbeat row keeps its lease until it
lapses (a sender of an older version).
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class ProcessId:
    """One running process: ``machine`` tells hosts, boots and pid namespaces apart."""

    machine: str
    pid: int
    started: str | None


@dataclass(frozen=True, slots=True)
class LeaseHolder:
    """An owner of ``sending`` rows, with its heartbeat when it registered one."""

    owner: str
    rows: int
    until: datetime | None
    process: ProcessId | None
    beat_at: datetime | None


@functools.cache
def machine_id() -> str:
    """Host name, boot id and pid namespace: equal only for processes that see the same pids."""
    parts = [socket.gethostname()]
    with contextlib.suppress(OSError):
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            parts.append(f.read().strip())
    with contextlib.suppress(OSError):
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    return "/".join(parts)


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks) from ``/proc/<pid>/stat``, None when unreadable."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()  # the command name may hold spaces and parentheses
    if len(fields) < 20:
        return None
    return fields[0], fields[19]


def this_process() -> ProcessId:
    """This process, as another one on the same machine can check it."""
    stat = _proc_stat(os.getpid())
    return ProcessId(machine=machine_id(), pid=os.getpid(), started=stat[1] if stat else None)


def process_alive(process: ProcessId) -> bool:
    """On this machine: does ``process`` (same pid, same start time, not a zombie) still run?"""
    try:
        os.kill(process.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    stat = _proc_stat(process.pid)
    if stat is None:
        return True  # no /proc: the pid exists, which is all we can tell
    state, started = stat
    if state in ("Z", "X"):
        return False
    return process.started is None or started == process.started


def is_gone(holder: LeaseHolder, *, now: datetime, stale_after: timedelta, me: ProcessId | None = None) -> bool:
    """Whether ``holder``'s rows may be taken back before their lease lapses."""
    if holder.process is None:
        return False
    here = me or this_process()
    if holder.process.machine == here.machine:
        return not process_alive(holder.process)
    return holder.beat_at is not None and holder.beat_at < now - stale_after
