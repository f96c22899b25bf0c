"""nurture/cli/tables.py: ``tasks``, ``clicks``, ``reps list``, ``stats`` and ``report`` at 80 and 200 columns.

Each table is rendered with a fixed-width rich Console; every line must fit, long text (a
task's reason, a click's reasons) must come out whole under its row, and phone numbers,
which a rep dials, are never cut.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from rich.cells import cell_len
from rich.console import Console, RenderableType
from rich.text import Text
from support import NOW, seed_click

from nurture.cards import TaskCard
from nurture.cli.tables import (
    Column,
    FitTable,
    Row,
    clicks_view,
    report_view,
    reps_view,
    stats_view,
    tasks_view,
)
from nurture.followup import process_clicks
from nurture.models import Contact, Task
from nurture.report import StepRow
from nurture.store import open_store
from nurture.store.tracking import ListedClick

WIDTHS = (80, 200)
REASON = ('Opened the pricing page from "How Paperie Tokyo cut checkout drop-off by 23%" twice within '
          "ten minutes, then the case study. Ask about monthly order volume, current provider and timing.")


def render(renderable: RenderableType, width: int) -> list[str]:
    console = Console(width=width, record=True, color_system=None, force_terminal=False, file=open("/dev/null", "w"))
    console.print(renderable)
    text = console.export_text(styles=False)
    console.file.close()
    return text.splitlines()


def fits(lines: list[str], width: int) -> None:
    too_long = [(cell_len(line), line) for line in lines if cell_len(line) > width]
    assert not too_long, too_long


def flat(lines: list[str]) -> str:
    return re.sub(r"\s+", " ", " ".join(lines)).strip()


def card(task_id: int, *, name: tuple[str, str], company: str, phone: str, reason: str = REASON,
         priority: str = "high", overdue: bool = False, rep: str = "garcia") -> TaskCard:
    due = NOW - timedelta(hours=4) if overdue else NOW + timedelta(minutes=41)
    task = Task(id=task_id, contact_id=task_id, campaign_id="ec-payments", kind="call_now", priority=priority,
                status="open", due_at=due, created_at=NOW - timedelta(hours=5), rep_id=rep, reason=reason)
    contact = Contact(id=task_id, email=f"c{task_id}@shop.example", first_name=name[0], last_name=name[1],
                      company=company, phone=phone)
    return TaskCard(task=task, contact=contact, rep=None, score=82.4, hot=True, overdue=overdue,
                    contact_tz="Asia/Tokyo", contact_local_time=NOW, campaign_name="Checkout payments")


CARDS = [
    card(14, name=("Olivia", "Davis"), company="Quill & Ink Stationery Holdings", phone="+1 212-555-0180",
         overdue=True),
    card(7, name=("高橋", "陽菜"), company="株式会社クモ茶房", phone="+81 3-7468-1234", priority="urgent",
         reason="価格ページを2回開きました。" * 6),
    card(1203, name=("Maximilian-Alexander", "Featherstonehaugh-Worthington"), company="A" * 50,
         phone="+44 20 7946 0958", reason="x" * 130, priority="normal", rep="baker"),
]


def note_text(lines: list[str], row_start: str) -> str:
    """The text under the row whose line starts with ``row_start``, up to the next row."""
    i = next(n for n, line in enumerate(lines) if line.lstrip().startswith(row_start))
    out = []
    for line in lines[i + 1:]:
        if not line.startswith("    "):
            break
        out.append(line)
    return flat(out)


@pytest.mark.parametrize("width", WIDTHS)
def test_tasks_fit_and_keep_the_reason_whole(width):
    lines = render(tasks_view(CARDS, now=NOW), width)
    fits(lines, width)
    assert lines[0].split()[:3] == ["ID", "Priority", "Due"]
    assert note_text(lines, "14 ").startswith(REASON)
    # A reason without spaces is folded at the width, every character kept.
    assert note_text(lines, "1203 ").replace(" ", "").startswith("x" * 130)
    assert note_text(lines, "7 ").replace(" ", "").startswith("価格ページを2回開きました。" * 6)
    for c in CARDS:  # the number a rep dials is never cut
        assert any(c.contact.phone in line for line in lines), c.contact.phone
    assert "4 h overdue" in flat(lines) and "in 41 min" in flat(lines)


def test_tasks_at_80_columns_fold_rep_and_score_under_the_row():
    lines = render(tasks_view(CARDS, now=NOW), 80)
    assert "Rep" not in lines[0] and "Score" not in lines[0]
    assert "Rep: garcia · Score: 82 hot" in note_text(lines, "14 ")
    assert "Olivia Davis" in lines[2]
    # a task is its row, its reason (two lines at most here) and the folded fields: not ~40 lines
    assert len(lines) <= 2 + 3 * 5


def test_tasks_at_200_columns_show_every_column_and_one_reason_line():
    lines = render(tasks_view(CARDS[:1], now=NOW), 200)
    assert lines[0].split() == ["ID", "Priority", "Due", "Contact", "Company", "Phone", "Rep", "Score"]
    assert "Quill & Ink Stationery Holdings" in lines[2] and "82 hot" in lines[2]
    assert len(lines) == 4 and flat(lines[3:]) == REASON


_CLICK_ROWS = [
    {"id": 92, "at": datetime(2026, 11, 25, 15, 27, 7, tzinfo=UTC), "campaign_id": "ec-payments",
     "step_id": "case-study", "kind": "click", "link": "pricing", "honeypot": False,
     "email": "sophia.garcia44@rusticcyclecoeast.example", "ip": "203.0.113.45", "method": "GET",
     "verdict": "scanner", "score": 0.93,
     "reasons": ["HEAD request before GET", "requested 0.4 s after delivery", "ip in Microsoft 40.94.0.0/16",
                 "user agent python-requests/2.31"]},
    {"id": 93, "at": datetime(2026, 11, 25, 15, 28, 0, tzinfo=UTC), "campaign_id": "industry-news",
     "step_id": "weekly-digest-2026-11", "kind": "open", "link": None, "honeypot": False,
     "email": "k@x.example", "ip": None, "method": "GET", "verdict": "pending", "score": 0.0, "reasons": []},
]
CLICKS = [ListedClick(**{"user_agent": None, "settled_at": None, "handled": False, "send_id": 1, "sent_at": None,
                         "url": None, **r, "reasons": tuple(r["reasons"])}) for r in _CLICK_ROWS]


@pytest.mark.parametrize("width", WIDTHS)
def test_clicks_fit_and_keep_the_reasons_whole(width):
    lines = render(clicks_view(CLICKS), width)
    fits(lines, width)
    assert "; ".join(CLICKS[0].reasons) in note_text(lines, "92 ")
    assert "case-study" in flat(lines) and "(open)" in flat(lines)
    if width == 200:
        assert lines[0].split() == ["id", "at", "(UTC)", "campaign", "step", "link", "recipient", "ip",
                                    "method", "verdict", "score"]
        assert "sophia.garcia44@rusticcyclecoeast.example" in lines[2]
    else:  # the campaign, ip and score fold under the row; the method goes
        assert "campaign: ec-payments · ip: 203.0.113.45 · score: 0.93" in note_text(lines, "92 ")
        assert "method" not in lines[0] and "  GET  " not in lines[2]


REPS = [{"id": "garcia", "name": "Lucía García-Fernández", "email": "g@x", "timezone": "America/Argentina/Buenos_Aires",
         "hours": "08:30-17:00", "on_shift": False, "open": 12, "overdue": 3, "assigned_today": 9, "capacity": 16,
         "territory": ["US", "CA", "MX", "AR", "BR", "CL", "CO", "PE"], "tokens": 2},
        {"id": "aoki", "name": "Aoki Yui", "email": "a@x", "timezone": "Asia/Tokyo", "hours": None,
         "on_shift": True, "open": 0, "overdue": 0, "assigned_today": 0, "capacity": 16, "territory": [],
         "tokens": 0}]


@pytest.mark.parametrize("width", WIDTHS)
def test_reps_list_fits(width):
    lines = render(reps_view(REPS), width)
    fits(lines, width)
    assert "Territory: US, CA, MX, AR, BR, CL, CO, PE" in flat(lines) or (
        width == 200 and "US, CA, MX, AR, BR, CL, CO, PE" in lines[2])
    assert "any" in flat(lines) and "9/16" in flat(lines)


STATS = {"campaigns": [{"id": "ec-payments-a-campaign-with-a-long-id", "version": 3,
                        "enrollments": {"active": 51, "exited": 9, "completed": 1200},
                        "steps": [{"step": "case-study", "current": True, "queued": 12, "sent": 123456,
                                   "failed": 3, "bounced": 1, "skipped": 0, "suppressed": 2},
                                  {"step": "an-old-step-that-was-removed-in-version-2", "current": False,
                                   "queued": 0, "sent": 88, "failed": 0, "bounced": 0, "skipped": 0,
                                   "suppressed": 0}]},
                       {"id": "industry-news", "version": 1, "enrollments": {}, "steps": []}]}


@pytest.mark.parametrize("width", WIDTHS)
def test_stats_with_what_came_back_fits(width):
    from nurture.cli.contacts import _COLUMNS

    steps = [{"step": "case-study", "current": True, **dict.fromkeys(_COLUMNS, 0), "sent": 900, "bounced_later": 7,
              "complaints": 1, "out_of_office": 0}]
    report = {"campaigns": [{"id": "ec-payments", "version": 1, "enrollments": {"active": 3}, "steps": steps,
                             "complaint_rate": 0.00111}]}
    lines = render(stats_view(report, columns=_COLUMNS), width)
    fits(lines, width)
    assert "complaint rate 0.11% of delivered mail" in lines
    if width == 80:  # folded under the row, and only when not 0
        assert "bounced_later: 7" in flat(lines) and "out_of_office" not in flat(lines)
    else:
        assert lines[1].split() == ["step", *_COLUMNS]


@pytest.mark.parametrize("width", WIDTHS)
def test_stats_fits(width):
    lines = render(stats_view(STATS), width)
    fits(lines, width)
    assert "ec-payments-a-campaign-with-a-long-id (version 3): 51 active, 9 exited, 1200 completed" in flat(lines)
    assert "123456" in flat(lines) and "industry-news (version 1): no enrollments" in flat(lines)
    if width == 200:
        assert "an-old-step-that-was-removed-in-version-2 (removed)" in flat(lines)


STEPS = [StepRow("case-study", "How X cut drop-off", {"sent": 59, "failed": 1, "human_clickers": 20,
                                                     "scanner_clicks": 72, "tasks": 20, "connected": 11,
                                                     "qualified": 3}),
         StepRow("service-page-for-merchants-in-apparel", "Y", {"sent": 1000000, "human_clickers": 999999}),
         StepRow("webinar", "Z", {})]


@pytest.mark.parametrize("width", WIDTHS)
def test_report_fits(width):
    lines = render(report_view(title="Checkout payments for e-commerce merchants (ec-payments)",
                               step_rows=STEPS), width)
    fits(lines, width)
    all_steps = next(line for line in lines if line.startswith("all steps"))
    assert all_steps.split()[2:4] == ["1000059", "1"]
    assert "999999 clicked (100%)" in flat(lines) and "20 clicked (34%)" in flat(lines)


def test_fit_table_drops_the_least_useful_column_first_and_cuts_with_an_ellipsis():
    table = FitTable([Column("keep"), Column("name", min_width=6), Column("low", drop=2), Column("lower", drop=5)],
                     [Row(["k" * 10, "n" * 30, "l" * 10, "w" * 10])])
    assert list(table.layout(100)) == [0, 1, 2, 3]
    assert table.layout(66) == {0: 10, 1: 30, 2: 10, 3: 10}
    assert table.layout(50) == {0: 10, 1: 14, 2: 10, 3: 10}  # shrinking comes first
    assert table.layout(40) == {0: 10, 1: 16, 2: 10}  # then "lower" (drop 5) goes before "low" (drop 2)
    assert table.layout(25) == {0: 10, 1: 13}
    [header, _, row] = render(table, 22)
    assert cell_len(row) <= 22 and row.endswith("…") and header.split() == ["keep", "name"]
    assert render(FitTable([Column("a")], [Row([Text("[red]x[/red]")])]), 20)[2] == "[red]x[/red]"


def test_cli_commands_fit_80_columns(tmp_path, db_path, settings, campaigns):
    """The real commands on a real database print through the same tables."""
    from click.testing import CliRunner

    from nurture.cli import main
    from nurture.cli.app import console

    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"database: {db_path}\ncampaigns_dir: {tmp_path / 'none'}\n"
                   "reps:\n  - {id: baker, name: Sam Baker, email: b@x, timezone: Europe/London, "
                   "hours: '09:00-17:30', territory: [GB, IE, DE, FR, NL]}\n")
    s = open_store(db_path)
    seed_click(s, territory="GB", company="Northwind Traders International Limited")
    process_clicks(s, campaigns, settings, now=NOW)
    reason = s.query_one("SELECT reason FROM tasks")["reason"]
    s.close()
    assert len(reason) > 40
    old = console.width
    console.width = 80
    try:
        for args in (["tasks"], ["clicks"], ["reps", "list"]):
            r = CliRunner().invoke(main, ["--config", str(cfg), *args], catch_exceptions=False)
            assert r.exit_code == 0, r.output
            lines = r.stdout.splitlines()
            fits(lines, 80)
            if args == ["tasks"]:
                # The stored reason's relative time is computed when shown: compare up to it.
                assert flat([reason.split("\u27e8")[0]]) in flat(lines) and "+81 3 1234 5678" in r.stdout
    finally:
        console.width = old
