"""Storage: every SQL statement nurture runs lives in this package.

:class:`Store` is synchronous and owns one sqlite3 connection (sqlite-utils ``Database``),
so it must be used from the thread that created it. Async code uses :class:`AsyncStore`,
which runs every call on one dedicated writer thread, as datasette does: one connection
owns all writes, and no connection crosses threads.

The interface is verb-named (``claim_sends``, ``mark_sent``, ``record_clicks`` …) and
deals in :mod:`nurture.models` dataclasses, so a PostgreSQL backend can implement it too.
Each area of the interface is a mixin in its own module.
"""

from __future__ import annotations

from nurture.store.base import AsyncStore, StoreBase
from nurture.store.contacts import ContactsMixin
from nurture.store.enrollments import EnrollmentsMixin
from nurture.store.outbox import OutboxMixin
from nurture.store.reports import ReportsMixin
from nurture.store.tasks import TasksMixin
from nurture.store.tracking import TrackingMixin


class Store(ContactsMixin, EnrollmentsMixin, OutboxMixin, TrackingMixin, TasksMixin, ReportsMixin,
            StoreBase):
    """The embedded SQLite store. See :class:`StoreBase` for opening and transactions."""


def open_store(path: str) -> Store:
    """Open (creating and migrating if needed) the database at ``path``."""
    return Store(path)


def open_async_store(path: str) -> AsyncStore:
    """An :class:`AsyncStore` whose writer thread opens ``path``."""
    return AsyncStore(lambda: Store(path))


__all__ = ["AsyncStore", "Store", "open_async_store", "open_store"]
