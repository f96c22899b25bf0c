"""The CLI's consoles: rich consoles that print no control characters from the data.

Every string a command prints (markup, table cells, error messages) passes through
:meth:`SafeConsole.render_str`, which drops control characters before rich parses it, so
an escape sequence in a contact field reaches the terminal as nothing. rich's own styling
is added after, and is kept.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.text import Text

from nurture.textsafe import strip_controls


class SafeConsole(Console):
    """A :class:`rich.console.Console` that strips control characters from what it renders."""

    def render_str(self, text: str, **kwargs: Any) -> Text:
        # Line breaks in what a command prints are layout, not data: keep them.
        return super().render_str("\n".join(strip_controls(line) for line in text.split("\n")), **kwargs)
