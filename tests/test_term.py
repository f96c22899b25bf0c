"""nurture.cli.term: the CLI's consoles print no control characters from the data."""

from __future__ import annotations

import io

from rich.table import Table

from nurture.cli.term import SafeConsole


def test_tables_and_prints_drop_escape_sequences_but_keep_rich_styling():
    out = io.StringIO()
    con = SafeConsole(file=out, force_terminal=True, width=80, color_system="standard", highlight=False)
    table = Table()
    table.add_column("Contact", style="bold")
    table.add_row("Ann\x1b]0;owned\x07 Lee")
    con.print(table)
    con.print("[red]error[/red] row 3: \x1b[2J\x1b]8;;http://evil\x07click")
    text = out.getvalue()
    assert "\x1b]" not in text and "\x07" not in text and "\x1b[2J" not in text
    assert "Ann]0;owned Lee" in text and "]8;;http://evilclick" in text
    assert "\x1b[1m" in text and "\x1b[31m" in text  # rich's own bold and red are kept
