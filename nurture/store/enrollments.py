"""Store: enrollments. (Placeholder; filled in by its issue.)"""

from __future__ import annotations


class EnrollmentsMixin:
    pass
