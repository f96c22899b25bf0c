"""Store: the ``FIELD=VALUE`` contact filter of ``contacts list/export`` and ``enroll --where``.

The field is checked, never spliced into SQL as given: a contact column (from a fixed list),
or the name of an attribute that some contact has, whose JSON path is a bound parameter.
The value is always bound.
"""

from __future__ import annotations

from typing import Any

from nurture.errors import NotFound
from nurture.store.base import StoreBase
from nurture.store.contacts import FILTER_COLUMNS


def attribute_path(name: str) -> str:
    """The JSON path of attribute ``name`` (quoted: dots and brackets in it are literal)."""
    if '"' in name or "\\" in name or any(ord(ch) < 32 for ch in name):
        raise NotFound(f"no contact field or attribute named {name!r}")
    return f'$."{name}"'


def contact_filter(store: StoreBase, where: tuple[str, str], *, alias: str = "") -> tuple[str, list[Any]]:
    """``(sql, params)`` selecting contacts whose field or attribute equals the value
    (case-insensitively). ``alias`` prefixes the columns (``"c"`` → ``c.email``). Raises
    :class:`NotFound` for a name that is neither a column nor an attribute of any contact."""
    name, value = where
    prefix = f"{alias}." if alias else ""
    if name in FILTER_COLUMNS:
        return f"lower({prefix}{name}) = lower(?)", [value]
    path = attribute_path(name)
    known = store.query_one(
        "SELECT 1 AS found FROM contacts WHERE json_extract(attributes, ?) IS NOT NULL LIMIT 1", (path,))
    if known is None:
        raise NotFound(f"no contact field or attribute named {name!r} "
                       f"(fields: {', '.join(FILTER_COLUMNS)}, or an attribute from the imported CSV)")
    return f"lower(json_extract({prefix}attributes, ?)) = lower(?)", [path, value]
