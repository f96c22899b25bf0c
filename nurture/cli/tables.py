"""Terminal tables that fit the terminal: ``tasks``, ``clicks``, ``reps list``, ``stats`` and ``report``.

A :class:`FitTable` lays its columns out at render time for the width it is given. Columns
start at their natural width; when the line is too long the shrinkable ones (names,
companies, addresses) give up characters down to a minimum, ending in an ellipsis, and then
the least useful columns go, lowest value first. A dropped column marked ``fold`` is not
lost: its value moves to a line under the row (unless it is empty or 0), where long text (a
task's reason, a click's reasons) always goes, wrapped at the width and whole. At 80 columns every line fits; at 200
the same table shows every column on one line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.padding import Padding
from rich.text import Text

from nurture.cards import TaskCard, relative
from nurture.report import COLUMNS as REPORT_COLUMNS
from nurture.report import StepRow, complaint_rate, totals
from nurture.store.tracking import ListedClick
from nurture.textsafe import strip_controls

Cell = str | Text


@dataclass(frozen=True, slots=True)
class Column:
    """One column. ``min_width`` set: may shrink to it (cut with an ellipsis). ``drop`` above
    0: may be left out when the width is short, the highest number first; with ``fold`` its
    value then shows under the row as ``header: value``."""

    header: str
    justify: Literal["left", "right"] = "left"
    min_width: int | None = None
    max_width: int | None = None
    drop: int = 0
    fold: bool = False


@dataclass(frozen=True, slots=True)
class Row:
    """A row's cells (one per column, plain strings are never read as markup), text shown
    wrapped under it (``note``), a style for the whole row, and a rule drawn above it."""

    cells: Sequence[Cell]
    note: Cell | None = None
    style: str = ""
    rule_above: bool = False


@dataclass(frozen=True)
class FitTable:
    """A table that fits the width it is rendered at (see the module docstring)."""

    columns: Sequence[Column]
    rows: Sequence[Row]
    title: Cell | None = None
    caption: Cell | None = None
    gap: int = 2
    note_indent: int = 4
    note_style: str = "dim"
    header_style: str = "bold"

    def layout(self, width: int) -> dict[int, int]:
        """Column index → width for the columns kept at ``width`` (in order)."""
        natural = {i: self._natural(i) for i in range(len(self.columns))}
        kept = list(natural)
        while True:
            widths = self._shrunk(kept, natural, width)
            if self._total(widths) <= width:
                return widths
            droppable = [i for i in kept if self.columns[i].drop > 0]
            if not droppable:
                return self._forced(widths, width)
            kept.remove(max(droppable, key=lambda i: (self.columns[i].drop, i)))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        widths = self.layout(width)
        folded = [i for i in range(len(self.columns)) if i not in widths and self.columns[i].fold]
        if self.title is not None:
            yield _text(self.title)
        yield self._line([Text(self.columns[i].header, style=self.header_style) for i in widths], widths)
        rule = Text("─" * min(width, self._total(widths)), style="dim")
        yield rule
        for row in self.rows:
            if row.rule_above:
                yield rule
            yield self._line([_text(row.cells[i]) for i in widths], widths, style=row.style)
            notes: list[Text] = []
            if row.note is not None and _text(row.note).plain:
                notes.append(_text(row.note))
            extra = [f"{self.columns[i].header}: {_text(row.cells[i]).plain}" for i in folded
                     if _text(row.cells[i]).plain not in ("", "0")]
            if extra:
                notes.append(Text(" · ".join(extra)))
            for note in notes:
                note.stylize(self.note_style)
                yield Padding(note, (0, 0, 0, min(self.note_indent, max(0, width - 20))), expand=False)
        if self.caption is not None:
            yield _text(self.caption)

    def _natural(self, i: int) -> int:
        col = self.columns[i]
        w = max([cell_len(col.header)] + [cell_len(_text(r.cells[i]).plain) for r in self.rows])
        return min(w, col.max_width) if col.max_width else w

    def _total(self, widths: Mapping[int, int]) -> int:
        return sum(widths.values()) + self.gap * max(0, len(widths) - 1)

    def _shrunk(self, kept: Iterable[int], natural: Mapping[int, int], width: int) -> dict[int, int]:
        widths = {i: natural[i] for i in kept}
        excess = self._total(widths) - width
        while excess > 0:
            room = [i for i in widths if (m := self.columns[i].min_width) is not None and widths[i] > m]
            if not room:
                break
            widest = max(room, key=lambda i: (widths[i], -i))
            widths[widest] -= 1
            excess -= 1
        return widths

    def _forced(self, widths: dict[int, int], width: int) -> dict[int, int]:
        """Nothing left to drop: cut the widest columns until the line fits (a very narrow terminal)."""
        out = dict(widths)
        while self._total(out) > width and any(w > 1 for w in out.values()):
            widest = max(out, key=lambda i: out[i])
            out[widest] -= 1
        while self._total(out) > width and len(out) > 1:
            out.pop(max(out))
        return out

    def _line(self, cells: list[Text], widths: Mapping[int, int], *, style: str = "") -> Text:
        parts = []
        for cell, (i, w) in zip(cells, widths.items(), strict=True):
            t = cell.copy()
            t.no_wrap = True
            t.truncate(w, overflow="ellipsis")
            t.align(self.columns[i].justify, w)
            parts.append(t)
        line = Text(" " * self.gap).join(parts)
        if style:
            line.stylize(style)
        line.rstrip()
        line.no_wrap = True
        return line


def _text(cell: Cell) -> Text:
    # Cells carry contact fields: no control character reaches the terminal (the consoles'
    # filter sees only strings, and these cells become Text before it).
    if isinstance(cell, Text):
        clean = strip_controls(cell.plain)
        return cell if clean == cell.plain else Text(clean, style=cell.style)
    return Text(strip_controls(cell))


# -- the commands' tables ------------------------------------------------------------------------

def tasks_view(cards: Sequence[TaskCard], *, now: datetime) -> FitTable:
    """``nurture tasks``: one line a task, its reason wrapped under it."""
    columns = (Column("ID", justify="right"), Column("Priority"), Column("Due"),
               Column("Contact", min_width=14, max_width=40), Column("Company", min_width=12, max_width=40),
               Column("Phone"), Column("Rep", drop=2, fold=True),
               Column("Score", justify="right", drop=1, fold=True))
    rows = []
    for c in cards:
        t = c.task
        due = relative(t.due_at, now) if t.status == "open" else (t.outcome or "done")
        style = "red" if c.overdue else ("bold" if t.priority in ("urgent", "high") else "")
        rows.append(Row(cells=(str(t.id), t.priority, Text(due, style=style), c.contact.name, c.contact.company,
                               c.contact.phone, t.rep_id or "-", f"{c.score:.0f}{' hot' if c.hot else ''}"),
                        note=c.reason or t.reason))  # relative times as of now
    return FitTable(columns, rows)


CLICK_COLOURS = {"human": "green", "scanner": "red", "pending": "yellow"}


def clicks_view(rows: Sequence[ListedClick]) -> FitTable:
    """``nurture clicks``: one line a click, its verdict's reasons under it."""
    columns = (Column("id", justify="right"), Column("at (UTC)"), Column("campaign", drop=1, fold=True),
               Column("step", min_width=10, max_width=30), Column("link", min_width=8, max_width=30),
               Column("recipient", min_width=14, max_width=60), Column("ip", drop=3, fold=True),
               Column("method", drop=4), Column("verdict"), Column("score", justify="right", drop=2, fold=True))
    out = []
    for r in rows:
        link = f"({r.kind})" if r.kind != "click" else (r.link or "?")
        link += " [honeypot]" if r.honeypot else ""
        out.append(Row(cells=(str(r.id), r.at.strftime("%Y-%m-%d %H:%M:%S"),
                              r.campaign_id, r.step_id, link, r.email, r.ip or "",
                              r.method, Text(r.verdict, style=CLICK_COLOURS.get(r.verdict, "")),
                              f"{r.score:.2f}"),
                       note="; ".join(r.reasons)))
    return FitTable(columns, out)


