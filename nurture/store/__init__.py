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

import functools

from nurture.errors import ConfigError
from nurture.store.base import AsyncStore, StoreBase
from nurture.store.contacts import ContactsMixin
from nurture.store.dialect import POSTGRES, SQLITE, is_postgres_url
from nurture.store.enrollments import EnrollmentsMixin
from nurture.store.inbound import InboundMixin
from nurture.store.leases import LeasesMixin
from nurture.store.logins import LoginsMixin
from nurture.store.metrics import MetricsMixin
from nurture.store.outbox import OutboxMixin
from nurture.store.pacing import PacingMixin
from nurture.store.people import PeopleMixin
from nurture.store.rate import RateMixin
from nurture.store.relay import RelayMixin
from nurture.store.reports import ReportsMixin
from nurture.store.tasks import TasksMixin
from nurture.store.tracking import TrackingMixin


class Store(RateMixin, OutboxMixin, TrackingMixin, PeopleMixin, ContactsMixin, EnrollmentsMixin, TasksMixin,
            ReportsMixin, InboundMixin, LeasesMixin, LoginsMixin, MetricsMixin, RelayMixin, PacingMixin,
            StoreBase):
    """The embedded SQLite store. See :class:`StoreBase` for opening and transactions.

    Every mixin is a :class:`StoreBase` (typed ``conn``, ``query``, ``transaction`` …), and a
    mixin that calls another's methods has that mixin as a base, so the order here lists
    users before what they use (rate before outbox; outbox, tracking and people before
    contacts and enrollments; reports before inbound)."""

    dialect = SQLITE


@functools.cache
def _pg_store() -> type[Store]:
    try:
        from nurture.store.pg import PgStoreBase  # psycopg is only needed for PostgreSQL
    except ImportError as e:
        raise ConfigError('a postgresql:// database needs psycopg: pip install "nurture[postgres]"') from e

    # The same mixins as Store, over the PostgreSQL base.
    bases = tuple(b for b in Store.__bases__ if b is not StoreBase) + (PgStoreBase,)
    return type("PgStore", bases, {"__doc__": "The same store on PostgreSQL.", "dialect": POSTGRES})


def _store_class(path: str) -> type[Store]:
    return _pg_store() if is_postgres_url(path) else Store


def open_store(path: str) -> Store:
    """Open (creating and migrating if needed) the database at ``path``: a SQLite file, or a
    ``postgresql://`` URL for the PostgreSQL backend behind the same interface."""
    return _store_class(path)(path)


def open_async_store(path: str) -> AsyncStore[Store]:
    """An :class:`AsyncStore` whose writer thread opens ``path`` (a file or a ``postgresql://`` URL)."""
    cls = _store_class(path)
    return AsyncStore(lambda: cls(path))


__all__ = ["AsyncStore", "Store", "open_async_store", "open_store"]
