"""``nurture inbound [FILE]`` as an MTA pipe runs it, and ``nurture inbound list``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "corpus" / "inbound"


def nurture(tmp_path: Path, *args: str, stdin: bytes = b"",
            db: str | None = None) -> subprocess.CompletedProcess[bytes]:
    cfg = tmp_path / "config.yaml"
    if not cfg.exists():
        cfg.write_text(f"database: {db or tmp_path / 'n.db'}\ncampaigns_dir: {ROOT / 'campaigns'}\n"
                       f"templates_dir: {ROOT / 'templates'}\ninbound:\n  return_path: bounces@bounce.test\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-c", "from nurture.cli import main; main()", "--config", str(cfg), *args],
                          input=stdin, capture_output=True, env=env, timeout=60)


def test_garbage_on_stdin_exits_0_and_is_recorded(tmp_path: Path):
    r = nurture(tmp_path, "inbound", stdin=b"\x00\xffnot mail")
    assert r.returncode == 0, r.stderr
    assert b"unknown" in r.stdout and b"no header fields" in r.stdout
    listed = json.loads(nurture(tmp_path, "inbound", "list", "--json").stdout)
    assert [x["kind"] for x in listed] == ["unknown"]


def test_a_file_with_json_then_the_same_again(tmp_path: Path):
    f = str(CORPUS / "postfix-550-user-unknown.eml")
    first = json.loads(nurture(tmp_path, "inbound", f, "--json").stdout)
    assert (first["kind"], first["status"], first["duplicate"]) == ("hard_bounce", "5.1.1", False)
    assert first["action"].startswith("nothing")  # no such send in this empty database
    again = nurture(tmp_path, "inbound", "receive", f, "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["duplicate"] is True
    table = nurture(tmp_path, "inbound", "list", "--unmatched").stdout.decode()
    assert "hard_bounce" in table and "gone@shop.test" in table


def test_an_unusable_database_asks_the_mta_to_retry(tmp_path: Path):
    r = nurture(tmp_path, "inbound", stdin=b"Subject: x\r\n\r\nhi", db=str(tmp_path / "no" / "such" / "dir" / "n.db"))
    assert r.returncode == 75, (r.returncode, r.stderr)
    assert b"retries later" in r.stderr


def test_a_missing_file_is_a_usage_error(tmp_path: Path):
    assert nurture(tmp_path, "inbound", str(tmp_path / "nope.eml")).returncode == 1


def test_the_list_shows_whether_each_reply_was_forwarded_to_whom_and_how_it_went(tmp_path: Path):
    from datetime import UTC, datetime, timedelta

    from nurture.store import open_store

    db = tmp_path / "n.db"
    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    store = open_store(str(db))
    try:
        ids = {}
        for name in ("sent", "failed", "retry", "queued", "unforwarded"):
            with store.transaction():
                ids[name] = row = store.claim_inbound(dedupe_key=f"mid:<{name}@x>", source="smtp", kind="reply",
                                                      now=now, size=10, subject="Re: hi", sender=f"{name}@shop.test")
                assert row is not None
                store.finish_inbound(row, kind="reply", status=None, recipient=None, sent=None, matched_by=None,
                                     action="task raised", reasons=["a person's reply"])
                if name != "unforwarded":
                    store.queue_forward(inbound_id=row, recipient="aoki@acme.test", mail_from="bounces@bounce.test",
                                        message_id=f"<fwd.{row}@acme.test>", data=b"x", now=now,
                                        rep_id="aoki" if name != "queued" else None)
        claimed = {f.inbound_id: f.id for f in store.claim_forwards(now=now, lease=timedelta(minutes=5))}
        with store.transaction():
            store.finish_forward(claimed[ids["sent"]], status="sent", now=now + timedelta(seconds=2))
            store.finish_forward(claimed[ids["failed"]], status="failed", now=now, error="550 5.1.1 no such rep")
            store.finish_forward(claimed[ids["retry"]], status="retry", now=now, error="451 4.3.0 try later",
                                 next_at=now + timedelta(minutes=1))
        store.conn.execute("UPDATE forwards SET status = 'queued', attempts = 0 WHERE inbound_id = ?",
                           (ids["queued"],))
    finally:
        store.close()
    listed = {x["sender"]: x["forward"] for x in json.loads(nurture(tmp_path, "inbound", "list", "--json",
                                                                    db=str(db)).stdout)}
    assert listed["unforwarded@shop.test"] is None
    assert (listed["sent@shop.test"]["to"], listed["sent@shop.test"]["rep"], listed["sent@shop.test"]["status"]) == (
        "aoki@acme.test", "aoki", "sent")
    assert listed["sent@shop.test"]["sent_at"].startswith("2026-12-01 09:00:02")
    assert (listed["failed@shop.test"]["status"], listed["failed@shop.test"]["error"]) == (
        "failed", "550 5.1.1 no such rep")
    assert (listed["retry@shop.test"]["status"], listed["retry@shop.test"]["attempts"]) == ("retry", 1)
    assert (listed["queued@shop.test"]["status"], listed["queued@shop.test"]["rep"]) == ("queued", None)
    table = nurture(tmp_path, "inbound", "list", db=str(db)).stdout.decode()
    lines = {who: next(line for line in table.splitlines() if f"{who}@shop.test" in line)
             for who in ("sent", "failed", "retry", "queued", "unforwarded")}
    assert "forwarded" in table
    assert "aoki@acme.test (aoki): sent 2026-12-01 09:00" in lines["sent"]
    assert "failed (550 5.1.1 no such rep)" in lines["failed"]
    assert "retry after 1 attempt(s) (451 4.3.0 try later)" in lines["retry"]
    assert "aoki@acme.test: queued" in lines["queued"]
    assert "aoki@acme.test" not in lines["unforwarded"] and "–" in lines["unforwarded"]
