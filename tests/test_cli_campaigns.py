"""``nurture validate``, ``preview`` and ``schema`` through click's runner."""

from __future__ import annotations

import email
import email.policy
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from nurture.cli import main
from nurture.signing import Signer
from nurture.store import open_store
from nurture.store.contacts import ContactRow

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "corpus" / "templates"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"database: {tmp_path / 'nurture.db'}\n"
        f"campaigns_dir: {ROOT / 'campaigns'}\n"
        f"templates_dir: {ROOT / 'templates'}\n"
        "tracking: {base_url: 'https://t.acme.example', secret_env: TEST_SECRET}\n"
        "sender: {from: 'Acme Payments <hello@acme.example>', postal_address: '1-2-3 Marunouchi, Tokyo'}\n")
    return path


def run(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, list(args), env={"TEST_SECRET": "s3cret", **(env or {})},
                              catch_exceptions=False)


def test_validate_ok_on_shipped_campaigns(config, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    result = run("--config", str(config), "validate")
    assert result.exit_code == 0, result.output
    assert re.match(r"ok: \d+ campaigns, \d+ steps, \d+ links, \d+ sample contacts\n$", result.stdout)


def test_validate_reports_every_problem_and_exits_1(config, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(CORPUS)
    cfg = tmp_path / "corpus.yaml"
    cfg.write_text(f"campaigns_dir: {CORPUS / 'campaigns'}\ntemplates_dir: {CORPUS / 'templates'}\n")
    result = run("--config", str(cfg), "validate")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"config: {cfg}\n")  # says which config, as it is not ./config.yaml
    lines = result.stderr.strip().splitlines()[1:]
    assert "campaigns/undefined-variable.yaml:8:15: steps[0].template: templates/undefined_variable.html:4: " \
           "'contact.compnay' is undefined (sample ana@shop.example)" in lines
    assert "campaigns/missing-template.yaml:8:15: steps[0].template: template not found: " \
           "templates/nope/missing.html" in lines
    assert lines[-1] == f"{len(lines) - 1} problems found"
    assert "Traceback" not in result.output
    one = run("--config", str(cfg), "validate", "campaigns/subject-undefined.yaml")
    assert one.exit_code == 1
    assert one.stderr.splitlines()[1] == ("campaigns/subject-undefined.yaml:7:14: steps[0].subject: "
                                          "'contact.frist_name' is undefined (sample ana@shop.example)")


def test_validate_json_for_ci(config, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(ROOT)
    ok = run("--config", str(config), "validate", "--json")
    assert ok.exit_code == 0, ok.output
    data = json.loads(ok.stdout)
    assert data["ok"] is True and data["problems"] == [] and data["campaigns"] >= 1 and data["steps"] >= 3
    monkeypatch.chdir(CORPUS)
    cfg = tmp_path / "corpus.yaml"
    cfg.write_text(f"campaigns_dir: {CORPUS / 'campaigns'}\ntemplates_dir: {CORPUS / 'templates'}\n")
    bad = run("--config", str(cfg), "validate", "--json", "campaigns/subject-undefined.yaml")
    assert bad.exit_code == 1
    data = json.loads(bad.stdout)  # stdout is the JSON alone (the config line goes to stderr)
    assert data["ok"] is False
    [problem] = data["problems"]
    assert problem == {"file": "campaigns/subject-undefined.yaml", "line": 7, "column": 14,
                       "field": "steps[0].subject",
                       "message": "'contact.frist_name' is undefined (sample ana@shop.example)",
                       "text": "campaigns/subject-undefined.yaml:7:14: steps[0].subject: "
                               "'contact.frist_name' is undefined (sample ana@shop.example)"}


def test_validate_bad_config_is_a_message(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "config.yaml"
    cfg.write_text("smtp: {tls: maybe}\n")
    result = run("--config", str(cfg), "validate")
    assert result.exit_code == 1
    assert "smtp.tls" in result.stderr and "Traceback" not in result.output


def test_preview_writes_a_real_message(config, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    out = tmp_path / "out"
    result = run("--config", str(config), "preview", "ec-payments", "service-page", "--contact", "2",
                 "--out", str(out))
    assert result.exit_code == 0, result.output
    eml = out / "ec-payments-service-page.eml"
    html = out / "ec-payments-service-page.html"
    assert eml.exists() and html.exists()
    m = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert m.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in m.iter_parts()] == ["text/plain", "text/html"]
    assert m["Subject"] == "Maple & Thread: one checkout, every payment method"
    assert m["To"].addresses[0].addr_spec == "oliver.jones@maple-thread.example"
    assert "https://t.acme.example/c/" in html.read_text()
    assert "Maple & Thread: one checkout, every payment method" in result.stdout
    assert "inbox preview: Cards, wallets, PayPay and konbini in one form" in " ".join(result.stdout.split())
    assert "send id 0" in result.stdout and "link ids in memory" in result.stdout
    assert "List-Unsubscribe-Post" in result.stdout and "pricing" in result.stdout
    # send id 0: the unsubscribe token says so
    token = m["List-Unsubscribe"].strip("<>").rsplit("/", 1)[1]
    assert Signer({"k1": b"s3cret"}, current="k1").verify("unsubscribe", token) == (0,)


def test_preview_for_a_database_contact(config, tmp_path, monkeypatch, now) -> None:
    monkeypatch.chdir(ROOT)
    store = open_store(str(tmp_path / "nurture.db"))
    store.upsert_contacts([ContactRow(email="kenji@ramen.example",
                                      fields={"first_name": "Kenji", "company": "Ramen Lab"},
                                      attributes={"similar_company": "Noodle Bar"})], now=now)
    result = run("--config", str(config), "preview", "ec-payments", "case-study",
                 "--contact", "kenji@ramen.example", "--out", str(tmp_path / "o"))
    assert result.exit_code == 0, result.output
    m = email.message_from_bytes((tmp_path / "o" / "ec-payments-case-study.eml").read_bytes(),
                                 policy=email.policy.default)
    assert m["Subject"] == "How Noodle Bar cut checkout drop-off by 23%"


@pytest.mark.parametrize("args, message", [
    (("preview", "ec-payments", "nope"), 'no step "nope" in campaign "ec-payments"'),
    (("preview", "ec-paymnts", "webinar"), 'no campaign "ec-paymnts"'),
    (("preview", "ec-payments", "webinar", "--contact", "who@x.example"), 'no sample contact "who@x.example"'),
])
def test_preview_errors_are_messages(config, monkeypatch, args, message) -> None:
    monkeypatch.chdir(ROOT)
    result = run("--config", str(config), *args)
    assert result.exit_code == 1
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.output


def test_schema_prints_json_schema(config) -> None:
    result = run("--config", str(config), "schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["type"] == "object" and "steps" in schema["properties"]