def reps_view(rows: Sequence[Mapping[str, Any]]) -> FitTable:
    """``nurture reps list``: hours and time zone, shift, queue; territory folds under the row."""
    columns = (Column("ID"), Column("Name", min_width=10, max_width=30), Column("Hours"),
               Column("Time zone", min_width=10), Column("On shift"), Column("Open", justify="right"),
               Column("Overdue", justify="right"), Column("Today", justify="right"),
               Column("Territory", min_width=9, max_width=40, drop=2, fold=True),
               Column("Tokens", justify="right", drop=3))
    out = [Row(cells=(r["id"], r["name"], r["hours"] or "any", r["timezone"], "yes" if r["on_shift"] else "no",
                      str(r["open"]), Text(str(r["overdue"]), style="red" if r["overdue"] else ""),
                      f"{r['assigned_today']}/{r['capacity']}", ", ".join(r["territory"]), str(r["tokens"])))
           for r in rows]
    return FitTable(columns, out)


STATS_COLUMNS = ("queued", "sent", "failed", "bounced", "skipped", "suppressed")
#: Columns of ``stats`` and ``report`` that fold under the row first on a narrow terminal
#: (highest first); the funnel's core (sent, clicked, tasks, reached, qualified) always shows.
_FOLD_FIRST = {"out_of_office": 6, "away": 6, "bounced_later": 5, "bounced later": 5, "suppressed": 4, "skip": 4,
               "scanner": 3, "replies": 2, "skipped": 1}


