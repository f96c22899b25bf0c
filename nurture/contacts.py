"""Importing contacts from CSV: mapped, typed per column, validated row by row, upserted in batches.

An import reads the file twice. The first pass decides everything before anything is written:
the encoding (:mod:`nurture.csvfile`), how each column maps to nurture's fields
(:mod:`nurture.csvmap`), each extra column's type, and which rows are bad; that is the
:class:`ImportPlan` the CLI prints (``--dry-run`` stops there). The second pass writes the good
rows ``batch_size`` per transaction, so memory stays flat whatever the file size.

Types: an extra column whose every non-empty cell is a number (``420``, ``-3.5``, ``2,500``,
``1,234.50``; no leading zeros, at most 15 digits) is a **number** column: its cells become
numbers and its empty cells null. Any other column is **text**, every cell a string (``007``,
``+81 3 …``, ``n/a``), so a template sees the same type for every contact of a file. Fields
(names, phone, …) are always text.

Bad rows (invalid email, unknown time zone, too many cells, bad quoting, a NUL byte, a cell over
64 KB) are :class:`~nurture.errors.CsvRowError` with their spreadsheet row number (the header
is row 1) and are skipped; good rows land.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from nurture.countries import country_code
from nurture.csvfile import Encoding, Record, TextSource, detect_encoding, open_sheet, open_text
from nurture.csvmap import FULL_NAME, FULL_NAME_FAMILY_FIRST, Column, ColumnMap, plan_columns, split_name
from nurture.errors import CsvRowError
from nurture.models import Rep
from nurture.store import Store
from nurture.store.contacts import ContactRow, email_key
from nurture.timeutil import zone

#: How many row errors an import keeps for its report (the rest are only counted).
MAX_ERRORS = 1000
#: A row whose address was erased (``nurture contacts forget``) is refused with this message.
ERASED_MESSAGE = "this address was erased on request and stays suppressed; it is not imported again"

_LABEL = r"[^\W_](?:[\w-]*[^\W_])?"
_EMAIL = re.compile(rf"^[^\s@<>()\[\],;:\"\\]+@{_LABEL}(?:\.{_LABEL})+$")
_NUMBER = re.compile(r"[+-]?(?:0|[1-9]\d{0,2}(?:,\d{3})+|[1-9]\d*)(?:\.\d+)?")


def valid_email(text: str) -> bool:
    return len(text) <= 254 and _EMAIL.match(text) is not None


def is_number(text: str) -> bool:
    """Whether a cell reads as a number for column typing (see the module docstring)."""
    return _NUMBER.fullmatch(text) is not None and sum(ch.isdigit() for ch in text) <= 15


def to_number(text: str) -> int | float:
    plain = text.replace(",", "")
    return float(plain) if "." in plain else int(plain)


@functools.lru_cache(maxsize=4096)
def _zone_ok(name: str) -> bool:
    try:
        zone(name)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class ColumnReport:
    """A column as understood: the mapping, and for an attribute its ``type`` (``number`` or
    ``text``) decided from the good rows; ``filled`` counts its non-empty cells in those rows."""

    column: Column
    type: str | None
    filled: int

    def describe(self) -> str:
        c = self.column
        header = f'"{c.header.strip()}"' if c.header.strip() else f"(column {c.index + 1}, no header)"
        if c.kind == "ignored":
            why = "--map" if c.via == "map" else "no header" if c.via == "empty header" else c.via
            return f"{header} → ignored ({why})"
        if c.kind == "field":
            what = {FULL_NAME: "first_name + last_name (split)",
                    FULL_NAME_FAMILY_FIRST: "last_name + first_name (family name first, split)"}.get(
                c.target or "", c.target or "")
            if c.target == "country":
                what += " (also the routing territory when the file has no territory column)"
            return f"{header} → {what}" + (" (--map)" if c.via == "map" else "")
        via = " (--map)" if c.via == "map" else ""
        return f"{header} → contact.{c.target} ({self.type}){via}"

    def as_json(self) -> dict[str, Any]:
        c = self.column
        return {"column": c.index + 1, "header": c.header, "kind": c.kind, "target": c.target, "via": c.via,
                "type": self.type, "filled": self.filled}


@dataclass(frozen=True, slots=True)
class ImportPlan:
    """What the first pass found, before anything is written."""

    file: str
    encoding: Encoding
    delimiter: str
    columns: tuple[ColumnReport, ...]
    rows: int
    blank: int
    bad: int
    errors: tuple[CsvRowError, ...]

    @property
    def good(self) -> int:
        return self.rows - self.bad

    def lines(self) -> list[str]:
        """The mapping report, one line per column after a heading line."""
        sep = {",": "comma", ";": "semicolon", "\t": "tab"}[self.delimiter]
        head = (f"{self.file}: read as {self.encoding.label}, {sep}-separated; {self.rows} rows "
                f"({self.good} good, {self.bad} bad{f', {self.blank} blank' if self.blank else ''})")
        return [head, *(f"  {c.describe()}" for c in self.columns)]

    def as_json(self) -> dict[str, Any]:
        return {"file": self.file, "encoding": self.encoding.label, "delimiter": self.delimiter,
                "rows": self.rows, "good": self.good, "bad": self.bad, "blank": self.blank,
                "columns": [c.as_json() for c in self.columns]}


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
    plan: ImportPlan | None = None
    dry_run: bool = False

    def __str__(self) -> str:
        if self.dry_run:
            return (f"{self.file}: dry run: {self.rows - self.skipped} rows would be imported, "
                    f"{self.skipped} skipped; nothing was written")
        return (f"{self.file}: {self.rows} rows: {self.new} new, {self.updated} updated, "
                f"{self.skipped} skipped")

    def as_json(self) -> dict[str, Any]:
        return {**(self.plan.as_json() if self.plan else {"file": self.file}), "dry_run": self.dry_run,
                "new": self.new, "updated": self.updated, "skipped": self.skipped,
                "errors": [{"row": e.row, "field": e.field, "message": e.message} for e in self.errors]}


@dataclass
class _Types:
    """Per attribute column: non-empty cells seen, and whether all were numbers."""

    filled: dict[int, int] = field(default_factory=dict)
    numeric: dict[int, bool] = field(default_factory=dict)

    def see(self, index: int, cell: str) -> None:
        self.filled[index] = self.filled.get(index, 0) + 1
        if self.numeric.get(index, True) and not is_number(cell):
            self.numeric[index] = False

    def type_of(self, index: int) -> str:
        return "number" if self.filled.get(index) and self.numeric.get(index, True) else "text"


class _Rows:
    """Turns records into contacts (or row errors) for one file's column plan."""

    def __init__(self, columns: Sequence[Column], width: int, *, file: str,
                 owners: Mapping[str, str] | None = None) -> None:
        self.file = file
        self.owners = owners or {}
        self.width = width
        by_target = {c.target: c.index for c in columns if c.kind == "field"}
        self.i_email = by_target["email"]
        self.i_tz = by_target.get("timezone")
        self.i_first, self.i_last = by_target.get("first_name"), by_target.get("last_name")
        self.i_full = by_target.get(FULL_NAME)
        self.i_full_jp = by_target.get(FULL_NAME_FAMILY_FIRST)
        self.i_country = by_target.get("country")
        self.derive_territory = "territory" not in by_target and self.i_country is not None
        skip = {"email", FULL_NAME, FULL_NAME_FAMILY_FIRST}
        self.fields = [(c.index, c.target or "") for c in columns if c.kind == "field" and c.target not in skip]
        self.attrs = [(c.index, c.target or "") for c in columns if c.kind == "attribute"]

    def check(self, rec: Record) -> str | CsvRowError | None:
        """The first pass: the row's email, a row error, or None for a blank row."""
        item = self._valid(rec)
        return item if item is None or isinstance(item, CsvRowError) else item[0]

    def parse(self, rec: Record, types: Mapping[int, str] | None) -> ContactRow | CsvRowError | None:
        """A contact, a row error, or None for a blank row. ``types`` (index → number/text)
        converts attributes; without it they stay text."""
        item = self._valid(rec)
        if item is None or isinstance(item, CsvRowError):
            return item
        email, cells = item
        values = {name: cells[i].strip() for i, name in self.fields}
        if self.owners and values.get("owner"):
            values["owner"] = self.owners.get(values["owner"].casefold(), values["owner"])
        self._names(cells, values)
        if self.derive_territory and self.i_country is not None:
            country = cells[self.i_country].strip()
            if country:
                values["territory"] = country_code(country) or country
        attrs: dict[str, Any] = {}
        for i, name in self.attrs:
            text = cells[i].strip()
            if types is not None and types.get(i) == "number":
                attrs[name] = to_number(text) if text else None
            else:
                attrs[name] = text
        return ContactRow(email, values, attrs)

    def _valid(self, rec: Record) -> tuple[str, list[str]] | CsvRowError | None:
        if rec.cells is None:
            return CsvRowError(rec.error or "cannot be read", file=self.file, row=rec.row)
        cells = rec.cells
        first = cells[self.i_email].strip() if len(cells) > self.i_email else ""
        if not first and not any(c.strip() for c in cells):
            return None
        n = len(cells)
        if n != self.width:
            if n > self.width and any(c.strip() for c in cells[self.width:]):
                return CsvRowError(f"has {n} cells but the header has {self.width}", file=self.file, row=rec.row)
            cells = (cells + [""] * self.width)[:self.width]
        email = cells[self.i_email].strip()
        if not email:
            return CsvRowError("is empty", file=self.file, row=rec.row, field="email")
        if not valid_email(email):
            return CsvRowError(f'"{email}" is not an email address', file=self.file, row=rec.row, field="email")
        if self.i_tz is not None:
            tz = cells[self.i_tz].strip()
            if tz and not _zone_ok(tz):
                return CsvRowError(f'"{tz}" is not a time zone', file=self.file, row=rec.row, field="timezone")
        return email, cells

    def _names(self, cells: list[str], values: dict[str, str]) -> None:
        if values.get("first_name") or values.get("last_name"):
            return
        for i, family_first in ((self.i_full, False), (self.i_full_jp, True)):
            if i is not None and cells[i].strip():
                first, last = split_name(cells[i].strip(), family_first=family_first)
                values["first_name"], values["last_name"] = first, last
                return


