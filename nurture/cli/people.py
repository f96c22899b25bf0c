"""``nurture contacts list``, ``show``, ``export``, ``suppress``, ``unsuppress``, ``set`` and ``forget``."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TextIO

import click
from rich.markup import escape
from rich.table import Table

from nurture import csvsafe
from nurture.cli.app import console, handle_errors, settings_of
from nurture.cli.contacts import _store, _where, contacts_group
from nurture.errors import NotFound, NurtureError
from nurture.models import Contact
from nurture.timeutil import utcnow

if TYPE_CHECKING:
    from nurture.store import Store

#: Export columns, in order; the file imports back unchanged (``nurture contacts import``).
EXPORT_FIELDS = ("email", "first_name", "last_name", "company", "industry", "phone", "country", "timezone",
                 "owner", "territory", "title", "department")


def contact_json(c: Contact) -> dict[str, Any]:
    return {"id": c.id, **{f: getattr(c, f) for f in EXPORT_FIELDS}, "status": c.status, "score": c.score,
            "hot": c.hot, "attributes": dict(c.attributes)}


def _all(store: Store, where: tuple[str, str] | None) -> Iterator[Contact]:
    after = 0
    while True:
        page = store.list_contacts(where=where, after_id=after, limit=1000)
        if not page:
            return
        yield from page
        after = page[-1].id


def _write_csv(store: Store, where: tuple[str, str] | None, out: TextIO) -> int:
    """Contacts as CSV: the fields, then one column per attribute. Two passes over the
    contacts (the attribute columns first), so none are held in memory."""
    attrs: dict[str, None] = {}
    for c in _all(store, where):
        attrs.update(dict.fromkeys(c.attributes))
    w = csvsafe.writer(out, lineterminator="\r\n")
    w.writerow([*EXPORT_FIELDS, *attrs])
    n = 0
    for c in _all(store, where):
        values = ["" if getattr(c, f) is None else getattr(c, f) for f in EXPORT_FIELDS]
        extra = ["" if c.attributes.get(a) is None else c.attributes.get(a) for a in attrs]
        w.writerow([*values, *extra])
        n += 1
    return n


@contacts_group.command("list")
@click.option("--where", "where", metavar="FIELD=VALUE", help="Only contacts whose field or attribute equals VALUE.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object per contact) instead of a table.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV (the columns of `contacts export`).")
@click.option("--limit", type=int, default=100, show_default=True, help="At most this many in the table (0: all).")
@click.pass_context
@handle_errors
def list_command(ctx: click.Context, where: str | None, as_json: bool, as_csv: bool, limit: int) -> None:
    """List contacts: email, name, company, country, owner, status, score."""
    settings = settings_of(ctx)
    with _store(settings) as store:
        if as_csv:
            _write_csv(store, _where(where), sys.stdout)
            return
        contacts = _all(store, _where(where))
        if as_json:
            click.echo(json.dumps([contact_json(c) for c in contacts], indent=2, ensure_ascii=False, default=str))
            return
        table = Table("email", "name", "company", "country", "owner", "status", "score", header_style="bold")
        n = 0
        for c in contacts:
            n += 1
            if limit and n > limit:
                continue
            table.add_row(*(escape(str(v)) for v in (c.email, c.name, c.company, c.country or c.territory or "",
                                                      c.owner or "", c.status, f"{c.score:.0f}")))
    console.print(table)
    if limit and n > limit:
        console.print(f"… {n - limit} more (--limit 0 shows all, --csv exports them)")
    if not n:
        console.print("no contacts" + (" match" if where else " yet (nurture contacts import FILE.csv)"))


def _contact(store: Store, email: str) -> Contact:
    c = store.get_contact_by_email(email)
    if c is None:
        raise NotFound(f"no contact with the address {email}")
    return c


@contacts_group.command("show")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@handle_errors
def show_command(ctx: click.Context, email: str, as_json: bool) -> None:
    """One contact: fields, status and suppression, enrollments (step and next time), sends,
    human clicks, tasks, events (unsubscribes, bounces, hot) and score."""
    settings = settings_of(ctx)
    with _store(settings) as store:
        c = _contact(store, email)
        history = store.contact_history(c.id)
        suppressed = store.suppression(c.email)
    doc = {**contact_json(c), "suppressed": suppressed[0] if suppressed else None, **history}
    if as_json:
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False, default=str))
        return
    console.print(f"[bold]{escape(c.name)}[/bold] <{escape(c.email)}>  status {c.status}"
                  + (f", [red]suppressed[/red] ({escape(suppressed[0])})" if suppressed else "")
                  + f", score {c.score:.0f}" + (" [bold red]hot[/bold red]" if c.hot else ""))
    for f in EXPORT_FIELDS[1:]:
        value = getattr(c, f)
        if value:
            console.print(f"  {f}: {escape(str(value))}")
    for k, v in c.attributes.items():
        console.print(f"  contact.{escape(k)}: {escape(str(v))}")
    sections = (("enrollments", ("campaign_id", "state", "next_step", "next_at", "exit_reason")),
                ("sends", ("campaign_id", "step_id", "status", "sent_at", "error_code")),
                ("clicks", ("at", "campaign_id", "step_id", "link")),
                ("tasks", ("id", "campaign_id", "rep_id", "kind", "status", "due_at", "outcome")),
                ("events", ("at", "kind")))
    for name, cols in sections:
        rows = history[name]
        if not rows:
            console.print(f"{name}: none")
            continue
        table = Table(*cols, title=name, title_justify="left", header_style="dim", box=None)
        for r in rows:
            table.add_row(*(escape(_fmt(r[col])) for col in cols))
        console.print(table)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if hasattr(value, "strftime"):
        return str(value.strftime("%Y-%m-%d %H:%M UTC"))
    return str(value)


@contacts_group.command("export")
@click.option("--where", "where", metavar="FIELD=VALUE", help="Only contacts whose field or attribute equals VALUE.")
@click.option("--out", "out", metavar="FILE", type=click.Path(dir_okay=False), help="Write here (default: stdout).")
@click.pass_context
@handle_errors
def export_command(ctx: click.Context, where: str | None, out: str | None) -> None:
    """Write contacts as CSV that `nurture contacts import` reads back unchanged: the fields,
    then every attribute. --out writes CSV UTF-8 with a byte-order mark (Excel reads it right)."""
    settings = settings_of(ctx)
    with _store(settings) as store:
        if out is None:
            n = _write_csv(store, _where(where), sys.stdout)
        else:
            with open(out, "w", encoding="utf-8-sig", newline="") as f:
                n = _write_csv(store, _where(where), f)
    if out is not None:
        console.print(f"wrote {n} contact{'s' if n != 1 else ''} to {escape(out)}")


@contacts_group.command("suppress")
@click.argument("email")
@click.option("--reason", default="manual", show_default=True,
              help="Why (manual, complaint, unsubscribed, bounced …); shown in `contacts show`.")
@click.pass_context
@handle_errors
def suppress_command(ctx: click.Context, email: str, reason: str) -> None:
    """Never mail this address again (also one that is not a contact yet); ends its enrollments."""
    from nurture.contacts import valid_email
    from nurture.erasure import is_erased

    if not valid_email(email.strip()):
        raise click.BadParameter(f'"{email}" is not an email address', param_hint="EMAIL")
    settings = settings_of(ctx)
    now = utcnow()
    with _store(settings) as store:
        if is_erased(store, email, keys=settings.tracking.keys):
            console.print(f"{escape(email)} was erased and is already suppressed")
            return
        before = store.suppression(email)
        store.suppress(email, reason, now=now)
        c = store.get_contact_by_email(email)
        ended = store.exit_enrollments(c.id, reason="suppressed", now=now) if c is not None else 0
    if before:
        console.print(f"{escape(email)} was already suppressed ({escape(before[0])})")
    else:
        console.print(f"suppressed {escape(email)} ({escape(reason)})"
                      + (f"; ended {ended} enrollment{'s' if ended != 1 else ''}" if ended else ""))


@contacts_group.command("unsuppress")
@click.argument("email")
@click.pass_context
@handle_errors
def unsuppress_command(ctx: click.Context, email: str) -> None:
    """Take an address off the suppression list (only with the person's new consent);
    an unsubscribed or bounced contact becomes active again. Ended enrollments stay ended."""
    settings = settings_of(ctx)
    with _store(settings) as store:
        reason = store.unsuppress(email, now=utcnow())
    if reason is None:
        raise NotFound(f"{email} is not suppressed")
    console.print(f"{escape(email)} is no longer suppressed (was: {escape(reason)})")


@contacts_group.command("set")
@click.argument("email")
@click.argument("assignments", metavar="FIELD=VALUE...", nargs=-1, required=True)
@click.pass_context
@handle_errors
def set_command(ctx: click.Context, email: str, assignments: tuple[str, ...]) -> None:
    """Change a contact's fields or attributes: `set yui@x.example owner=aoki plan=gold`
    (an empty VALUE clears it; attribute values are text, or numbers with --json-style `plan:=3`)."""
    from nurture.contacts import _zone_ok, valid_email

    fields: dict[str, str] = {}
    attrs: dict[str, Any] = {}
    for a in assignments:
        raw_json = ":=" in a
        name, sep, value = a.partition(":=" if raw_json else "=")
        name = name.strip()
        if not sep or not name:
            raise click.BadParameter(f'"{a}" is not FIELD=VALUE', param_hint="FIELD=VALUE")
        if name in EXPORT_FIELDS:
            if name == "email" and not valid_email(value.strip()):
                raise click.BadParameter(f'"{value}" is not an email address', param_hint="email")
            if name == "timezone" and value and not _zone_ok(value):
                raise click.BadParameter(f'"{value}" is not a time zone', param_hint="timezone")
            fields[name] = value.strip()
        elif name.isidentifier() and name not in ("id", "name", "status", "score", "hot", "attributes"):
            try:
                attrs[name] = json.loads(value) if raw_json else (value if value != "" else None)
            except ValueError:
                raise click.BadParameter(f"{value!r} is not JSON", param_hint=name) from None
        else:
            raise click.BadParameter(f'"{name}" is not a field ({", ".join(EXPORT_FIELDS)}) '
                                     "or an attribute name", param_hint="FIELD")
    settings = settings_of(ctx)
    with _store(settings) as store:
        c = _contact(store, email)
        if "email" in fields and store.get_contact_by_email(fields["email"]) not in (None, c):
            raise NurtureError(f"another contact already has the address {fields['email']}")
        c = store.update_contact(c.id, fields=fields, attributes=attrs, now=utcnow())
    console.print(f"updated {escape(c.email)}: " + ", ".join(escape(a) for a in assignments))


@contacts_group.command("forget")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
@handle_errors
def forget_command(ctx: click.Context, email: str, yes: bool) -> None:
    """Erase a person (right to erasure): their fields and attributes, the address (kept only
    as a keyed hash, so it stays suppressed and is not imported again), clicks' IP and user
    agent, task notes and BANT answers, event and webhook payloads. Counts for reports stay.
    Prints what it erased."""
    from nurture.erasure import forget

    settings = settings_of(ctx)
    if not yes:
        click.confirm(f"Erase {email} and everything nurture keeps about them? This cannot be undone", abort=True)
    with _store(settings) as store:
        done = forget(store, email=email, keys=settings.tracking.keys, key_id=settings.tracking.current_key,
                      now=utcnow())
    console.print(f"erased {escape(email)} (contact {done.contact_id}); it stays suppressed:")
    for line in done.lines():
        console.print(escape(line))


__all__ = ["EXPORT_FIELDS", "contact_json"]
