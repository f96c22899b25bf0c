"""``nurture tasks`` (table, JSON, CSV, done) and ``nurture reps`` (token, list, revoke)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from support import NOW, seed_click

from nurture.followup import process_clicks
from nurture.store import open_store


@pytest.fixture
def cli_env(tmp_path, db_path, settings, campaigns):
    import csv as _csv  # noqa: F401
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"database: {db_path}\n"
        f"campaigns_dir: {tmp_path / 'no-campaigns'}\n"
        "reps:\n"
        "  - {id: aoki, name: Aoki Yui, email: a@x, timezone: Asia/Tokyo, hours: '09:00-18:00', territory: [JP]}\n"
        "  - {id: baker, name: Sam Baker, email: b@x, timezone: Europe/London, "
        "hours: '09:00-17:30', territory: [GB]}\n")
    s = open_store(db_path)
    seed_click(s, territory="GB")
    seed_click(s, "blog", email="yui@tea.example", territory="JP", first_name="Yui",
               last_name="Sato", company="Kumo Tea", phone="+81 90 0000 0000")
    ids = process_clicks(s, campaigns, settings, now=NOW)
    s.close()
    return str(cfg), ids

def run_cli(cfg, *args):
    from click.testing import CliRunner

    from nurture.cli import main
    from nurture.cli.app import console
    console.width = 200  # a wide terminal, so table cells are not folded
    return CliRunner().invoke(main, ["--config", cfg, *args], catch_exceptions=False)

def test_cli_tasks_table_json_csv(cli_env):
    import csv
    import io
    cfg, (ken, yui) = cli_env
    r = run_cli(cfg, "tasks")
    assert r.exit_code == 0, r.output
    assert "Ken Mori" in r.output and "Kumo Tea" in r.output and "overdue" in r.output
    r = run_cli(cfg, "tasks", "--rep", "aoki", "--json")
    data = json.loads(r.stdout)
    assert [t["id"] for t in data["tasks"]] == [yui]
    r = run_cli(cfg, "tasks", "--csv", "basic")
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert list(rows[0]) == ["Task ID", "First Name", "Last Name", "Company", "Email", "Phone",
                             "Priority", "Due (ISO 8601)", "Reason", "Campaign", "Lead Score", "Owner"]
    by_id = {int(x["Task ID"]): x for x in rows}
    # 35 points at NOW, decayed (half-life 14 d) by the real clock the CLI reads
    assert by_id[ken]["Owner"] == "baker" and 0 < int(by_id[ken]["Lead Score"]) <= 35
    assert datetime.fromisoformat(by_id[ken]["Due (ISO 8601)"]) == NOW + timedelta(hours=1)
    r = run_cli(cfg, "tasks", "--rep", "nobody")
    assert r.exit_code == 2 and "no rep" in r.output

def test_cli_tasks_done_and_errors(cli_env):
    cfg, (ken, _) = cli_env
    r = run_cli(cfg, "tasks", "done", str(ken), "--outcome", "connected", "--note", "call back Friday")
    assert r.exit_code == 0 and "connected" in r.output
    r = run_cli(cfg, "tasks", "--status", "done", "--json")
    [t] = json.loads(r.stdout)["tasks"]
    assert (t["id"], t["outcome"]) == (ken, "connected")
    r = run_cli(cfg, "tasks", "done", str(ken), "--outcome", "connected")
    assert r.exit_code == 1 and "already done" in r.output and "Traceback" not in r.output
    r = run_cli(cfg, "tasks", "done", "999", "--outcome", "connected")
    assert r.exit_code == 1 and "no task with id 999" in r.output

def test_cli_exports_a_crm_takes(cli_env):
    import csv
    import io
    cfg, (ken, yui) = cli_env
    r = run_cli(cfg, "tasks", "done", str(ken), "--outcome", "voicemail", "--note", "left a message")
    assert r.exit_code == 0 and "attempt 1 of 3" in r.output
    r = run_cli(cfg, "tasks", "done", str(yui), "--outcome", "qualified", "--note", "Wants a demo")
    assert r.exit_code == 0
    data = json.loads(run_cli(cfg, "tasks", "--json", "--status", "all").stdout)
    by_id = {t["id"]: t for t in data["tasks"]}
    done = by_id[yui]
    assert (done["outcome"], done["notes"], done["rep"]["id"]) == ("qualified", "Wants a demo", "aoki")
    assert done["done_at"] and done["bant"] == {} and done["raised_by"]["link"] == "blog"
    assert by_id[ken]["attempts"] == 1 and by_id[ken]["attempt_log"][0]["notes"] == "left a message"
    assert "score" in done and done["raised_by"]["click_id"]
    r = run_cli(cfg, "tasks", "--csv", "--status", "all")
    rows = {int(x["Nurture Task ID"]): x for x in csv.DictReader(io.StringIO(r.stdout))}
    assert list(next(iter(rows.values())))[:7] == ["Subject", "Who (email)", "ActivityDate", "Status",
                                                   "Priority", "CallDisposition", "Description"]
    assert rows[yui]["Status"] == "Completed" and rows[yui]["CallDisposition"] == "qualified"
    assert "Notes: Wants a demo" in rows[yui]["Description"] and rows[yui]["Who (email)"] == "yui@tea.example"
    assert rows[ken]["Status"] == "Not Started" and rows[ken]["Priority"] == "High"
    assert "1. voicemail" in rows[ken]["Description"]
    r = run_cli(cfg, "tasks", "--csv", "hubspot", "--status", "all")
    rows = {int(x["Nurture Task ID"]): x for x in csv.DictReader(io.StringIO(r.stdout))}
    assert (rows[yui]["Call outcome"], rows[yui]["Call status"]) == ("Connected", "COMPLETED")
    assert (rows[ken]["Call outcome"], rows[ken]["Call status"]) == ("Left voicemail", "QUEUED")
    assert rows[ken]["Email"] == "ken@shop.example" and rows[ken]["Call direction"] == "OUTBOUND"


def test_cli_reps_token_and_list(cli_env, db_path):
    from nurture.repauth import hash_token
    cfg, _ = cli_env
    r = run_cli(cfg, "reps", "token", "baker")
    assert r.exit_code == 0
    token = r.stdout.splitlines()[0]
    s = open_store(db_path)
    assert s.rep_for_token(hash_token(token)) == "baker"
    s.close()
    r = run_cli(cfg, "reps", "token", "nobody")
    assert r.exit_code == 1 and 'no rep "nobody"' in r.output
    r = run_cli(cfg, "reps", "list", "--json")
    reps = {x["id"]: x for x in json.loads(r.stdout)["reps"]}
    assert reps["baker"]["tokens"] == 1 and reps["baker"]["open"] == 1
    r = run_cli(cfg, "reps", "list")
    assert "Sam Baker" in r.output
    r = run_cli(cfg, "reps", "revoke", "baker")
    assert "Revoked 1 token" in r.output


def test_cli_tasks_csv_and_table_neutralise_formulas_and_escape_sequences(tmp_path, db_path, settings, campaigns):
    import csv
    import io

    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"database: {db_path}\ncampaigns_dir: {tmp_path / 'none'}\n")
    s = open_store(db_path)
    seed_click(s, territory="GB", first_name="=HYPERLINK(\"http://evil\",\"x\")", last_name="\x1b]0;owned\x07Mori",
               company="@SUM(1+1)", phone="+1 555 0100")
    process_clicks(s, campaigns, settings, now=NOW)
    s.close()
    [row] = list(csv.DictReader(io.StringIO(run_cli(str(cfg), "tasks", "--csv", "basic").stdout)))
    assert row["First Name"] == "'=HYPERLINK(\"http://evil\",\"x\")"
    assert (row["Company"], row["Phone"]) == ("'@SUM(1+1)", "'+1 555 0100")
    r = run_cli(str(cfg), "tasks")
    assert r.exit_code == 0 and "\x1b" not in r.output and "\x07" not in r.output and "]0;ownedM" in r.output
