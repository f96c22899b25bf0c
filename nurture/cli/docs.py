"""``nurture docs [TOPIC]``: the guides, readable wherever nurture is installed."""

from __future__ import annotations

import io
import os
import shlex
import shutil
import subprocess
import sys

import click
from rich.markdown import Markdown
from rich.markup import escape
from rich.table import Table

from nurture.cli.app import console, handle_errors, main
from nurture.cli.term import SafeConsole
from nurture.guides import docs_root, find_guide, guide_text, guides, terminal_markdown

#: Guides are set at this width at most (prose reads best short), narrower on a narrow terminal.
WIDTH = 80


@main.command("docs")
@click.argument("topic", required=False)
@click.option("--path", "show_path", is_flag=True,
              help="Print where the guide's Markdown file is (without TOPIC: the guides' folder).")
@click.option("--pager/--no-pager", default=None,
              help="Page the guide through $PAGER (default: less -FRX) [default: when stdout is a terminal].")
@handle_errors
def docs_command(topic: str | None, show_path: bool, pager: bool | None) -> None:
    """Read a guide: campaigns, templates, contacts, sending, tracking, reps, inbound, ...

    Without TOPIC, lists the guides. With one, prints it (formatted Markdown, at most 80
    columns, through a pager on a terminal; plain text when piped). Links to other guides
    read as the `nurture docs TOPIC` command that shows them. A unique prefix is enough:
    `nurture docs camp`.
    """
    if topic is None:
        if show_path:
            click.echo(str(docs_root()))
            return
        table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
        table.add_column("topic", no_wrap=True)
        table.add_column("guide")
        for guide in guides():
            table.add_row(escape(guide.topic), escape(guide.title))
        console.print(table)
        console.print("[dim]Read one with `nurture docs TOPIC` (`--path` prints where its file is).[/dim]")
        return
    guide = find_guide(topic)
    if show_path:
        click.echo(str(guide.path))
        return
    topics = {g.topic for g in guides()}
    page = Markdown(terminal_markdown(guide_text(guide), topics=topics), hyperlinks=False)
    width = min(WIDTH, console.width)
    styled = console.is_terminal
    buf = io.StringIO()
    SafeConsole(file=buf, width=width, highlight=False, force_terminal=styled, no_color=not styled).print(page)
    # rich pads every line to the width; plain text (piped, redirected) needs no trailing blanks.
    text = buf.getvalue() if styled else "\n".join(line.rstrip() for line in buf.getvalue().split("\n"))
    if pager is None:
        pager = sys.stdout.isatty() and sys.stdin.isatty()
    if not (pager and _page(text)):
        click.echo(text, nl=False)


def _page(text: str) -> bool:
    """Show ``text`` through the user's pager; False when there is none to run."""
    argv = shlex.split(os.environ.get("PAGER") or "less")
    if not argv or shutil.which(argv[0]) is None:
        return False
    # Like git: quit at once when it fits one screen, pass colours, leave the screen as it was.
    env = {**os.environ, "LESS": os.environ.get("LESS", "FRX")}
    subprocess.run(argv, input=text, text=True, env=env, check=False)
    return True
