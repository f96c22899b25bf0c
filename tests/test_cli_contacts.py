"""The contacts/enroll/plan/simulate/stats commands through click's runner, on a real SQLite file."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from nurture.cli import main
from nurture.store import open_store
from nurture.store.relay import RelayState

CAMPAIGN = """\
id: drip
name: A small drip
timezone: Europe/London
send_window: {days: [mon, tue, wed, thu, fri], hours: "09:00-18:00"}
steps:
  - id: hello
    wait: 0d
    subject: "Hello {{ contact.first_name }}"
    template: ec-payments/case_study.html
  - id: pricing
    wait: 3d
    unless: {clicked: pricing}
    subject: "Prices"
    template: ec-payments/service.html
  - id: bye
    wait: 7d
    subject: "Bye"
    template: ec-payments/webinar.html
follow_up:
  - when: {clicked: pricing}
    task: call_now
    priority: high
    due: 1h
exit: [unsubscribed, bounced, {outcome: qualified}]
samples:
  - email: sample@shop.example
    first_name: Sam
    timezone: America/New_York
"""


@pytest.fixture
def env(tmp_path: Path, root: Path):
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "drip.yaml").write_text(CAMPAIGN)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"database: {tmp_path / 'n.db'}\ncampaigns_dir: {tmp_path / 'campaigns'}\n"
                   f"templates_dir: {root / 'templates'}\n")
    runner = CliRunner()

    def run(*args: str, code: int = 0):
        result = runner.invoke(main, ["--config", str(cfg), *args], env={"COLUMNS": "200"})
        assert result.exit_code == code, (result.output, result.exception)
        return result

    run.tmp = tmp_path
    return run


def write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("email,first_name,company,timezone,industry,plan\n" + "\n".join(rows) + "\n")
    return path


def test_import_reports_bad_rows_and_a_summary(env):
    f = write_csv(env.tmp / "c.csv", ["a@shop.example,Ann,Shop A,Europe/London,apparel,gold",
                                      "nope,B,,,,", "c@shop.example,C,,Mars/Base,,"])
    r = env("contacts", "import", str(f))
    assert "imported 1 new, updated 0, skipped 2 bad rows" in r.output
    assert 'c.csv:3: email: "nope" is not an email address' in r.output  # the row a spreadsheet shows
    assert 'c.csv:4: timezone: "Mars/Base" is not a time zone' in r.output
    r = env("contacts", "import", str(env.tmp / "missing.csv"), code=1)
    assert "error" in r.output and "Traceback" not in r.output


def test_enroll_all_where_csv_idempotent_and_stats(env):
    f = write_csv(env.tmp / "c.csv", [f"u{i}@shop.example,U{i},Shop {i},Europe/London,"
                                      f"{'apparel' if i % 2 else 'beauty'},{'gold' if i < 3 else 'free'}"
                                      for i in range(6)])
    env("contacts", "import", str(f))
    r = env("enroll", "drip", "--where", "industry=APPAREL")
    assert "enrolled 3 contacts in drip" in r.output
    r = env("enroll", "drip", "--where", "plan=gold")  # an extra column, kept in attributes
    assert "enrolled 2 contacts" in r.output and "1 already enrolled" in r.output
    store = open_store(str(env.tmp / "n.db"))
    store.suppress("u0@shop.example", "unsubscribed", now=store.get_stored_campaign("drip").updated_at)
    store.close()
    r = env("enroll", "drip", "--all")
    assert "enrolled 1 contact in drip (4 already enrolled, 1 suppressed" in r.output
    r = env("enroll", "drip", "--all")
    assert "enrolled 0 contacts in drip (5 already enrolled, 1 suppressed" in r.output
    g = write_csv(env.tmp / "more.csv", ["new@shop.example,N,,,,", "U1@SHOP.example,U1b,,,,"])
    r = env("enroll", "drip", "--csv", str(g))
    assert "imported 1 new, updated 1" in r.output and "enrolled 1 contact in drip" in r.output
    env("enroll", "drip", code=2)
    env("enroll", "drip", "--all", "--where", "a=b", code=2)
    env("enroll", "nosuch", "--all", code=1)

    r = env("stats", "--json")
    data = json.loads(r.stdout)
    (c,) = data["campaigns"]
    assert c["id"] == "drip" and c["enrollments"] == {"active": 7}
    assert [s["step"] for s in c["steps"]] == ["hello", "pricing", "bye"]
    r = env("stats", "drip")
    assert "hello" in r.output and "bounced" in r.output


def test_stats_count_sends_by_status(env):
    env("contacts", "import", str(write_csv(env.tmp / "c.csv", [f"s{i}@shop.example,S,,,," for i in range(4)])))
    env("enroll", "drip", "--all")
    store = open_store(str(env.tmp / "n.db"))
    ids = [r["id"] for r in store.query("SELECT id, contact_id FROM enrollments ORDER BY id")]
    for eid, status, code, enhanced in zip(ids, ["sent", "failed", "failed", "queued"], [None, 550, 421, None],
                                           [None, "5.1.1", None, None], strict=True):
        store.conn.execute(
            "INSERT INTO sends (enrollment_id, campaign_id, step_id, contact_id, status, next_attempt_at, queued_at,"
            " error_code, error_enhanced) SELECT id, campaign_id, 'hello', contact_id, ?, 0, 0, ?, ? FROM enrollments"
            " WHERE id = ?", (status, code, enhanced, eid))
    store.close()
    hello = json.loads(env("stats", "drip", "--json").stdout)["campaigns"][0]["steps"][0]
    assert {k: hello[k] for k in ("queued", "sent", "failed", "bounced")} == {
        "queued": 1, "sent": 1, "failed": 1, "bounced": 1}


def test_stats_show_what_the_sender_learned_about_the_relay(env):
    env("contacts", "import", str(write_csv(env.tmp / "c.csv", ["r@shop.example,R,,,,"])))
    env("enroll", "drip", "--all")
    store = open_store(str(env.tmp / "n.db"))
    store.save_relay_state(RelayState(name="127.0.0.1:2525", rate=0.8333, pool=4, hold_until=None,
                                      last_reply="MAIL FROM: 450 4.7.1 Error: too much mail from 127.0.0.1",
                                      last_reply_at=1.0, updated_at=2.0))
    store.close()
    (relay,) = json.loads(env("stats", "--json").stdout)["relays"]
    assert (relay["name"], relay["pool"], relay["rate"]) == ("127.0.0.1:2525", 4, 0.8333)
    out = env("stats").output
    assert "relay 127.0.0.1:2525: pool 4 · rate 0.833/s · last reply 'MAIL FROM: 450 4.7.1" in out


def test_plan_shows_the_effect_of_an_edit_before_it_is_applied(env):
    env("contacts", "import", str(write_csv(env.tmp / "c.csv", ["p@shop.example,P,,,,"])))
    r = env("plan", "drip")
    assert "is new" in r.output
    env("enroll", "drip", "--all")
    assert "no changes" in env("plan", "drip").output
    store = open_store(str(env.tmp / "n.db"))
    store.conn.execute("UPDATE enrollments SET next_step = 'pricing'")
    store.close()
    edited = CAMPAIGN.replace("  - id: pricing\n    wait: 3d\n    unless: {clicked: pricing}\n"
                              "    subject: \"Prices\"\n    template: ec-payments/service.html\n", "")
    (env.tmp / "campaigns" / "drip.yaml").write_text(edited)
    r = env("plan", "drip")
    assert "version 1 → 2" in r.output
    assert "removed step pricing" in r.output
    assert "1 at removed step pricing move to bye" in r.output
    store = open_store(str(env.tmp / "n.db"))
    assert store.get_stored_campaign("drip").version == 1  # plan applied nothing
    store.close()


def test_simulate_prints_the_timeline_in_local_time(env):
    r = env("simulate", "drip", "--click", "hello:pricing@+2h")
    out = r.output
    assert "sample@shop.example" in out and "America/New_York" in out
    assert "EST" in out
    assert "skipped" in out and "unless: clicked pricing" in out
    assert "call_now" in out and "high" in out
    assert "Hello Sam" in out or "Hello {{" in out
    r = env("simulate", "drip", "--click", "nosuch:pricing", code=1)
    assert 'no step "nosuch"' in r.output
    env("simulate", "drip", "--click", "garbage", code=2)


def test_simulate_from_a_chosen_start_in_local_time(env):
    # Friday 17:59 in New York: the first step still goes out; Saturday 10:00 waits for Monday 09:00.
    r = env("simulate", "drip", "--start", "2026-12-04 17:59")
    assert "Fri 04 Dec 2026 17:59 EST" in r.output and "sent" in r.output
    r = env("simulate", "drip", "--start", "2026-12-05T10:00")
    assert "waits until Mon 07 Dec 09:00 EST" in r.output
    r = env("simulate", "drip", "--start", "2026-12-05T15:00+00:00")
    assert "Sat 05 Dec 2026 10:00 EST" in r.output
    env("simulate", "drip", "--start", "someday", code=2)


def test_simulate_names_the_holidays_and_closures_it_skips(env):
    cfg = env.tmp / "config.yaml"
    cfg.write_text(cfg.read_text() + "closures: [2026-12-24..2026-12-25]\n")
    # Thanksgiving in New York (the sample's time zone), then a company closure.
    r = env("simulate", "drip", "--start", "2026-11-26 10:00")
    assert "holiday: Thanksgiving Day (US)" in r.output and "waits until Fri 27 Nov 09:00 EST" in r.output
    r = env("simulate", "drip", "--start", "2026-12-24 10:00")
    assert "holiday: closure 2026-12-24..2026-12-25" in r.output and "Mon 28 Dec 09:00" in r.output


def test_simulate_team_and_stats_show_pacing(env):
    paced = CAMPAIGN.replace("follow_up:", "pace: reps\nfollow_up:", 1)
    (env.tmp / "campaigns" / "drip.yaml").write_text(paced)
    r = env("simulate", "drip", "--team", "300", "--start", "2026-12-07 09:00")
    # The rule names no step, so every step's clicks raise call-now tasks and all are paced.
    assert "pace: reps (holds bye, hello, pricing)" in r.output
    # 09:00 in New York is 23:00 in Tokyo, where the default team works: Tuesday is the first day.
    assert re.search(r"Tue 08 Dec\s+\d+\s+[1-9]\d*", r.output)
    assert "called past due by more than one working day: 0" in r.output
    env("contacts", "import", str(write_csv(env.tmp / "c.csv", ["s@shop.example,S,,,,"])))
    env("enroll", "drip", "--all")
    store = open_store(str(env.tmp / "n.db"))
    store.record_pacing("drip", held=12, released=30, free_slots=0, expect=0.2, now=datetime(2026, 12, 7, tzinfo=UTC))
    store.close()
    out = env("stats", "drip").output
    assert "pace: reps: 12 held since 2026-12-07T00:00:00+00:00, 30 released, 0 calls free" in out
    p = json.loads(env("stats", "drip", "--json").stdout)["campaigns"][0]["pacing"]
    assert (p["held"], p["released"], p["expect"]) == (12, 30, 0.2)
