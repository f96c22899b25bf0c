"""The demo plays the whole loop with real parts: sink, tracker, judge, follow-up, reps' app."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from nurture.config import load_settings
from nurture.demo import default_start, merchants, persona, play
from nurture.store import open_store

ROOT = Path(__file__).resolve().parent.parent
CONTACTS = 30


@pytest.fixture(scope="module")
def played(tmp_path_factory):
    import asyncio

    workdir = tmp_path_factory.mktemp("demo")
    base = load_settings(ROOT / "config.yaml", env={"NURTURE_SECRET": "demo-test"})
    updates = []
    result = asyncio.run(play(base=base, workdir=workdir, campaigns_dir=ROOT / "campaigns",
                              speed=1_000_000, contacts=CONTACTS, tracker_port=None, reps_port=None,
                              start=datetime(2026, 11, 29, 23, 55, tzinfo=UTC),
                              on_update=updates.append))
    store = open_store(result.settings.database)
    yield result, store, updates
    store.close()


def _tasks_by_email(store):
    rows = store.query("SELECT c.email, c.owner, c.territory, t.rep_id, t.kind FROM tasks t "
                       "JOIN contacts c ON c.id = t.contact_id")
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["email"], []).append(r)
    return out


def test_every_merchant_got_mail_and_the_sink_kept_it(played):
    result, store, _ = played
    assert result.activity["sends"]["sent"] >= 2 * CONTACTS
    files = list((result.workdir / "mail").glob("*.eml"))
    assert len(files) == result.activity["sends"]["sent"]


def test_human_pricing_clicks_become_call_now_tasks_for_the_right_rep(played):
    _, store, _ = played
    tasks = _tasks_by_email(store)
    pricing = [(i, m) for i, m in enumerate(merchants(CONTACTS))
               if persona(i).comes_back or any(link == "pricing" for _, link, _ in persona(i).clicks)]
    assert pricing, "the demo must have pricing clickers"
    clicked = {r["email"] for r in store.query(
        "SELECT c.email FROM clicks k JOIN sends s ON s.id = k.send_id JOIN contacts c ON c.id = s.contact_id "
        "JOIN links l ON l.id = k.link_id WHERE l.name = 'pricing' AND k.verdict = 'human'")}
    # A merchant whose earlier call ended "qualified" or "not interested" left the campaign
    # before the pricing mail; everyone else who meant to click pricing did.
    assert len(clicked) >= len(pricing) // 2
    for i, m in pricing:
        if m.email not in clicked:
            continue
        kinds = {t["kind"] for t in tasks.get(m.email, [])}
        assert "call_now" in kinds, f"merchant {i} clicked pricing but has no call-now task"
        for t in tasks[m.email]:
            if m.owner:
                assert t["rep_id"] == m.owner  # the owner gets their contacts' calls
            elif m.territory == "GB":
                assert t["rep_id"] == "baker"  # territory routing


def test_scanner_sweeps_raise_no_task(played):
    result, store, _ = played
    tasks = _tasks_by_email(store)
    swept_only = [m for i, m in enumerate(merchants(CONTACTS))
                  if persona(i).scanned and not persona(i).clicks and not persona(i).comes_back]
    assert swept_only
    for m in swept_only:
        assert m.email not in tasks
    assert result.activity["clicks"]["scanner"] > 0
    # Scanners' requests never became human clicks.
    rows = store.query("SELECT COUNT(*) AS n FROM clicks WHERE ip LIKE '40.107.%' AND verdict = 'human'")
    assert rows[0]["n"] == 0


def test_silent_recipients_raise_no_task(played):
    _, store, _ = played
    tasks = _tasks_by_email(store)
    silent = [m for i, m in enumerate(merchants(CONTACTS))
              if not persona(i).clicks and not persona(i).comes_back and not persona(i).replies]
    assert silent and all(m.email not in tasks for m in silent)


def _one(flag: str):
    [(i, m)] = [(i, m) for i, m in enumerate(merchants(CONTACTS)) if getattr(persona(i), flag)]
    return m


def test_a_merchant_who_replies_becomes_a_call_now_task(played):
    result, store, updates = played
    m = _one("replies")
    [row] = store.query("SELECT kind, source, matched_by, task_id, new_text FROM inbound WHERE sender = ?",
                        (m.email,))
    assert (row["kind"], row["source"], row["matched_by"]) == ("reply", "demo", "message-id")
    assert row["new_text"].startswith("Could you call me on Thursday?") and "wrote:" not in row["new_text"]
    task = store.get_task(row["task_id"])
    assert task.kind == "call_now" and "Could you call me on Thursday?" in task.reason
    assert task.rep_id == m.owner if m.owner else task.rep_id
    contact = store.get_contact_by_email(m.email)
    assert store.get_enrollment("ec-payments", contact.id).exit_reason == "replied"
    assert any("replied \u201cCould you call me on Thursday?\u201d → call-now task" in line for line in result.inbound)
    assert any("replied" in line for u in updates for line in u.get("inbound", [])), "the live view shows it"


def test_a_merchant_out_of_office_gets_no_task_and_the_next_mail_waits_for_the_return_date(played):
    result, store, _ = played
    m = _one("out_of_office")
    contact = store.get_contact_by_email(m.email)
    [row] = store.query("SELECT kind, out_of_office, resume_at, task_id, received_at FROM inbound"
                        " WHERE contact_id = ?", (contact.id,))
    assert (row["kind"], row["out_of_office"], row["task_id"]) == ("auto_reply", 1, None)
    assert not store.query("SELECT id FROM tasks WHERE contact_id = ?", (contact.id,))
    sent = {r["step_id"]: r["sent_at"] for r in store.query(
        "SELECT step_id, sent_at FROM sends WHERE contact_id = ? AND status = 'sent'", (contact.id,))}
    # Away for 9 days: the second mail, due a week after the first, went out only after the return date.
    assert sent["service-page"] >= row["resume_at"] > sent["case-study"] + 7 * 86400
    others = store.query("SELECT s.sent_at - f.sent_at AS gap FROM sends s JOIN sends f ON f.contact_id = s.contact_id"
                         " AND f.step_id = 'case-study' WHERE s.step_id = 'service-page' AND s.status = 'sent'"
                         " AND s.contact_id != ?", (contact.id,))
    assert others and min(r["gap"] for r in others) < 8 * 86400  # everyone else got it on time
    assert any("out of office until" in line and "the next mail waits" in line for line in result.inbound)


def test_an_address_that_bounces_after_acceptance_is_suppressed_by_its_dsn(played):
    result, store, _ = played
    m = _one("bounces_later")
    accepted = [f for f in (result.workdir / "mail").glob("*.eml") if m.email.encode() in f.read_bytes()[:4000]]
    assert accepted, "the sink accepted the first mail"
    contact = store.get_contact_by_email(m.email)
    [row] = store.query("SELECT kind, status, matched_by FROM inbound WHERE contact_id = ?", (contact.id,))
    assert (row["kind"], row["status"], row["matched_by"]) == ("hard_bounce", "5.1.1", "verp")
    assert contact.status == "bounced" and store.is_suppressed(m.email)
    steps = [r["step_id"] for r in store.query("SELECT step_id FROM sends WHERE contact_id = ? AND status = 'sent'",
                                               (contact.id,))]
    assert steps == ["case-study"], "nothing more after the DSN"
    assert any(f"{m.email} bounced after the relay accepted it (5.1.1)" in line for line in result.inbound)


def test_live_view_updates_and_some_tasks_are_left_open_for_the_reps(played):
    result, _, updates = played
    assert len(updates) > 5
    assert updates[-1]["activity"]["sends"].get("sent", 0) > 0
    open_now = sum(c.get("open_call_now", 0) for c in result.activity["tasks"].values())
    assert open_now >= 1
    assert set(result.tokens) == {"aoki", "baker", "garcia", "manager"}
    assert (result.workdir / "config.yaml").exists()


def test_default_start_is_a_monday_morning_in_tokyo_before_now():
    now = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
    start = default_start(now)
    local = start.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Tokyo"))
    assert local.weekday() == 0 and (local.hour, local.minute) == (8, 55)
    assert 15 <= (now - start).days <= 22


@pytest.mark.slow
def test_readme_demo_command_runs_to_the_end(tmp_path):
    """The README's first command, with --exit so it ends (and fast, to keep CI short)."""
    readme = (ROOT / "README.md").read_text()
    assert "nurture demo" in readme.splitlines()[3]
    env = {**os.environ, "COLUMNS": "120"}
    proc = subprocess.run(
        [sys.executable, "-m", "nurture", "demo", "--exit", "--dir", str(tmp_path / "ws"),
         "--speed", "1000000", "--contacts", "12", "--tracker-port", "0", "--reps-port", "0"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "mails delivered" in proc.stdout
    assert "call-now task(s) waiting for reps" in proc.stdout
    # --exit: the servers are gone, so no login links that would not open.
    assert "/login?token=" not in proc.stdout
    assert "reps token aoki" in " ".join(proc.stdout.split())


def test_report_command_on_the_demo_workspace(played):
    import json

    from click.testing import CliRunner

    from nurture.cli import main

    result, _, _ = played
    out = CliRunner().invoke(main, ["--config", str(result.workdir / "config.yaml"), "report", "ec-payments",
                                    "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    steps = {s["step"]: s for s in data["steps"]}
    assert list(steps) == ["case-study", "service-page", "webinar"]
    assert steps["case-study"]["sent"] == result.funnel["case-study"]["sent"]
    assert steps["case-study"]["scanner_clicks"] > 0
    table = CliRunner().invoke(main, ["--config", str(result.workdir / "config.yaml"), "report", "ec-payments"])
    assert table.exit_code == 0 and "case-study" in table.output and "clicked" in table.output


async def test_report_page_needs_login_and_shows_the_funnel(played):
    import asyncio

    import aiohttp

    from nurture.campaigns import load_campaigns
    from nurture.parts import Context, Options
    from nurture.parts import reps as reps_part
    from nurture.repauth import issue_rep_token
    from nurture.store import open_async_store

    result, _, _ = played
    settings = result.settings
    store = open_async_store(settings.database)
    stop = asyncio.Event()
    urls = []
    campaigns = {c.id: c for c in load_campaigns(settings.campaigns_dir)}
    server = asyncio.create_task(reps_part(Context(settings=settings, store=store, campaigns=campaigns, stop=stop,
                                                   options=Options(reps_port=0),
                                                   ready=lambda _part, url: urls.append(url))))
    try:
        while not urls:
            await asyncio.sleep(0.01)
        token = await store.run(lambda s: issue_rep_token(s, settings, rep_id="aoki",
                                                          now=datetime.now(UTC)))
        async with aiohttp.ClientSession() as anon:
            async with anon.get(f"{urls[0]}/report/ec-payments", allow_redirects=False) as r:
                assert r.status in (302, 303, 401)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
            async with s.get(f"{urls[0]}/login?token={token}") as r:  # the login link logs in at once
                assert r.status == 200 and r.url.path == "/tasks"
            async with s.get(f"{urls[0]}/report/ec-payments") as r:
                page = await r.text()
                assert r.status == 200
        assert "<svg" in page and 'data-step="service-page"' in page
        assert f'data-key="sent">{result.funnel["case-study"]["sent"]}<' in page
    finally:
        stop.set()
        await server
        await store.aclose()


def test_after_the_play_the_workspace_is_on_the_real_clock(played):
    """The play ran on a simulated clock that started 2026-11-29; afterwards every stored time
    is on the real one, so the reps' app and `nurture tasks` (real clock) agree."""
    from nurture.timeutil import utcnow

    result, store, _ = played
    now = utcnow().timestamp()
    latest = store.query_one("SELECT MAX(created_at) AS t FROM tasks")["t"]
    assert now - 86400 < latest <= now + 1, "the newest task was created in the last day of real time"
    last_sent = store.query_one("SELECT MAX(sent_at) AS t FROM sends")["t"]
    assert last_sent <= now + 1
    played_until = datetime(2026, 11, 29, 23, 55, tzinfo=UTC).timestamp() + 15 * 86400
    assert abs(result.shifted.total_seconds() - (now - played_until)) < 20 * 86400  # a real move happened
    assert result.shifted.total_seconds() != 0


def test_a_taken_port_is_a_one_line_error(tmp_path):
    import socket

    from click.testing import CliRunner

    from nurture.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["--config", str(ROOT / "config.yaml"), "demo", "--exit",
                                           "--dir", str(tmp_path / "ws"), "--tracker-port", str(port),
                                           "--reps-port", "0"])
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if not line.startswith("config: ")]
    assert len(lines) == 1, result.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in lines[0] and "--tracker-port" in lines[0]
    assert not (tmp_path / "ws").exists(), "refused before creating the workspace"
