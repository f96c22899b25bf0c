"""nurture/logs.py: ``--log-format json`` writes one JSON object a line, also from a real ``nurture serve``."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from support import ChildOutput

from nurture.logs import JsonFormatter, configure

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def restore_root_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def test_json_lines_with_extras_and_exceptions(restore_root_logging):
    out = io.StringIO()
    configure("json", stream=out)
    log = logging.getLogger("nurture.sender")
    log.info("sent %d mails\nin one batch", 3, extra={"send_id": 42, "campaign": "ec-payments"})
    try:
        raise ValueError("disk full")
    except ValueError:
        log.exception("could not record %d clicks", 2)
    logging.getLogger("nurture.x").debug("not shown at INFO")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # the newline in the message stays inside its JSON string
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "info" and first["logger"] == "nurture.sender"
    assert first["message"] == "sent 3 mails\nin one batch"
    assert first["send_id"] == 42 and first["campaign"] == "ec-payments"
    assert first["time"].endswith("+00:00") and "T" in first["time"]
    assert second["level"] == "error" and "ValueError: disk full" in second["exception"]


def test_text_leaves_logging_alone_and_unknown_formats_are_refused(restore_root_logging):
    before = list(logging.getLogger().handlers)
    assert configure("text") is None and logging.getLogger().handlers == before
    with pytest.raises(ValueError, match="unknown log format"):
        configure("xml")


def test_values_json_cannot_hold_are_written_as_text():
    record = logging.LogRecord("nurture", logging.WARNING, __file__, 1, "at %s", (Path("/x"),), None)
    record.path = Path("/srv/nurture.db")
    assert json.loads(JsonFormatter().format(record))["path"] == "/srv/nurture.db"


def test_serve_logs_json_lines(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"database: {tmp_path / 'nurture.db'}\ncampaigns_dir: {ROOT / 'campaigns'}\n"
                   f"templates_dir: {ROOT / 'templates'}\n"
                   "tracking: {listen: '127.0.0.1:0'}\nreps_app: {listen: '127.0.0.1:0'}\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NURTURE_SECRET": "a-long-random-test-secret"}
    proc = subprocess.Popen([sys.executable, "-m", "nurture", "--config", str(cfg), "--log-format", "json",
                             "serve", "--access-log"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=tmp_path)
    try:
        out = ChildOutput(proc)
        [m] = out.ready(r"worker 0: tracker listening on (http://\S+)")
        with urllib.request.urlopen(m.group(1) + "/healthz", timeout=10) as r:
            assert r.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("config: ")]
    records = [json.loads(line) for line in lines]  # every log line is one JSON object
    assert any(r["logger"] == "aiohttp.access" and "/healthz" in r["message"] for r in records), err
