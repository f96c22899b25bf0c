"""nurture.store.schema: migrations are registered, and so applied to a new database, in name order."""

from __future__ import annotations

import re

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from nurture.store.schema import migrations

_NAME = re.compile(r"m(\d{3})_[a-z0-9_]+")


def registration_problems(source: Migrations) -> list[str]:
    """What is wrong with the order of a migration set: names must be ``mNNN_words``, with
    distinct numbers, registered in ascending order."""
    names = [m.name for m in source._migrations]
    problems = [f"{n}: not named mNNN_words" for n in names if not _NAME.fullmatch(n)]
    numbers = [int(m.group(1)) for n in names if (m := _NAME.fullmatch(n))]
    problems += [f"m{n:03d} used twice" for n in sorted(set(numbers)) if numbers.count(n) > 1]
    problems += [f"{b} registered after {a}" for a, b in zip(names, names[1:], strict=False) if b < a]
    return problems


def test_migrations_are_registered_in_name_order() -> None:
    names = [m.name for m in migrations._migrations]
    assert names[0] == "m001_initial" and len(names) >= 5
    assert registration_problems(migrations) == []


def test_the_check_catches_a_migration_registered_out_of_order() -> None:
    bad = Migrations("t")

    def noop(db: Database) -> None:
        pass

    for name in ("m001_initial", "m005_later", "m003_earlier", "m003_again", "extra"):
        bad(name=name)(noop)
    assert registration_problems(bad) == [
        "extra: not named mNNN_words", "m003 used twice",
        "m003_earlier registered after m005_later", "m003_again registered after m003_earlier",
        "extra registered after m003_again"]


def test_a_new_database_records_them_in_name_order(store, backend) -> None:
    if backend == "postgres":
        from nurture.store.pg import COMPAT_NAME, MIGRATIONS_TABLE

        rows = store.query(f"SELECT name FROM {MIGRATIONS_TABLE} WHERE migration_set = 'nurture'"
                           " ORDER BY applied_at, name")
        applied = [r["name"] for r in rows if r["name"] != COMPAT_NAME]
    else:
        rows = store.query("SELECT name FROM _sqlite_migrations WHERE migration_set = 'nurture' ORDER BY rowid")
        applied = [r["name"] for r in rows]
    assert applied == sorted(applied) == [m.name for m in migrations._migrations]
