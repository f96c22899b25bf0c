"""``nurture inbound [FILE]`` (one message from a file or stdin: an MTA pipe transport,
procmail, fetchmail) and ``nurture inbound list``.

Exit codes for the pipe: 0 for anything that could be read, whatever it was (a mail server must
never bounce a bounce); 75 (EX_TEMPFAIL, "try again later") when nurture itself cannot work
now (the database or the configuration), so the mail server keeps the message and retries.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime

import click
from rich.markup import escape
from rich.table import Table

from nurture.cli.app import console, err_console, handle_errors, main, settings_of
from nurture.config import Settings
from nurture.errors import NurtureError
from nurture.inbound.apply import InboundResult
from nurture.timeutil import utcnow

EX_TEMPFAIL = 75


class _InboundGroup(click.Group):
    """``nurture inbound [FILE]`` is ``nurture inbound receive [FILE]``; subcommands by name."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("-h", "--help")):
            args = ["receive", *args]
        return super().parse_args(ctx, args)


@main.group("inbound", cls=_InboundGroup)
def inbound_group() -> None:
    """Read what comes back: bounces, complaints, out-of-office and replies.

    `nurture inbound [FILE]` reads one RFC 5322 message from FILE or stdin (for an MTA pipe
    transport), prints what it decided and exits 0; `nurture inbound list` shows recent ones.
    Guide: `nurture docs inbound`.
    """


@inbound_group.command("receive")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True), required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the decision as JSON.")
@click.option("--rcpt", "rcpts", multiple=True, metavar="ADDRESS",
              help="Envelope recipient (the pipe's ${original_recipient}); repeatable.")
@click.option("--source", default="pipe", show_default=True, help="Where the message came from, for the record.")
@click.pass_context
def receive_command(ctx: click.Context, file: str | None, as_json: bool, rcpts: Sequence[str], source: str) -> None:
    """Read one message from FILE (or stdin) and apply it: the same as `nurture inbound [FILE]`.

    Exits 0 for anything it could read; 75 (try again later) when the database or the
    configuration is unusable, so the mail server keeps the message.
    """
    try:
        settings = settings_of(ctx)
        try:
            raw = _read(file, limit=settings.inbound.max_bytes)
        except OSError as e:
            err_console.print(f"[red]error[/red] cannot read {escape(file or 'stdin')}: {escape(str(e))}")
            sys.exit(1)
        result = _apply(settings, raw, rcpts=rcpts, source=source)
    except NurtureError as e:
        err_console.print(f"[red]error[/red] {escape(str(e))} (exit {EX_TEMPFAIL}: the mail server retries later)")
        sys.exit(EX_TEMPFAIL)
    if as_json:
        click.echo(json.dumps(result.as_dict(), ensure_ascii=False, indent=2))
        return
    head = f"[bold]{result.kind}[/bold]" + (" [dim](already received)[/dim]" if result.duplicate else "")
    console.print(f"{head}: {escape(result.action)}")
    for reason in result.reasons:
        console.print(f"  · {escape(reason)}")
    if result.new_text and result.kind in ("reply", "unsubscribe"):
        console.print(f"  text: {escape(result.new_text[:300])}")


def _read(file: str | None, *, limit: int) -> bytes:
    """At most ``limit + 1`` bytes (enough to see that a message is too long); the rest of
    stdin is read and dropped, so the mail server's pipe never breaks."""
    if file in (None, "-"):
        data = sys.stdin.buffer.read(limit + 1)
        while sys.stdin.buffer.read(1 << 20):
            pass
        return data
    with open(file, "rb") as f:  # noqa: PTH123
        return f.read(limit + 1)


def _apply(settings: Settings, raw: bytes, *, rcpts: Sequence[str], source: str) -> InboundResult:
    from nurture.campaigns import load_campaigns
    from nurture.inbound import receive
    from nurture.store import open_store

    try:
        campaigns = {c.id: c for c in load_campaigns(settings.campaigns_dir)}
    except NurtureError as e:  # still record it; replies are matched, their rules skipped
        err_console.print(f"[yellow]warning[/yellow] campaigns not loaded: {escape(str(e).splitlines()[0])}")
        campaigns = {}
    store = open_store(settings.database)
    try:
        return receive(store, raw, settings=settings, campaigns=campaigns, now=utcnow(), source=source,
                       envelope_recipients=tuple(rcpts))
    finally:
        store.close()


KINDS = ("hard_bounce", "soft_bounce", "complaint", "auto_reply", "unsubscribe", "reply", "unknown", "delivered")


@inbound_group.command("list")
@click.option("--kind", type=click.Choice(KINDS), help="Only this kind.")
@click.option("--unmatched", is_flag=True, help="Only those matched to no send (unknown senders, forgeries).")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
@handle_errors
def list_command(ctx: click.Context, kind: str | None, unmatched: bool, limit: int, as_json: bool) -> None:
    """Recent inbound messages and events, newest first: kind, what was done, whether a reply
    was forwarded to its rep (to whom, how it went), and why."""
    from nurture.store import open_store

    settings = settings_of(ctx)
    store = open_store(settings.database)
    try:
        rows = store.list_inbound(kind=kind, unmatched=unmatched, limit=limit)
        forwards = {f.inbound_id: f for f in store.list_forwards(inbound_ids=[r["id"] for r in rows], limit=limit)}
    finally:
        store.close()
    for r in rows:
        f = forwards.get(r["id"])
        r["forward"] = None if f is None else {
            "id": f.id, "to": f.recipient, "rep": f.rep_id, "status": f.status, "attempts": f.attempts,
            "sent_at": f.sent_at, "error": f.last_error}
    if as_json:
        click.echo(json.dumps(rows, default=str, ensure_ascii=False, indent=2))
        return
    if not rows:
        console.print("nothing received yet" if not (kind or unmatched) else "none")
        return
    table = Table(header_style="bold")
    for col in ("id", "received", "source", "kind", "from / about", "send", "done", "forwarded", "why"):
        table.add_column(col)
    for r in rows:
        who = r["recipient"] or r["sender"] or ""
        why = "; ".join(x for x in r["reasons"] if x.startswith("not matched")) or (r["reasons"][0] if r["reasons"]
                                                                                    else "")
        table.add_row(str(r["id"]), r["received_at"].strftime("%Y-%m-%d %H:%M"), escape(r["source"]),
                      r["kind"] + (" (ooo)" if r["out_of_office"] else ""), escape(who),
                      str(r["send_id"] or "–"), escape(r["action"]), _forwarded(r["forward"]), escape(why))
    console.print(table)


def _forwarded(f: dict[str, object] | None) -> str:
    """Whether a reply was forwarded, to whom, and how it went (a table cell)."""
    if f is None:
        return "–"
    to = escape(f"{f['to']}" + (f" ({f['rep']})" if f["rep"] else ""))
    status = str(f["status"])
    if status == "sent" and isinstance(f["sent_at"], datetime):
        return f"{to}: [green]sent[/green] {f['sent_at']:%Y-%m-%d %H:%M}"
    if status == "failed":
        return f"{to}: [red]failed[/red]" + (f" ({escape(str(f['error']))})" if f["error"] else "")
    if status == "retry":
        return f"{to}: [yellow]retry[/yellow] after {f['attempts']} attempt(s)" + (
            f" ({escape(str(f['error']))})" if f["error"] else "")
    return f"{to}: {status}"


__all__ = ["inbound_group"]
