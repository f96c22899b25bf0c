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
