"""Store: outbox. (Placeholder; filled in by its issue.)"""

from __future__ import annotations


class OutboxMixin:
    pass
