"""How the columns of a contacts CSV map to nurture's fields.

Exports from HubSpot, Salesforce, Pipedrive, Zoho and Japanese business-card apps (Sansan,
Eight) name the same things differently: ``Company Name``, ``Account Name``, ``Person -
Organization``, ``会社名``. Headers are compared after Unicode NFKC normalisation (full-width
letters read as ASCII), ignoring letter case, spaces and punctuation, against the alias table
below; ``--map "Header=field"`` (or a mapping file of such lines) decides anything else. A
column that is not a field becomes a template attribute under a safe identifier
(``Country/Region`` → ``country_region`` when it is not mapped, ``郵便番号`` stays ``郵便番号``,
which Jinja reads as ``contact.郵便番号``); the original header is kept in the plan, so the
import report and ``nurture contacts export`` can say where each value came from.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from nurture.errors import NurtureError

#: nurture's contact fields a column can fill.
FIELDS = ("email", "first_name", "last_name", "company", "industry", "phone", "country", "timezone", "owner",
          "territory", "title", "department")
#: Pseudo-fields: a whole name, split into first and last name when those are not given.
FULL_NAME = "full_name"  # given name first: "Yui Sato"
FULL_NAME_FAMILY_FIRST = "full_name_family_first"  # family name first: "佐藤 結衣"
TARGETS = (*FIELDS, FULL_NAME, FULL_NAME_FAMILY_FIRST)
#: ``--map "Header=-"``: leave the column out.
IGNORE = "-"
#: Names templates already see on ``contact`` (an attribute may not shadow them).
RESERVED = frozenset({*FIELDS, "id", "name", "attributes", "score", "hot", "status"})

# Normalised header (see ``header_key``) → target. One table for every export shape; the
# comments say where a header comes from.
_ALIAS_LISTS: dict[str, tuple[str, ...]] = {
    "email": (
        "email", "e-mail", "mail", "email address", "e-mail address", "primary email", "work email",
        "business email",  # HubSpot, Salesforce, Zoho, generic
        "person - email", "person - email - work", "email - work",  # Pipedrive
        # Sansan, Eight, Japanese Excel
        "メールアドレス", "メール", "eメール", "eメールアドレス", "電子メール", "電子メールアドレス",
    ),
    "first_name": ("first name", "firstname", "given name", "forename", "person - first name",
                   "名", "下の名前", "ファーストネーム", "名(漢字)"),
    "last_name": ("last name", "lastname", "surname", "family name", "person - last name",
                  "姓", "苗字", "名字", "ラストネーム", "姓(漢字)"),
    FULL_NAME: ("name", "full name", "fullname", "contact name", "person - name", "lead name"),
    FULL_NAME_FAMILY_FIRST: ("氏名", "名前", "お名前", "姓名", "氏名(漢字)", "担当者名"),
    "company": ("company", "company name", "account", "account name", "organization", "organisation",
                "organization name", "person - organization", "organization - name",
                "会社名", "企業名", "会社", "社名", "法人名", "組織名", "勤務先", "勤務先名"),
    "industry": ("industry", "organization - industry", "業種", "業界"),
    "phone": ("phone", "phone number", "telephone", "tel", "business phone", "work phone", "office phone",
              "person - phone", "person - phone - work", "phone - work",
              "電話番号", "電話", "会社電話番号", "tel会社", "代表電話"),
    "country": ("country", "country/region", "country region", "mailing country", "person - country",
                "organization - address - country", "organization - country",
                "国", "国名", "国/地域", "国・地域"),
    "timezone": ("timezone", "time zone", "tz", "タイムゾーン"),
    "owner": ("owner", "contact owner", "lead owner", "record owner", "person - owner", "sales owner",
              "担当者", "担当営業", "営業担当", "所有者", "リード所有者", "取引先責任者 所有者"),
    "territory": ("territory", "sales territory", "テリトリー", "担当地域", "営業地域"),
    "title": ("title", "job title", "designation", "position", "person - job title", "job position",
              "役職", "役職名", "肩書", "肩書き"),
    "department": ("department", "dept", "division", "person - department",
                   "部署", "部署名", "所属", "所属部署", "部門", "部門名"),
}


def header_key(header: str) -> str:
    """A header as the alias table compares it: NFKC, case-folded, letters and digits only."""
    text = unicodedata.normalize("NFKC", header).casefold()
    return "".join(ch for ch in text if ch.isalnum())


ALIASES: dict[str, str] = {header_key(a): target for target, names in _ALIAS_LISTS.items() for a in names}


def identifier(header: str) -> str:
    """A safe attribute name for a header: ``Country/Region`` → ``country_region``,
    ``No. of Employees`` → ``no_of_employees``, ``郵便番号`` → ``郵便番号``; a name that would
    start with a digit or shadow a field gets a ``csv_`` prefix."""
    text = unicodedata.normalize("NFKC", header).casefold().strip()
    name = re.sub(r"[^\w]+", "_", text).strip("_")
    if not name:
        return "column"
    if not name.isidentifier() or name in RESERVED:
        name = f"csv_{name}"
    return name


@dataclass(frozen=True, slots=True)
class Column:
    """How one CSV column is understood.

    ``target`` is a name from :data:`TARGETS` (``kind="field"``), an attribute name
    (``kind="attribute"``), or None (``kind="ignored"``). ``via`` says why: ``alias`` (the header
    is a known name), ``map`` (``--map`` or a mapping file), ``extra`` (any other header).
    """

    index: int
    header: str
    kind: str
    target: str | None
    via: str


@dataclass(frozen=True, slots=True)
class ColumnMap:
    """User overrides: normalised header → target (a field, an attribute name, or ``-``).

    ``required`` headers came from ``--map`` and must exist in the file; a mapping file's
    entries apply when the column is there.
    """

    overrides: Mapping[str, str]
    required: frozenset[str] = frozenset()
    labels: Mapping[str, str] | None = None  # normalised header → the header as the user wrote it

    @staticmethod
    def empty() -> ColumnMap:
        return ColumnMap({})


def parse_map(specs: Iterable[str], *, source: str = "--map", strict: bool = True) -> ColumnMap:
    """``Header=target`` specs (``--map "Company Name=company"``, ``"Notes=-"``) as a ColumnMap."""
    overrides: dict[str, str] = {}
    labels: dict[str, str] = {}
    for n, raw in enumerate(specs, start=1):
        where = f"{source}:{n}" if source != "--map" else "--map"
        header, sep, target = raw.rpartition("=")
        header, target = header.strip(), target.strip()
        if not sep or not header or not target:
            raise NurtureError(f'{where}: "{raw}" is not HEADER=FIELD (e.g. "Company Name=company", "Notes=-")')
        if target != IGNORE and target not in TARGETS:
            if not target.isidentifier():
                raise NurtureError(f'{where}: "{target}" is neither a field ({", ".join(FIELDS)}) '
                                   "nor a valid attribute name (letters, digits and _)")
            if target in RESERVED:
                raise NurtureError(f'{where}: "{target}" is a name templates already use; choose another')
        key = header_key(header)
        overrides[key] = target
        labels[key] = header
    return ColumnMap(overrides, frozenset(overrides) if strict else frozenset(), labels)


def load_map_file(path: str | Path) -> ColumnMap:
    """A mapping file: one ``Header=target`` per line; blank lines and ``#`` comments ignored.
    Entries for columns a file does not have are ignored (one file can serve several exports)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise NurtureError(f"{path}: cannot read the mapping file ({e})") from None
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1)]
    specs = [(n, line) for n, line in lines if line and not line.startswith("#")]
    out: dict[str, str] = {}
    labels: dict[str, str] = {}
    for n, line in specs:
        one = parse_map([line], source=f"{path}:{n}", strict=False)
        out.update(one.overrides)
        labels.update(one.labels or {})
    return ColumnMap(out, frozenset(), labels)


