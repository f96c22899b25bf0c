"""Store: tasks. (Placeholder; filled in by its issue.)"""

from __future__ import annotations


class TasksMixin:
    pass
