"""Telling a database that cannot be written (disk full, quota) from other failures.

Such a failure is the operator's to fix, not a bug: nurture reports it in one line (no
traceback), keeps the outbox consistent and, in the tracker, still redirects the click.
"""

from __future__ import annotations

import errno
import sqlite3

from nurture.errors import NurtureError

#: PostgreSQL's SQLSTATE for disk_full (class 53: insufficient resources).
_PG_DISK_FULL = "53100"


class StoreUnwritable(NurtureError):
    """The database refused a write because there is no room (disk full, SQLITE_FULL)."""


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) says the database or its disk is full."""
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, StoreUnwritable):
            return True
        if isinstance(e, sqlite3.Error):
            code = getattr(e, "sqlite_errorcode", None)
            if code == sqlite3.SQLITE_FULL or "database or disk is full" in str(e):
                return True
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if getattr(e, "sqlstate", None) == _PG_DISK_FULL:
            return True
        e = e.__cause__ or e.__context__
    return False


def unwritable(error: BaseException, *, doing: str) -> StoreUnwritable:
    """The one-line error for ``error`` while ``doing`` (e.g. "marking a send")."""
    first = str(error).splitlines()[0] if str(error) else type(error).__name__
    return StoreUnwritable(f"the database cannot be written while {doing} ({first}): free disk space, "
                           "then run again; nothing was marked that was not done")