def merge(*maps: ColumnMap) -> ColumnMap:
    """Later maps win (``--map`` over a mapping file)."""
    overrides: dict[str, str] = {}
    labels: dict[str, str] = {}
    required: set[str] = set()
    for m in maps:
        overrides.update(m.overrides)
        labels.update(m.labels or {})
        required |= m.required
    return ColumnMap(overrides, frozenset(required), labels)


def plan_columns(headers: Sequence[str], mapping: ColumnMap, *, file: str) -> tuple[Column, ...]:
    """Decide every column; raises :class:`NurtureError` (naming the file) when the header
    cannot be used: no email column, two columns for one field, a ``--map`` header missing."""
    keys = [header_key(h) for h in headers]
    missing = [k for k in mapping.required if k not in keys]
    if missing:
        label = (mapping.labels or {}).get(missing[0], missing[0])
        raise NurtureError(f'{file}: --map names a column "{label}" the file does not have '
                           f'(columns: {", ".join(h.strip() for h in headers)})')
    columns: list[Column] = []
    used: dict[str, str] = {}
    for i, (header, key) in enumerate(zip(headers, keys, strict=True)):
        if key in mapping.overrides:
            target, via = mapping.overrides[key], "map"
        elif not header.strip():
            columns.append(Column(i, header, "ignored", None, "empty header"))
            continue
        elif key in ALIASES:
            target, via = ALIASES[key], "alias"
        else:
            target, via = identifier(header), "extra"
        if target == IGNORE:
            columns.append(Column(i, header, "ignored", None, via))
            continue
        kind = "field" if target in TARGETS else "attribute"
        if target in used:
            if kind == "field":
                raise NurtureError(
                    f'{file}: columns "{used[target]}" and "{header.strip()}" both map to {target}; '
                    f'choose one, e.g. --map "{header.strip()}=-" to leave it out or '
                    f'--map "{header.strip()}={target}_2" to keep it as an attribute')
            n = 2
            while f"{target}_{n}" in used:
                n += 1
            target = f"{target}_{n}"
        used[target] = header.strip()
        columns.append(Column(i, header, kind, target, via))
    if "email" not in used:
        raise NurtureError(f'{file}: no email column (columns: {", ".join(h.strip() for h in headers) or "none"}); '
                           'name it with --map "HEADER=email"')
    return tuple(columns)


def split_name(full: str, *, family_first: bool) -> tuple[str, str]:
    """(first, last) from a whole name. Japanese order is family name first; a name without a
    space (``佐藤結衣``) cannot be split and is kept whole as the last name."""
    parts = full.split()  # str.split also splits at the ideographic space U+3000
    if not parts:
        return "", ""
    if len(parts) == 1:
        return ("", parts[0]) if family_first else (parts[0], "")
    if family_first:
        return " ".join(parts[1:]), parts[0]
    return " ".join(parts[:-1]), parts[-1]
