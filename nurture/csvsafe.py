"""CSV that is safe to open in a spreadsheet: every CSV nurture writes goes through here.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is read by
Excel, LibreOffice and Google Sheets as a formula (OWASP, "CSV Injection"); contact fields
come from imports and forms, so such a text cell is written with a leading ``'``, which the
spreadsheet shows as text. Numbers are written as they are.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

#: First characters that make a spreadsheet evaluate a cell (fullwidth forms included:
#: some spreadsheets normalise them).
FORMULA_START = frozenset("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20")


class _Text(Protocol):
    def write(self, s: str, /) -> Any: ...


def safe_cell(value: object) -> object:
    """``value`` as a CSV cell that no spreadsheet evaluates (None → empty)."""
    if value is None:
        return ""
    if isinstance(value, (bool, int, float)):
        return value
    text = str(value)
    if text and text[0] in FORMULA_START:
        return "'" + text
    return text


def unescape_cell(text: str) -> str:
    """The reverse of :func:`safe_cell`, for imports: ``'=x`` → ``=x`` (the leading quote is
    the spreadsheet's "this is text" mark, which nurture's own exports add)."""
    if len(text) > 1 and text[0] == "'" and text[1] in FORMULA_START:
        return text[1:]
    return text


class SafeWriter:
    """``csv.writer`` with every cell passed through :func:`safe_cell`."""

    def __init__(self, out: _Text, **fmt: Any) -> None:
        self._w = csv.writer(out, **fmt)

    def writerow(self, row: Iterable[object]) -> None:
        self._w.writerow([safe_cell(v) for v in row])

    def writerows(self, rows: Iterable[Iterable[object]]) -> None:
        for row in rows:
            self.writerow(row)


class SafeDictWriter:
    """``csv.DictWriter`` with every value passed through :func:`safe_cell` (the header too)."""

    def __init__(self, out: _Text, *, fieldnames: Sequence[str], **fmt: Any) -> None:
        self.fieldnames = list(fieldnames)
        self._w = SafeWriter(out, **fmt)

    def writeheader(self) -> None:
        self._w.writerow(self.fieldnames)

    def writerow(self, row: Mapping[str, object]) -> None:
        extra = set(row) - set(self.fieldnames)
        if extra:
            raise ValueError(f"fields not in fieldnames: {', '.join(sorted(extra))}")
        self._w.writerow(row.get(k) for k in self.fieldnames)

    def writerows(self, rows: Iterable[Mapping[str, object]]) -> None:
        for row in rows:
            self.writerow(row)


def writer(out: _Text, **fmt: Any) -> SafeWriter:
    """A safe ``csv.writer`` over ``out`` (same formatting keywords)."""
    return SafeWriter(out, **fmt)


def dict_writer(out: _Text, *, fieldnames: Sequence[str], **fmt: Any) -> SafeDictWriter:
    """A safe ``csv.DictWriter`` over ``out``."""
    return SafeDictWriter(out, fieldnames=fieldnames, **fmt)
