"""Validation: the shipped campaigns pass; every broken-template case is reported exactly."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nurture.errors import CampaignError
from nurture.validate import check, validate

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "corpus" / "templates"

#: Every case of the corpus: campaign file → the exact messages, in order.
EXPECTED: dict[str, list[str]] = {
    "bad-note": [
        "campaigns/bad-note.yaml:15:11: follow_up[1].note: 'contact.budget_size' is undefined "
        "(sample ana@shop.example)",
        "campaigns/bad-note.yaml:17:11: follow_up[2].note: Expected an expression, got 'end of statement block'"],
    "extends-missing": [
        "campaigns/extends-missing.yaml:8:15: steps[0].template: templates/extends_missing.html:1: "
        "template not found: templates/no_such_layout.html"],
    "include-missing": [
        "campaigns/include-missing.yaml:8:15: steps[0].template: templates/include_missing.html:3: "
        "template not found: templates/partials/signature.html"],
    "layout-undefined": [
        "campaigns/layout-undefined.yaml:8:15: steps[0].template: templates/layout_undefined.html:4: "
        "'footer_note' is undefined (sample ana@shop.example)"],
    "missing-link": [
        'campaigns/missing-link.yaml:11:23: steps[1].unless.clicked: no link named "pricing-page" in an '
        'earlier step (links: guide, pricing); name a link with data-link="pricing-page" in its template',
        'campaigns/missing-link.yaml:19:21: follow_up[1].when.clicked: no link named "webinar" in any step '
        '(links: guide, pricing); name a link with data-link="webinar" in its template',
        'campaigns/missing-link.yaml:23:21: follow_up[3].when.clicked: no link named "demo" in step "first" '
        '(links: guide, pricing); name a link with data-link="demo" in its template',
        'campaigns/missing-link.yaml:29:23: scoring.rules[0].when.clicked: no link named "case-study" in any '
        'step (links: guide, pricing); name a link with data-link="case-study" in its template'],
    "missing-template": [
        "campaigns/missing-template.yaml:8:15: steps[0].template: template not found: templates/nope/missing.html"],
    "no-unsubscribe": [
        "campaigns/no-unsubscribe.yaml:8:15: steps[0].template: templates/no_unsubscribe.html has no "
        'unsubscribe link: add <a href="{{ unsubscribe_url }}">Unsubscribe</a> (or extend base.html, '
        "whose footer has one)"],
    "per-sample": [
        "campaigns/per-sample.yaml:8:15: steps[0].template: templates/per_sample.html:4: "
        "'similar_company' is undefined (sample bo@shop.example)"],
    "sandbox": [
        "campaigns/sandbox.yaml:8:15: steps[0].template: templates/sandbox.html:3: "
        "access to attribute '__class__' is not allowed (templates run in a sandbox)"],
    "subject-and-body": [
        "campaigns/subject-and-body.yaml:7:14: steps[0].subject: 'greeting' is undefined (sample ana@shop.example)",
        "campaigns/subject-and-body.yaml:8:15: steps[0].template: templates/undefined_variable.html:4: "
        "'contact.compnay' is undefined (sample ana@shop.example)"],
    "subject-syntax": [
        "campaigns/subject-syntax.yaml:7:14: steps[0].subject: unexpected end of template, "
        "expected 'end of print statement'."],
    "subject-undefined": [
        "campaigns/subject-undefined.yaml:7:14: steps[0].subject: 'contact.frist_name' is undefined "
        "(sample ana@shop.example)"],
    "syntax-error": [
        "campaigns/syntax-error.yaml:8:15: steps[0].template: templates/syntax_error.html:6: "
        "Encountered unknown tag 'endblock'. You probably made a nesting mistake. Jinja is expecting "
        "this tag, but currently looking for 'elif' or 'else' or 'endif'. The innermost block that "
        "needs to be closed is 'if'."],
    "text-template": [
        "campaigns/text-template.yaml:9:20: steps[0].text_template: templates/bad_text.txt:4: "
        "'contact.phone_number' is undefined (sample ana@shop.example)"],
    "unclosed-tag": [
        "campaigns/unclosed-tag.yaml:8:15: steps[0].template: templates/unclosed_tag.html:3: unexpected '}'"],
    "undefined-variable": [
        "campaigns/undefined-variable.yaml:8:15: steps[0].template: templates/undefined_variable.html:4: "
        "'contact.compnay' is undefined (sample ana@shop.example)"],
}


@pytest.fixture
def corpus_settings(make_settings, monkeypatch):
    monkeypatch.chdir(CORPUS)
    return make_settings(campaigns_dir=str(CORPUS / "campaigns"), templates_dir=str(CORPUS / "templates"))


def test_corpus_is_complete() -> None:
    assert sorted(p.stem for p in (CORPUS / "campaigns").glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_corpus_case(case: str, corpus_settings) -> None:
    errors = validate([CORPUS / "campaigns" / f"{case}.yaml"], settings=corpus_settings)
    assert [str(e) for e in errors] == EXPECTED[case]
    assert all(isinstance(e, CampaignError) and e.file == f"campaigns/{case}.yaml" for e in errors)


def test_whole_corpus_in_one_run_in_file_order(corpus_settings) -> None:
    report = check(None, settings=corpus_settings)
    assert [str(e) for e in report.errors] == [m for case in sorted(EXPECTED) for m in EXPECTED[case]]
    assert not report.ok


def test_shipped_campaigns_are_ok(make_settings, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    report = check(None, settings=make_settings())
    assert report.errors == ()
    assert {"ec-payments", "industry-news"} <= set(report.link_names)
    assert report.campaigns == len(report.link_names) >= 2
    assert report.link_names["ec-payments"]["service-page"] >= {"pricing", "service-page"}
    assert report.link_names["ec-payments"]["case-study"] >= {"case-study", "pricing"}
    assert report.link_names["ec-payments"]["webinar"] == {"webinar-register"}
    assert report.summary().startswith(f"ok: {report.campaigns} campaigns, {report.steps} steps, ")
    assert report.summary().endswith(f"{report.samples} sample contacts")


def test_campaign_and_template_problems_together(tmp_path, make_settings, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "campaigns").mkdir()
    shutil.copytree(CORPUS / "templates", tmp_path / "templates")
    (tmp_path / "campaigns" / "a.yaml").write_text(
        "id: a\nname: A\ntimezone: Mars/Olympus\nsteps:\n  - id: s\n    subject: Hi\n    template: good.html\n")
    (tmp_path / "campaigns" / "b.yaml").write_text(
        "id: b\nname: B\ntimezone: UTC\nsteps:\n  - id: s\n    subject: Hi\n    template: nope.html\n")
    (tmp_path / "campaigns" / "c.yaml").write_text("id: c\nname: [unclosed\n")
    s = make_settings(campaigns_dir=str(tmp_path / "campaigns"), templates_dir=str(tmp_path / "templates"))
    messages = [str(e) for e in validate(None, settings=s)]
    assert len(messages) == 3
    assert messages[0].startswith("campaigns/a.yaml:3:11: timezone: ")
    assert messages[1] == "campaigns/b.yaml:7:15: steps[0].template: template not found: templates/nope.html"
    assert messages[2].startswith("campaigns/c.yaml:")


def test_campaign_without_samples_uses_a_fallback_contact(tmp_path, make_settings, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copytree(CORPUS / "templates", tmp_path / "templates")
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "d.yaml").write_text(
        "id: d\nname: D\ntimezone: UTC\nsteps:\n  - id: s\n    subject: Hi {{ contact.first_name }}\n"
        "    template: undefined_variable.html\n")
    s = make_settings(campaigns_dir=str(tmp_path / "campaigns"), templates_dir=str(tmp_path / "templates"))
    report = check([tmp_path / "campaigns"], settings=s)
    assert [str(e) for e in report.errors] == [
        "campaigns/d.yaml:7:15: steps[0].template: templates/undefined_variable.html:4: 'contact.compnay' is undefined"]


def test_missing_paths(tmp_path, make_settings, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = make_settings(campaigns_dir=str(tmp_path / "nowhere"))
    assert [str(e) for e in validate(None, settings=s)] == ["no campaigns folder at nowhere"]
    assert [str(e) for e in validate([tmp_path / "gone.yaml"], settings=s)] == ["gone.yaml: file not found"]
    (tmp_path / "empty").mkdir()
    assert [str(e) for e in validate([tmp_path / "empty"], settings=s)] == ["no campaign files (*.yaml) in empty"]


def test_reply_rules_and_the_pause_validate_and_their_notes_see_the_reply(tmp_path, make_settings, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copytree(CORPUS / "templates", tmp_path / "templates")
    (tmp_path / "campaigns").mkdir()
    head = "id: r\nname: R\ntimezone: UTC\nsteps:\n  - id: s\n    subject: Hi\n    template: good.html\n"
    (tmp_path / "campaigns" / "r.yaml").write_text(
        head + "follow_up:\n  - when: {replied: true, step: s}\n    note: 'Replied: {{ reply.text }}'\n"
        "scoring:\n  rules:\n    - when: replied\n      points: 40\nexit: [{replied: company}]\n"
        "out_of_office: {pause: 5d}\n")
    s = make_settings(campaigns_dir=str(tmp_path / "campaigns"), templates_dir=str(tmp_path / "templates"))
    assert check(None, settings=s).errors == ()
    (tmp_path / "campaigns" / "r.yaml").write_text(
        head + "  - id: t\n    wait: 1d\n    subject: Hi\n    template: good.html\n    unless: {replied: true}\n"
        "follow_up:\n  - when: {replied: yes please}\n    note: '{{ reply.txet }}'\n")
    messages = [str(e) for e in check(None, settings=s).errors]
    assert any("steps[1].unless: a step cannot wait for a reply" in m for m in messages), messages
    assert any("follow_up[0].when.replied: must be true" in m for m in messages), messages


def test_notes_get_defaults_and_a_sample_hiding_a_missing_default_warns(tmp_path, make_settings, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copytree(CORPUS / "templates", tmp_path / "templates")
    (tmp_path / "campaigns").mkdir()
    base = ("id: n\nname: N\ntimezone: UTC\nsteps:\n  - id: s\n    subject: Hi\n    template: good.html\n"
            "follow_up:\n  - when: {clicked: any}\n    note: \"{{ contact.headcount }} staff, {{ plan }} plan\"\n"
            "samples:\n  - {email: a@x.example, headcount: 40, plan: pro}\n")
    (tmp_path / "campaigns" / "n.yaml").write_text(base)
    s = make_settings(campaigns_dir=str(tmp_path / "campaigns"), templates_dir=str(tmp_path / "templates"))
    report = check(None, settings=s)
    assert report.errors == ()
    [w] = report.warnings
    assert "follow_up[0].note" in str(w) and "defaults:" in str(w) and "headcount" in str(w)
    (tmp_path / "campaigns" / "n.yaml").write_text(base + "defaults: {headcount: a few, plan: basic}\n")
    report = check(None, settings=s)
    assert report.errors == () and report.warnings == ()


def test_sending_hygiene_warnings(tmp_path, make_settings) -> None:
    from nurture.campaigns import parse_campaign
    from nurture.validate import hygiene_warnings

    key = tmp_path / "k.pem"
    key.write_text("PEM")
    yaml = ('id: {id}\nname: C\ntimezone: UTC\nsender: "{sender}"\nsteps:\n'
            '  - {{id: a, wait: 0d, subject: Hi, template: x.html}}\n')
    campaigns = [parse_campaign(yaml.format(id="c", sender="Shop News <news@other.example>"), file="campaigns/c.yaml"),
                 parse_campaign(yaml.format(id="d", sender="Acme <hello@mail.acme.example>"), file="campaigns/d.yaml")]
    good = make_settings(dkim={"selector": "s", "domain": "acme.example", "private_key_file": str(key)},
                         tracking={"base_url": "https://t.acme.example"})
    assert hygiene_warnings(good, campaigns[1:]) == []  # a subdomain is aligned (relaxed)
    [w] = hygiene_warnings(good, campaigns)
    assert w.startswith("campaigns/c.yaml:") and "From domain other.example is not aligned with dkim.domain" in w
    bad = make_settings(tracking={"base_url": "http://192.0.2.7:8080"}, sender={"postal_address": ""})
    text = "\n".join(hygiene_warnings(bad, []))
    assert "dkim: no DKIM key configured" in text
    assert "tracking.base_url: http://192.0.2.7:8080 is not https" in text
    assert "is an IP address" in text and "sender.postal_address: missing" in text


def test_validate_strict_fails_on_warnings(tmp_path) -> None:
    from click.testing import CliRunner

    from nurture.cli import main

    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"campaigns_dir: {ROOT / 'campaigns'}\ntemplates_dir: {ROOT / 'templates'}\n"
                   "tracking: {base_url: 'http://127.0.0.1:8080', secret_env: S}\n")
    runner = CliRunner()
    r = runner.invoke(main, ["--config", str(cfg), "validate"], env={"S": "x"})
    assert r.exit_code == 0 and "warning: config: dkim: no DKIM key configured" in r.output
    r = runner.invoke(main, ["--config", str(cfg), "validate", "--strict"], env={"S": "x"})
    assert r.exit_code == 1 and "(--strict)" in r.output
    r = runner.invoke(main, ["--config", str(cfg), "send", "--once", "--strict"], env={"S": "x"})
    assert r.exit_code != 0 and "--strict: not sending" in r.output


def test_the_japanese_campaign_is_ok_with_the_english_ones_links(make_settings, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    report = check([ROOT / "campaigns" / "ec-payments-ja.yaml", ROOT / "campaigns" / "ec-payments.yaml"],
                   settings=make_settings())
    assert report.errors == () and report.warnings == ()
    assert report.link_names["ec-payments-ja"] == report.link_names["ec-payments"]


def test_preheader_and_footer_problems_point_at_their_keys(tmp_path, make_settings, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "campaigns").mkdir()
    shutil.copytree(CORPUS / "templates", tmp_path / "templates")
    shutil.copy(ROOT / "templates" / "base.html", tmp_path / "templates" / "base.html")
    (tmp_path / "templates" / "mail.html").write_text(
        '{% extends "base.html" %}{% block content %}<a href="https://x.example/p" data-link="p">p</a>{% endblock %}')
    (tmp_path / "campaigns" / "a.yaml").write_text(
        "id: a\nname: A\ntimezone: UTC\nlocale: ja\nfooter:\n  why: \"{{ contact.budget }}\"\nsteps:\n"
        "  - id: s\n    subject: Hi\n    preheader: \"{{ contact.frist_name }}\"\n    template: mail.html\n"
        "  - id: t\n    wait: 1d\n    subject: Again\n    template: mail.html\n"
        "follow_up:\n  - when: {clicked: p}\n")
    s = make_settings(campaigns_dir=str(tmp_path / "campaigns"), templates_dir=str(tmp_path / "templates"))
    report = check(None, settings=s)
    assert [str(e) for e in report.errors] == [
        "campaigns/a.yaml:10:16: steps[0].preheader: 'contact.frist_name' is undefined",
        "campaigns/a.yaml:6:8: footer.why: 'contact.budget' is undefined",  # once, not once per step
    ]
    assert report.link_names["a"] == {"s": {"p"}, "t": {"p"}}  # the bodies were still checked