def _plan_and_rows(text: TextSource, *, file: str, encoding: Encoding, mapping: ColumnMap,
                   owners: Mapping[str, str] | None = None) -> tuple[list[Column], _Rows, Iterator[Record], str]:
    sheet = open_sheet(text, file=file, encoding=encoding)
    columns = list(plan_columns(sheet.header, mapping, file=file))
    return columns, _Rows(columns, len(sheet.header), file=file, owners=owners), sheet.records, sheet.delimiter


def import_contacts(
    store: Store,
    path: str | Path,
    *,
    now: datetime,
    mapping: ColumnMap | None = None,
    encoding: str | None = None,
    dry_run: bool = False,
    erased: Callable[[Sequence[str]], set[str]] | None = None,
    owners: Mapping[str, str] | None = None,
    on_plan: Callable[[ImportPlan], None] | None = None,
    batch_size: int = 2000,
    progress: Callable[[int], None] | None = None,
    on_batch: Callable[[Sequence[str]], None] | None = None,
    display_name: str | None = None,
) -> ImportSummary:
    """Read ``path``, decide its plan, then stream its good rows into ``store`` (upsert by
    email, case-insensitive) unless ``dry_run``.

    ``encoding`` names a codec instead of detecting one; ``mapping`` overrides the column
    aliases; ``erased(email_keys)`` returns the keys whose address was erased (those rows are
    refused); ``owners`` maps a rep's name or address (case-folded) to their id, for CRM
    exports that name the owner (``Contact owner: Aoki Yui``); ``on_plan(plan)`` is called
    after the first pass, before anything is written;
    ``progress(bytes)`` after each batch of either pass (reaching the file size at the end);
    ``on_batch(email_keys)`` after each batch is written (``nurture enroll --csv`` enrolls them).
    """
    name = display_name or str(path)
    enc = detect_encoding(path, requested=encoding, file=name)
    mapping = mapping or ColumnMap.empty()
    size = Path(path).stat().st_size

    # Pass 1: plan, types, errors. Nothing is written.
    types = _Types()
    errors: list[CsvRowError] = []
    rows = blank = bad = 0
    refused: set[str] = set()
    raw, text = open_text(path, encoding=enc, file=name)
    with raw, text:
        columns, parser, records, delimiter = _plan_and_rows(text, file=name, encoding=enc, mapping=mapping,
                                                             owners=owners)
        attr_index = [c.index for c in columns if c.kind == "attribute"]
        pending: list[tuple[int, str]] = []

        def check_erased() -> None:
            nonlocal bad
            if erased is not None and pending:
                gone = erased([k for _, k in pending])
                for row, key in pending:
                    if key in gone:
                        refused.add(key)
                        bad += 1
                        if len(errors) < MAX_ERRORS:
                            errors.append(CsvRowError(ERASED_MESSAGE, file=name, row=row, field="email"))
            pending.clear()

        for rec in records:
            item = parser.check(rec)
            if item is None:
                blank += 1
                continue
            rows += 1
            if isinstance(item, CsvRowError):
                bad += 1
                if len(errors) < MAX_ERRORS:
                    errors.append(item)
                continue
            cells = rec.cells or []
            for i in attr_index:
                cell = cells[i].strip() if i < len(cells) else ""
                if cell:
                    types.see(i, cell)
            pending.append((rec.row, email_key(item)))
            if len(pending) >= batch_size:
                check_erased()
                if progress is not None:
                    progress(raw.tell() // 2)
        check_erased()
    errors.sort(key=lambda e: e.row)
    col_types = {i: types.type_of(i) for i in attr_index}
    plan = ImportPlan(
        file=name, encoding=enc, delimiter=delimiter, rows=rows, blank=blank, bad=bad, errors=tuple(errors),
        columns=tuple(ColumnReport(c, col_types.get(c.index), types.filled.get(c.index, 0)) for c in columns))
    if on_plan is not None:
        on_plan(plan)
    if dry_run:
        if progress is not None:
            progress(size)
        return ImportSummary(file=name, rows=rows, new=0, updated=0, skipped=bad, errors=plan.errors,
                             bytes_read=size, plan=plan, dry_run=True)

    # Pass 2: write the good rows.
    new = updated = 0
    batch: list[ContactRow] = []
    raw, text = open_text(path, encoding=enc, file=name)
    with raw, text:
        _, parser, records, _ = _plan_and_rows(text, file=name, encoding=enc, mapping=mapping, owners=owners)

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
                progress((size + raw.tell()) // 2)

        for rec in records:
            contact = parser.parse(rec, col_types)
            if contact is None or isinstance(contact, CsvRowError):
                continue
            if refused and email_key(contact.email) in refused:
                continue
            batch.append(contact)
            if len(batch) >= batch_size:
                flush()
        flush()
        bytes_read = raw.tell()
    return ImportSummary(file=name, rows=rows, new=new, updated=updated, skipped=bad, errors=plan.errors,
                         bytes_read=bytes_read, plan=plan)


def parse_rows(lines: Iterator[str], *, file: str, mapping: ColumnMap | None = None
               ) -> Iterator[ContactRow | CsvRowError]:
    """Contacts (or row errors) from CSV text lines, header first, with every extra column as
    text (the importer decides column types over the whole file). Blank rows are left out."""
    from nurture.csvfile import UTF8

    stream = _LineStream(lines)
    _, parser, records, _ = _plan_and_rows(stream, file=file, encoding=UTF8, mapping=mapping or ColumnMap.empty())
    for rec in records:
        item = parser.parse(rec, None)
        if item is not None:
            yield item


class _LineStream:
    """Lines as the small part of a text file :func:`open_sheet` reads (``readline``, iteration)."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines

    def readline(self) -> str:
        return next(self._lines, "")

    def __iter__(self) -> Iterator[str]:
        return self._lines


def rep_owners(reps: Sequence[Rep]) -> dict[str, str]:
    """Case-folded rep id, name (either order) and address → rep id, for ``owners=``."""
    out: dict[str, str] = {}
    for r in reps:
        parts = str(r.name).split()
        for key in (r.id, r.name, " ".join(reversed(parts)), r.email):
            if key:
                out.setdefault(str(key).casefold(), r.id)
    return out
