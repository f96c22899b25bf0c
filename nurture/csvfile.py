"""Reading a CSV file as spreadsheets save it: the encoding, the delimiter, rows as a
spreadsheet numbers them, and limits that keep a hostile or broken file from being stored.

- **Encodings**: UTF-8 with or without a byte-order mark, UTF-16 with a byte-order mark
  (Excel's "Unicode text"), and Shift_JIS / CP932 (what Japanese Excel saves as "CSV") are
  recognised; ``encoding=`` names any other codec. Anything else is a one-line error that says
  to save the file as "CSV UTF-8".
- **Row numbers** are the ones a spreadsheet shows: the header is row 1, a blank line is a row,
  and a quoted cell spanning several lines is one row.
- **Limits**: a NUL byte, a cell over 64 KB, more than 500 columns, duplicate header names, and an
  unterminated quote (which would swallow the rows after it) are errors, never stored.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import re
from _csv import Reader
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from nurture.csvsafe import unescape_cell
from nurture.errors import NurtureError

MAX_FIELD = 64 * 1024
MAX_COLUMNS = 500
_CHUNK = 1 << 20
_SAVE_AS = 'save it from Excel as "CSV UTF-8 (Comma delimited)" (or name its encoding with --encoding)'
csv.field_size_limit(MAX_FIELD)


@dataclass(frozen=True, slots=True)
class Encoding:
    """``codec`` for Python, ``label`` for people (``Shift_JIS (CP932)``)."""

    codec: str
    label: str


UTF8 = Encoding("utf-8", "UTF-8")
UTF8_BOM = Encoding("utf-8-sig", "UTF-8 with BOM")
UTF16 = Encoding("utf-16", "UTF-16 with BOM")
CP932 = Encoding("cp932", "Shift_JIS (CP932)")
_KANA = re.compile(r"[\u3041-\u30ff]")


def _line_of(raw: IO[bytes], offset: int) -> int:
    raw.seek(0)
    return raw.read(offset).count(b"\n") + 1


def _decodes(raw: IO[bytes], codec: str, *, need_kana: bool = False) -> tuple[bool, int]:
    """Whether the whole file decodes as ``codec`` (and, for ``need_kana``, holds kana somewhere);
    else the offset of the first bad byte (or -1 when it decodes but has no kana)."""
    raw.seek(0)
    dec = codecs.getincrementaldecoder(codec)("strict")
    done = 0
    kana = False
    while True:
        chunk = raw.read(_CHUNK)
        try:
            text = dec.decode(chunk, final=not chunk)
        except UnicodeDecodeError as e:
            return False, done + max(0, e.start)
        if need_kana and not kana and _KANA.search(text):
            kana = True
        if not chunk:
            break
        done += len(chunk)
    return (kana or not need_kana), -1


def detect_encoding(path: str | Path, *, requested: str | None = None, file: str | None = None) -> Encoding:
    """The file's encoding: ``requested`` (a codec name) if given, else a BOM, else UTF-8 if the
    whole file decodes as UTF-8, else Shift_JIS (CP932) if it decodes as that and holds kana (so
    a Latin-1 file is not read as Japanese). Raises a one-line :class:`NurtureError` otherwise."""
    name = file or str(path)
    if requested:
        try:
            info = codecs.lookup(requested)
        except LookupError:
            raise NurtureError(f'--encoding: "{requested}" is not an encoding Python knows '
                               "(try utf-8, cp932, shift_jis, utf-16, latin-1)") from None
        label = "Shift_JIS (CP932)" if info.name in ("cp932", "shift_jis") else info.name
        return Encoding(info.name, label)
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as e:
        raise NurtureError(f"{name}: {e.strerror or e}") from None
    with raw:
        head = raw.read(4)
        if head.startswith(codecs.BOM_UTF8):
            ok, bad = _decodes(raw, "utf-8-sig")
            if not ok:
                raise NurtureError(f"{name}:{_line_of(raw, bad)}: the file starts as UTF-8 but holds bytes that "
                                   f"are not UTF-8; {_SAVE_AS}")
            return UTF8_BOM
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return UTF16
        if len(head) >= 2 and (head[1:2] == b"\0" or head[0:1] == b"\0"):
            raise NurtureError(f"{name}: the file looks like UTF-16 without a byte-order mark; {_SAVE_AS}")
        ok, bad = _decodes(raw, "utf-8")
        if ok:
            return UTF8
        if _decodes(raw, "cp932", need_kana=True)[0]:
            return CP932
        raise NurtureError(f"{name}:{_line_of(raw, bad)}: the file is neither UTF-8 nor Shift_JIS text; {_SAVE_AS}")


@dataclass(frozen=True, slots=True)
class Record:
    """One row: its spreadsheet ``row`` number, the physical ``line`` it starts on and ``lines``
    it spans, and its cells (None for a bad row, with ``error`` saying why)."""

    row: int
    line: int
    lines: int
    cells: list[str] | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Sheet:
    """An open CSV: the header and the data records (header is row 1, so data starts at 2)."""

    header: list[str]
    delimiter: str
    records: Iterator[Record]


def _delimiter(first: str) -> str:
    if first.count(";") > first.count(","):
        return ";"
    if "\t" in first and "," not in first:
        return "\t"
    return ","


class TextSource(Protocol):
    """What :func:`open_sheet` reads: a text file, or anything with ``readline`` and lines."""

    def readline(self) -> str: ...

    def __iter__(self) -> Iterator[str]: ...


def open_sheet(text: TextSource, *, file: str, encoding: Encoding) -> Sheet:
    """Read the header of ``text`` and return the sheet; raises :class:`NurtureError` for a
    header that cannot be used (empty file, NUL bytes, too many columns, duplicate names)."""
    try:
        first = text.readline()
    except UnicodeDecodeError:
        raise NurtureError(f"{file}:1: the header is not {encoding.label} text; {_SAVE_AS}") from None
    if not first.strip():
        raise NurtureError(f"{file}: the file is empty (expected a header row with an email column)")
    if "\0" in first:
        raise NurtureError(f"{file}:1: the header holds NUL bytes (is it UTF-16 without a byte-order mark, "
                           f"or not a CSV file?); {_SAVE_AS}")
    delimiter = _delimiter(first)
    reader = csv.reader(itertools.chain([first], text), delimiter=delimiter, strict=True)
    try:
        header = next(reader)
    except csv.Error as e:
        raise NurtureError(f"{file}:1: the header cannot be read: {e}") from None
    if len(header) > MAX_COLUMNS:
        raise NurtureError(f"{file}:1: the header has {len(header)} columns; at most {MAX_COLUMNS} are read "
                           "(is this the right file?)")
    seen: dict[str, int] = {}
    for i, h in enumerate(header, start=1):
        key = h.strip().casefold()
        if key and key in seen:
            raise NurtureError(f'{file}:1: the column "{h.strip()}" appears twice (columns {seen[key]} and {i}); '
                               "rename or remove one")
        seen[key] = i
    return Sheet(header, delimiter, _records(reader, file=file, encoding=encoding, width=len(header),
                                             delimiter=delimiter))


def _records(reader: Reader, *, file: str, encoding: Encoding, width: int, delimiter: str) -> Iterator[Record]:
    def line_num() -> int:
        return reader.line_num

    row = 1
    while True:
        start = line_num() + 1
        row += 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except UnicodeDecodeError:
            raise NurtureError(f"{file}:{row}: the file is not {encoding.label} text from here on; "
                               f"{_SAVE_AS}") from None
        except csv.Error as e:
            end = line_num()
            span = f" (lines {start}–{end} read as one row)" if end > start else ""
            msg = str(e)
            if "unexpected end of data" in msg:
                raise NurtureError(
                    f"{file}:{row}: a quote opened in this row is never closed, so lines {start}–{end} (to the end "
                    "of the file) would be read as one cell; fix the quotes in that row. Nothing was imported."
                ) from None
            if "field limit" in msg:
                msg = f"a cell is longer than {MAX_FIELD // 1024} KB (a quote not closed?)"
            else:
                msg = f"the quotes in this row do not pair up ({msg}){span}"
            yield Record(row, start, end - start + 1, None, msg)
            continue
        end = line_num()
        lines = end - start + 1
        if "\0" in "".join(cells):
            yield Record(row, start, lines, None, "the row holds a NUL byte (a binary file pasted in?)")
            continue
        if lines > 1 and _swallowed(cells, width=width, delimiter=delimiter):
            yield Record(row, start, lines, None,
                         f"a quoted cell runs over lines {start}–{end} and holds what look like other rows "
                         "(a quote not closed?); fix the quotes in that row")
            continue
        yield Record(row, start, lines, [unescape_cell(c) for c in cells])  # exports quote formulas


_EMAILISH = re.compile(r"^[^\s@]+@[^\s@]+\.[^\s@]+$")


def _swallowed(cells: list[str], *, width: int, delimiter: str) -> bool:
    """Whether a multi-line cell holds lines shaped like rows of this file (cells and an address)."""
    if width < 2:
        return False
    for cell in cells:
        if "\n" not in cell:
            continue
        for line in cell.splitlines()[1:]:
            parts = line.split(delimiter)
            if len(parts) >= min(width, 3) and any(_EMAILISH.match(p.strip().strip('"')) for p in parts):
                return True
    return False


def open_text(path: str | Path, *, encoding: Encoding, file: str) -> tuple[IO[bytes], IO[str]]:
    """The file as bytes (its position drives progress) and as text in ``encoding``."""
    try:
        raw = open(path, "rb")  # noqa: SIM115 - the caller closes both
    except OSError as e:
        raise NurtureError(f"{file}: {e.strerror or e}") from None
    return raw, io.TextIOWrapper(raw, encoding=encoding.codec, newline="")


__all__ = ["CP932", "MAX_COLUMNS", "MAX_FIELD", "UTF8", "UTF8_BOM", "UTF16", "Encoding", "Record",
           "Sheet", "detect_encoding", "open_sheet", "open_text"]
