"""Store: tracking. (Placeholder; filled in by its issue.)"""

from __future__ import annotations


class TrackingMixin:
    pass
