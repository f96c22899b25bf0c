"""Importing contacts from CSV: streamed, validated row by row, upserted in batches.

Columns: ``email`` (required), ``first_name``, ``last_name``, ``company``, ``industry``,
``phone``, ``timezone``, ``owner``, ``territory`` (or ``country``). Any other column is kept
in the contact's ``attributes`` and visible to templates as ``contact.<column>``.
Header names are matched case-insensitively, with spaces and dashes read as underscores.

A bad row (invalid email, unknown time zone, too many cells) is reported as a
:class:`~nurture.errors.CsvRowError` with its 1-based data row number (the header is not
counted) and skipped; good rows land. The file is read with :mod:`csv` in a single pass and
written ``batch_size`` rows per transaction, so memory stays flat whatever the file size.
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import operator
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from nurture.errors import CsvRowError, NurtureError
from nurture.store.contacts import CONTACT_FIELDS, ContactRow, email_key
from nurture.timeutil import zone

#: How many row errors an import keeps for its report (the rest are only counted).
MAX_ERRORS = 1000

_ALIASES = {
    "e_mail": "email", "email_address": "email", "mail": "email",
    "firstname": "first_name", "given_name": "first_name",
    "lastname": "last_name", "surname": "last_name", "family_name": "last_name",
    "company_name": "company", "organization": "company", "organisation": "company",
    "time_zone": "timezone", "tz": "timezone", "telephone": "phone", "phone_number": "phone",
}
_LABEL = r"[^\W_](?:[\w-]*[^\W_])?"
_EMAIL = re.compile(rf"^[^\s@<>()\[\],;:\"\\]+@{_LABEL}(?:\.{_LABEL})+$")
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """What an import did. ``errors`` holds the first :data:`MAX_ERRORS` bad rows."""

    file: str
    rows: int
    new: int
    updated: int
    skipped: int
    errors: tuple[CsvRowError, ...]
    bytes_read: int

    def __str__(self) -> str:
        return (f"{self.file}: {self.rows} rows: {self.new} new, {self.updated} updated, "
                f"{self.skipped} skipped")


def normalize_header(name: str) -> str:
    key = re.sub(r"[\s\-]+", "_", name.strip().lower())
    return _ALIASES.get(key, key)


@functools.lru_cache(maxsize=4096)
def _zone_ok(name: str) -> bool:
    try:
        zone(name)
    except ValueError:
        return False
    return True


_INT = re.compile(r"-?(?:0|[1-9]\d{0,15})")
_FLOAT = re.compile(r"-?(?:0|[1-9]\d{0,15})\.\d{1,15}")


def cell_value(cell: str) -> str | int | float:
    """An extra column's value for templates: numbers written plainly become numbers (so
    ``{{ "{:,}".format(contact.monthly_orders) }}`` works as it does for a campaign's samples);
    anything else, including ``007`` or ``+81 3 …``, stays text."""
    text = cell.strip()
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text) and not text.endswith("0"):
        return float(text)
    return text


def valid_email(text: str) -> bool:
    return len(text) <= 254 and _EMAIL.match(text) is not None


def parse_rows(lines: Iterator[str], *, file: str) -> Iterator[ContactRow | CsvRowError]:
    """Contacts (or row errors) from CSV text lines, header first. Blank rows are ignored."""
    first = next(lines, None)
    if first is None:
        raise NurtureError(f"{file}: the file is empty (expected a header row with an email column)")
    delimiter = ";" if first.count(";") > first.count(",") else "\t" if "\t" in first and "," not in first else ","
    reader = csv.reader(itertools.chain([first], lines), delimiter=delimiter)
    try:
        header = [normalize_header(h) for h in next(reader)]
    except csv.Error as e:
        raise NurtureError(f"{file}: header: {e}") from None
    if "email" not in header:
        raise NurtureError(f'{file}: no "email" column (columns: {", ".join(header) or "none"})')
    dupes = sorted({h for h in header if header.count(h) > 1 and h})
    if dupes:
        raise NurtureError(f'{file}: column {dupes[0]!r} appears twice in the header')
    if "territory" not in header and "country" in header:
        header[header.index("country")] = "territory"
    width = len(header)
    i_email = header.index("email")
    known = [(i, h) for i, h in enumerate(header) if h in CONTACT_FIELDS]
    extra = [(i, h) for i, h in enumerate(header) if h and h != "email" and h not in CONTACT_FIELDS]
    i_tz = header.index("timezone") if "timezone" in header else None
    known_names, known_get = _picker(known)
    extra_names, extra_get = _picker(extra)
    row_no = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            row_no += 1
            yield CsvRowError(str(e), file=file, row=row_no)
            continue
        except UnicodeDecodeError:
            raise NurtureError(f"{file}: row {row_no + 1}: the file is not UTF-8 text") from None
        n = len(cells)
        email = cells[i_email].strip() if n > i_email else ""
        if not email and not any(c.strip() for c in cells):
            continue  # a blank line is not a row
        row_no += 1
        if n != width:
            if n > width and any(c.strip() for c in cells[width:]):
                yield CsvRowError(f"has {n} cells but the header has {width}", file=file, row=row_no)
                continue
            cells = (cells + [""] * width)[:width]
        if not email:
            yield CsvRowError("is empty", file=file, row=row_no, field="email")
            continue
        if not valid_email(email):
            yield CsvRowError(f'"{email}" is not an email address', file=file, row=row_no, field="email")
            continue
        if i_tz is not None:
            tz = cells[i_tz].strip()
            if tz and not _zone_ok(tz):
                yield CsvRowError(f'"{tz}" is not a time zone', file=file, row=row_no, field="timezone")
                continue
        yield ContactRow(email, dict(zip(known_names, map(str.strip, known_get(cells)))),
                         dict(zip(extra_names, map(cell_value, extra_get(cells)))))


def _picker(columns: list[tuple[int, str]]) -> tuple[list[str], Callable[[list[str]], Sequence[str]]]:
    """Names and a fast getter of those cells (itemgetter returns a bare value for one index)."""
    idx = [i for i, _ in columns]
    names = [h for _, h in columns]
    if not idx:
        return names, lambda cells: ()
    if len(idx) == 1:
        return names, lambda cells: (cells[idx[0]],)
    return names, operator.itemgetter(*idx)


def import_contacts(
    store: Any,
    path: str | Path,
    *,
    now: datetime,
    batch_size: int = 2000,
    progress: Callable[[int], None] | None = None,
    on_batch: Callable[[Sequence[str]], None] | None = None,
    display_name: str | None = None,
) -> ImportSummary:
    """Stream ``path`` into ``store`` (upsert by email, case-insensitive).

    ``progress(bytes_read)`` is called after each batch; ``on_batch(email_keys)`` after each
    batch is written (``nurture enroll --csv`` enrolls them there).
    """
    name = display_name or str(path)
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed below; the byte position drives progress
    except OSError as e:
        raise NurtureError(f"{name}: {e.strerror or e}") from None
    with raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text:
        new = updated = skipped = rows = 0
        errors: list[CsvRowError] = []
        batch: list[ContactRow] = []

        def flush() -> None:
            nonlocal new, updated
            if batch:
                n, u = store.upsert_contacts(batch, now=now)
                new += n
                updated += u
                if on_batch is not None:
                    on_batch(list(dict.fromkeys(email_key(r.email) for r in batch)))
                batch.clear()
            if progress is not None:
                progress(raw.tell())

        try:
            for item in parse_rows(iter(text), file=name):
                rows += 1
                if isinstance(item, CsvRowError):
                    skipped += 1
                    if len(errors) < MAX_ERRORS:
                        errors.append(item)
                    continue
                batch.append(item)
                if len(batch) >= batch_size:
                    flush()
        except UnicodeDecodeError:
            raise NurtureError(f"{name}: row {rows + 1}: the file is not UTF-8 text") from None
        flush()
        return ImportSummary(file=name, rows=rows, new=new, updated=updated, skipped=skipped,
                             errors=tuple(errors), bytes_read=raw.tell())