def _numeric(header: str) -> Column:
    drop = _FOLD_FIRST.get(header, 0)
    return Column(header, justify="right", drop=drop, fold=drop > 0)


def stats_view(report: Mapping[str, Any], *, columns: Sequence[str] = STATS_COLUMNS) -> Group:
    """``nurture stats``: a table per campaign, sends per step by outcome (``columns``), and
    the complaint rate when the report has one."""
    parts: list[RenderableType] = []
    for c in report["campaigns"]:
        states = ", ".join(f"{n} {s}" for s, n in c["enrollments"].items()) or "no enrollments"
        rows = []
        for s in c["steps"]:
            step = Text(s["step"])
            if not s["current"]:
                step.append(" (removed)", style="dim")
            rows.append(Row(cells=(step, *(str(s[col]) for col in columns))))
        title = Text(f"{c['id']} (version {c['version']}): {states}", style="bold")
        parts.append(FitTable((Column("step", min_width=10), *(_numeric(col) for col in columns)), rows, title=title))
        if "complaint_rate" in c:
            parts.append(Text(f"complaint rate {c['complaint_rate']:.2%} of delivered mail"))
        parts.append(Text(""))
    return Group(*parts[:-1])


_REPORT_CAPTION = ("sent: accepted by the SMTP server · clicked: mails a person clicked · "
                   "scanner: security-scanner requests filtered out · reached: calls connected · "
                   "bounced later: reported after the relay accepted · away: out of office")


def report_view(*, title: str, step_rows: Sequence[StepRow]) -> Group:
    """``nurture report``: the funnel per step with a totals row, the complaint rate, then bars
    of sent and clicked."""
    columns = (Column("step", min_width=10), *(_numeric(label) for _, label in REPORT_COLUMNS))
    rows = [Row(cells=(r.step_id, *(str(r.get(k)) for k, _ in REPORT_COLUMNS))) for r in step_rows]
    tot = totals(list(step_rows))
    rows.append(Row(cells=("all steps", *(str(tot.get(k, 0)) for k, _ in REPORT_COLUMNS)), style="bold",
                    rule_above=True))
    table = FitTable(columns, rows, title=Text(title, style="bold"), caption=Text(_REPORT_CAPTION, style="dim"))
    rate = complaint_rate(tot)
    complaints = Text(f"complaint rate {rate:.2%} of delivered mail")
    if rate > 0.003:
        complaints.append(" (above 0.3 %: Gmail and Yahoo block such senders)", style="red")
    return Group(table, complaints, Text(""),
                 Text.from_markup("[bold]sent[/bold] (grey) and [bold]clicked by people[/bold] (blue), per step:"),
                 _Bars(step_rows))


@dataclass(frozen=True)
class _Bars:
    """Two bars a step (sent, clicked by people), scaled to the width."""

    step_rows: Sequence[StepRow]
    label_width: int = 16
    bar_width: int = 30

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        label_w = min(self.label_width, max(4, options.max_width // 4))
        # Room for the label, the bar and "999999 clicked (100%)".
        bar_w = max(1, min(self.bar_width, options.max_width - label_w - 24))
        peak = max([r.get("sent") for r in self.step_rows] + [1])
        for r in self.step_rows:
            label = Text(r.step_id)
            label.truncate(label_w, overflow="ellipsis")
            label.align("right", label_w)
            sent = Text.assemble(label, " ", ("█" * round(bar_w * r.get("sent") / peak), "grey50"),
                                 f" {r.get('sent')}")
            clicked = Text.assemble(" " * label_w, " ",
                                    ("█" * round(bar_w * r.get("human_clickers") / peak), "blue"),
                                    f" {r.get('human_clickers')} clicked ({r.click_rate:.0%})")
            for line in (sent, clicked):
                line.no_wrap = True
                yield line
