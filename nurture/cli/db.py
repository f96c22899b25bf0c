"""``nurture db``: database chores. ``nurture db copy`` moves a database between backends."""

from __future__ import annotations

import os

import click
from rich.table import Table

from nurture.cli.app import console, handle_errors, main
from nurture.errors import NotFound


@main.group("db")
def db_group() -> None:
    """Database chores: copy between SQLite and PostgreSQL."""


@db_group.command("copy")
@click.argument("source")
@click.argument("dest")
@click.option("--batch", type=click.IntRange(1), default=5000, show_default=True,
              help="Rows per batch.")
@handle_errors
def copy_cmd(source: str, dest: str, batch: int) -> None:
    """Copy every table of SOURCE into the empty database DEST, verified by row counts.

    Each is a SQLite file or a postgresql:// URL, so this moves an embedded database to
    PostgreSQL when a team scales out (and back). Ids are kept; DEST is created and migrated
    if needed and must hold no rows. Stop senders and trackers while it runs.
    """
    from nurture.store import open_store
    from nurture.store.copy import copy_database
    from nurture.store.dialect import is_postgres_url

    if not is_postgres_url(source) and not os.path.exists(source):
        raise NotFound(f"no database file {source}")
    src = open_store(source)
    try:
        dst = open_store(dest)
        try:
            with console.status("copying…") as status:
                copied = copy_database(source=src, dest=dst, batch=batch,
                                       progress=lambda t, n: status.update(f"copying {t}: {n} rows"))
        finally:
            dst.close()
    finally:
        src.close()
    table = Table()
    table.add_column("table")
    table.add_column("rows", justify="right")
    table.add_column("verified")
    for c in copied:
        table.add_row(c.table, str(c.rows), "[green]ok[/]" if c.ok else "[red]differs[/]")
    console.print(table)
    console.print(f"copied {sum(c.rows for c in copied)} rows in {len(copied)} tables to {_safe(dest)}")


def _safe(url: str) -> str:
    """A database URL without its password, for messages."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}@{host}"
    return url
