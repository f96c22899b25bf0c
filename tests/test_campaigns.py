"""Campaign YAML: the shipped campaigns, the corpus of broken files, and the JSON Schema."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from pathlib import Path

import jsonschema
import pytest
import yaml

from nurture import campaign_schema as cs
from nurture.campaigns import (
    campaign_error,
    campaign_json_schema,
    find_campaign,
    find_sample,
    load_campaign,
    load_campaigns,
    parse_campaign,
    sample_contact,
)
from nurture.errors import CampaignError, CampaignErrors, NotFound
from nurture.models import Condition, Exit

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "corpus" / "campaigns"
C = "tests/corpus/campaigns/"

#: Every broken campaign → the exact ``file:line:col: field:`` prefix of each error, in order,
#: and a piece of the message a marketer reads.
EXPECTED: dict[str, list[tuple[str, str]]] = {
    "yaml-syntax.yaml": [("yaml-syntax.yaml:8:1:", "YAML syntax error: found unexpected end of stream "
                          "(while scanning a quoted scalar); a quote opened on this line or above is never closed")],
    "colon-in-value.yaml": [("colon-in-value.yaml:6:21:",
                             "a colon inside a value needs quotes around the whole value")],
    "tab-indent.yaml": [("tab-indent.yaml:6:1:", "indent with spaces, not tabs")],
    "unquoted-jinja.yaml": [("unquoted-jinja.yaml:6:15:", "a value starting with {{ needs quotes")],
    "not-a-mapping.yaml": [("not-a-mapping.yaml:1:1:",
                            "must be a mapping of keys (id:, name:, steps: ...), not a list")],
    "wrong-type.yaml": [("wrong-type.yaml:4:8: steps:", "must be a list of steps"), ],
    "unknown-key.yaml": [("unknown-key.yaml:6:13: steps[0].subjet:", 'unknown key "subjet" (did you mean "subject"?)')],
    "missing-key.yaml": [("missing-key.yaml:5:5: steps[0].template:", "is required")],
    "bad-duration.yaml": [("bad-duration.yaml:9:11: steps[1].wait:",
                           '"3 dayz" is not a duration (try 3d, 36h, 1d 12h)')],
    "bad-timezone.yaml": [("bad-timezone.yaml:3:11: timezone:", '"Asia/Tokio" is not a time zone')],
    "bad-day.yaml": [("bad-day.yaml:5:20: send_window.days[2]:", '"funday" is not a weekday')],
    "bad-hours.yaml": [("bad-hours.yaml:4:37: send_window.hours:", '"9-18" is not a range of hours')],
    "bad-rate.yaml": [("bad-rate.yaml:4:7: rate:", '"fast" is not a rate (try 20/s, 300/m or 1000/h)')],
    "duplicate-step.yaml": [("duplicate-step.yaml:8:9: steps[1].id:", 'duplicate step id "hello" (also steps[0])')],
    "bad-priority.yaml": [("bad-priority.yaml:11:15: follow_up[0].priority:",
                           '"hgh" is not a priority (did you mean "high"?')],
    "bad-task.yaml": [("bad-task.yaml:10:11: follow_up[0].task:",
                       '"meeting" is not a task (use call_now, call, email)')],
    "unknown-step.yaml": [("unknown-step.yaml:9:36: follow_up[0].when.step:",
                           '"case-studies" is not a step of this campaign (did you mean "case-study"?')],
    "bad-exit.yaml": [("bad-exit.yaml:8:22: exit[1]:", '"churned" is not an exit')],
    "empty-steps.yaml": [("empty-steps.yaml:4:1: steps:", "a campaign needs at least one step")],
    "id-mismatch.yaml": [("id-mismatch.yaml:1:5: id:", '"ec-payments" does not match the file name')],
    "several.yaml": [
        ("several.yaml:3:11: timezone:", '"Mars/Olympus" is not a time zone'),
        ("several.yaml:10:11: steps[1].wait:", '"1 week" is not a duration'),
        ("several.yaml:12:14: steps[1].templat:", 'did you mean "template"?'),
        ("several.yaml:17:10: follow_up[0].due:", '"soon" is not a duration'),
        ("several.yaml:18:32: exit[1].outcome:", '"won" is not an outcome'),
    ],
    "empty-file.yaml": [("empty-file.yaml:", "the file is empty")],
    "later-step-condition.yaml": [("later-step-condition.yaml:10:38: steps[1].unless.step:",
                                   '"webinar" is not an earlier step of this campaign')],
    "first-step-condition.yaml": [("first-step-condition.yaml:6:14: steps[0].only_if:",
                                   "the first step cannot have a condition")],
    "wait-missing.yaml": [("wait-missing.yaml:8:5: steps[1].wait:", "is required from the second step on")],
    "bad-sample.yaml": [
        ("bad-sample.yaml:9:5: samples[0].email:", "is required"),
        ("bad-sample.yaml:12:12: samples[1].phone:", "must be text, not a whole number (put it in quotes)"),
    ],
    "duplicate-key.yaml": [("duplicate-key.yaml:4:1:", 'YAML syntax error: duplicate key "timezone"')],
    "bad-step-id.yaml": [("bad-step-id.yaml:5:9: steps[0].id:", '"Case Study" is not a valid step id')],
    "bad-scoring.yaml": [
        ("bad-scoring.yaml:11:15: scoring.rules[0].points:", "must be a number, not text"),
        ("bad-scoring.yaml:12:7: scoring.rules[1].points:", "is required"),
        ("bad-scoring.yaml:13:14: scoring.half_life:", "must be longer than zero"),
        ("bad-scoring.yaml:14:18: scoring.hot_threshold:", "must be above zero"),
    ],
    "missing-top.yaml": [("missing-top.yaml:1:1: id:", "is required"),
                         ("missing-top.yaml:1:1: timezone:", "is required")],
    "bad-condition.yaml": [
        ("bad-condition.yaml:10:13: steps[1].unless:", 'must be "clicked" or a mapping such as {clicked: pricing}'),
        ("bad-condition.yaml:15:23: steps[2].only_if.clicks:", 'unknown key "clicks" (did you mean "clicked"?)'),
    ],
}

#: Corpus files the JSON Schema alone also rejects (the rest need the loader: time zones,
#: file names, step references, duplicates, YAML syntax).
SCHEMA_REJECTS = {
    "not-a-mapping.yaml", "wrong-type.yaml", "unknown-key.yaml", "missing-key.yaml", "bad-duration.yaml",
    "bad-day.yaml", "bad-hours.yaml", "bad-rate.yaml", "bad-priority.yaml", "bad-task.yaml", "bad-exit.yaml",
    "empty-steps.yaml", "several.yaml", "bad-sample.yaml", "bad-step-id.yaml", "bad-scoring.yaml",
    "missing-top.yaml", "bad-condition.yaml",
}


def errors_of(path: Path) -> list[CampaignError]:
    with pytest.raises(CampaignErrors) as info:
        load_campaign(path, root=ROOT)
    return info.value.errors  # type: ignore[return-value]


def test_corpus_is_complete():
    assert len(EXPECTED) >= 15
    assert {p.name for p in CORPUS.glob("*.yaml")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_case_reports_every_problem_at_its_place(name: str):
    errors = errors_of(CORPUS / name)
    got = [str(e) for e in errors]
    assert len(got) == len(EXPECTED[name]), got
    for text, (prefix, message) in zip(got, EXPECTED[name], strict=True):
        assert text.startswith(C + prefix), text
        assert message in text, text
    for e in errors:
        assert isinstance(e, CampaignError) and e.file == C + name
        if e.field:
            assert text_has_field(str(e), e.field)


def text_has_field(text: str, field: str) -> bool:
    return re.search(r":\d+:\d+: " + re.escape(field) + ": ", text) is not None


def test_the_issue_example_message(tmp_path: Path):
    folder = tmp_path / "campaigns"
    folder.mkdir()
    text = (ROOT / "campaigns" / "ec-payments.yaml").read_text().replace("wait: 7d", "wait: 3 dayz", 1)
    (folder / "ec-payments.yaml").write_text(text)
    line = next(i for i, s in enumerate(text.splitlines(), 1) if "3 dayz" in s)
    with pytest.raises(CampaignErrors) as info:
        load_campaign(folder / "ec-payments.yaml", root=tmp_path)
    assert [str(e) for e in info.value.errors] == [
        f'campaigns/ec-payments.yaml:{line}:11: steps[1].wait: "3 dayz" is not a duration (try 3d, 36h, 1d 12h)'
    ]


# -- the shipped campaigns ------------------------------------------------------------------

def test_shipped_campaigns_load():
    campaigns = load_campaigns(ROOT / "campaigns", root=ROOT)
    assert [c.id for c in campaigns] == ["ec-payments", "ec-payments-ja", "industry-news"]
    assert [c.path for c in campaigns] == ["campaigns/ec-payments.yaml", "campaigns/ec-payments-ja.yaml",
                                           "campaigns/industry-news.yaml"]


def test_ec_payments_is_the_seed_scenario():
    c = load_campaign(ROOT / "campaigns" / "ec-payments.yaml", root=ROOT)
    assert c.timezone == "Asia/Tokyo"
    assert [(s.id, s.template, s.wait) for s in c.steps] == [
        ("case-study", "ec-payments/case_study.html", timedelta(0)),
        ("service-page", "ec-payments/service.html", timedelta(days=7)),
        ("webinar", "ec-payments/webinar.html", timedelta(days=7)),
    ]
    assert c.steps[1].unless == Condition(clicked="pricing")
    assert c.steps[0].unless is None and c.steps[2].only_if is None
    assert "{{ similar_company }}" in c.steps[0].subject
    assert c.send_window.days == frozenset(range(5))
    assert str(c.send_window.hours) == "09:00-18:00"
    call_now, call = c.follow_up
    assert (call_now.when, call_now.task, call_now.priority, call_now.due) == (
        Condition(clicked="pricing"), "call_now", "high", timedelta(hours=1))
    assert (call.when, call.task, call.priority, call.due) == (Condition(), "call", "normal", timedelta(days=2))
    assert call_now.note and "{{ step.subject }}" in call_now.note
    assert [(r.when.clicked, r.points) for r in c.scoring.rules] == [("pricing", 30.0), ("any", 5.0)]
    assert (c.scoring.half_life, c.scoring.hot_threshold) == (timedelta(days=14), 40.0)
    assert Exit("unsubscribed") in c.exits and Exit("outcome", "qualified") in c.exits
    assert 2 <= len(c.samples) <= 3 and all("similar_company" in s for s in c.samples)
    assert c.defaults["similar_company"]
    raw = (ROOT / "campaigns" / "ec-payments.yaml").read_bytes()
    assert c.content_hash == hashlib.sha256(raw).hexdigest()
    assert c.source == raw.decode()
    # Lines let nurture.validate point at a step or rule.
    lines = raw.decode().splitlines()
    assert "- id: service-page" in lines[c.steps[1].line - 1]
    assert "- when: {clicked: pricing}" in lines[call_now.line - 1]


def test_industry_news_example():
    c = find_campaign(ROOT / "campaigns", "industry-news", root=ROOT)
    assert [s.template for s in c.steps] == ["industry-news/issue_1.html", "industry-news/issue_2.html"]
    assert c.steps[1].wait == timedelta(days=14)
    assert c.follow_up[0].when == Condition(clicked="any")
    assert c.send_window.days == frozenset(range(5))


def test_shipped_campaigns_point_editors_at_the_schema():
    for f in (ROOT / "campaigns").glob("*.yaml"):
        first = f.read_text().splitlines()[0]
        assert first == "# yaml-language-server: $schema=../nurture/schema/campaign.schema.json"
        assert (f.parent / first.split("=", 1)[1]).resolve().is_file()


def test_shipped_campaigns_are_documented():
    doc = (ROOT / "docs" / "campaigns.md").read_text()
    for c in load_campaigns(ROOT / "campaigns"):
        for s in c.steps:
            assert s.template in doc, s.template
    for key in cs.TOP_KEYS + cs.STEP_KEYS + cs.FOLLOW_UP_KEYS + cs.SCORING_KEYS:
        assert f"`{key}`" in doc, key


# -- the JSON Schema agrees with the loader --------------------------------------------------

def validator() -> jsonschema.Draft7Validator:
    schema = campaign_json_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_schema_accepts_the_shipped_campaigns():
    v = validator()
    for f in (ROOT / "campaigns").glob("*.yaml"):
        assert list(v.iter_errors(yaml.safe_load(f.read_text()))) == [], f.name


@pytest.mark.parametrize("name", sorted(SCHEMA_REJECTS))
def test_schema_rejects_corpus_case(name: str):
    data = yaml.safe_load((CORPUS / name).read_text())
    assert list(validator().iter_errors(data)), name


def test_schema_and_loader_know_the_same_keys():
    s = campaign_json_schema()
    d = s["definitions"]
    assert tuple(s["properties"]) == cs.TOP_KEYS
    assert tuple(s["required"]) == cs._REQUIRED["top"]
    assert tuple(s["properties"]["send_window"]["properties"]) == cs.WINDOW_KEYS
    assert tuple(d["step"]["properties"]) == cs.STEP_KEYS
    assert tuple(d["step"]["required"]) == cs._REQUIRED["step"]
    assert tuple(d["follow_up"]["properties"]) == cs.FOLLOW_UP_KEYS
    assert tuple(d["condition"]["oneOf"][1]["properties"]) == cs.CONDITION_KEYS
    assert tuple(s["properties"]["scoring"]["properties"]) == cs.SCORING_KEYS
    assert tuple(s["properties"]["scoring"]["properties"]["rules"]["items"]["properties"]) == cs.SCORE_RULE_KEYS
    assert tuple(d["follow_up"]["properties"]["task"]["enum"]) == cs.TASK_KINDS
    assert tuple(d["follow_up"]["properties"]["priority"]["enum"]) == cs.PRIORITIES
    assert tuple(s["properties"]["exit"]["items"]["oneOf"][0]["enum"]) == cs.EXIT_KINDS
    assert tuple(s["properties"]["exit"]["items"]["oneOf"][1]["properties"]["outcome"]["enum"]) == cs.OUTCOMES
    assert tuple(s["properties"]["samples"]["items"]["properties"]) == cs.CONTACT_FIELDS


VALUES = {
    "duration": ["0", 0, "0d", "7d", "36h", "1d 12h", "90m", "2w", "3 dayz", "7", 7, "1 week", "", "d"],
    "rate": ["20/s", "1000/h", "5 / min", 3, 0.5, "fast", "0/s", "-1/s", 0, True],
    "slug": ["case-study", "a1", "x_y", "Case Study", "-x", "", "ab" * 40],
    "hours": ["09:00-18:00", "9:30 - 17:00", "9-18", "09:00", "25:00-26:00"],
    "days": ["mon-fri", "fri-mon", "mon, wed, fri", "mon-fri,sun", "weekdays", "mon-", ["mon", "sun"], ["funday"], []],
}


@pytest.mark.parametrize("kind", sorted(VALUES))
def test_schema_and_loader_agree_on_values(kind: str):
    """For each value: the loader accepts it exactly when the schema does."""
    v = validator()
    for value in VALUES[kind]:
        doc = minimal()
        if kind == "duration":
            doc["steps"].append({"id": "two", "subject": "S", "template": "t.html", "wait": value})
        elif kind == "rate":
            doc["rate"] = value
        elif kind == "slug":
            doc["steps"][0]["id"] = value
        elif kind == "hours":
            doc["send_window"] = {"hours": value}
        else:
            doc["send_window"] = {"days": value}
        schema_ok = not list(v.iter_errors(doc))
        try:
            parse_campaign(yaml.safe_dump(doc), file="x.yaml", expected_id="x")
            loader_ok = True
        except CampaignErrors:
            loader_ok = False
        # Hours out of range (25:00) pass the schema's shape check; only the loader knows clocks.
        if kind == "hours" and value == "25:00-26:00":
            assert (schema_ok, loader_ok) == (True, False)
            continue
        assert schema_ok == loader_ok, (kind, value, schema_ok, loader_ok)


def minimal() -> dict:
    return {"id": "x", "name": "X", "timezone": "UTC",
            "steps": [{"id": "one", "subject": "S", "template": "t.html"}]}


# -- loading details -------------------------------------------------------------------------

def test_conditions_shorthand_and_step(tmp_path: Path):
    doc = minimal()
    doc["steps"] += [
        {"id": "two", "wait": "3d", "unless": "clicked", "subject": "S", "template": "t.html"},
        {"id": "three", "wait": "1d 12h", "only_if": {"clicked": "pricing", "step": "one"},
         "subject": "S", "template": "t.html", "text_template": "t.txt"},
    ]
    doc["follow_up"] = [{"when": {"clicked": "any", "step": "two"}}]
    doc["send_window"] = {"days": "fri-mon", "hours": "22:00-06:00"}
    c = parse_campaign(yaml.safe_dump(doc, sort_keys=False), file="x.yaml")
    assert c.steps[1].unless == Condition("any", None)
    assert c.steps[2].only_if == Condition("pricing", "one")
    assert c.steps[2].wait == timedelta(hours=36) and c.steps[2].text_template == "t.txt"
    rule = c.follow_up[0]
    assert (rule.when, rule.task, rule.priority, rule.due) == \
        (Condition("any", "two"), "call", "normal", timedelta(days=1))
    assert c.send_window.days == frozenset({4, 5, 6, 0})
    assert c.rate is None and c.exits == () and c.samples == ()


def test_all_files_problems_come_together(tmp_path: Path):
    for name in ("bad-rate.yaml", "bad-task.yaml"):
        (tmp_path / name).write_bytes((CORPUS / name).read_bytes())
    (tmp_path / "fine.yaml").write_text(yaml.safe_dump({**minimal(), "id": "fine"}))
    (tmp_path / "notes.txt").write_text("not a campaign")
    with pytest.raises(CampaignErrors) as info:
        load_campaigns(tmp_path)
    assert [e.field for e in info.value.errors] == ["rate", "follow_up[0].task"]
    assert str(info.value.errors[0]).startswith(str(tmp_path / "bad-rate.yaml") + ":4:7: rate:")
    # A broken neighbour does not stop one campaign from being found.
    assert find_campaign(tmp_path, "fine").id == "fine"


def test_the_same_id_twice_in_a_folder(tmp_path: Path):
    text = yaml.safe_dump({**minimal(), "id": "x"})
    (tmp_path / "x.yaml").write_text(text)
    (tmp_path / "x.yml").write_text(text)
    with pytest.raises(CampaignErrors) as info:
        load_campaigns(tmp_path, root=tmp_path)
    assert [str(e) for e in info.value.errors] == [
        'x.yml:1:5: id: another file already defines campaign "x" (x.yaml)']


def test_find_campaign_names_the_known_ids():
    with pytest.raises(NotFound) as info:
        find_campaign(ROOT / "campaigns", "ec-paymnts", root=ROOT)
    assert str(info.value) == ('no campaign "ec-paymnts" in campaigns (did you mean "ec-payments"? '
                               "known: ec-payments-ja, ec-payments, industry-news)")
    with pytest.raises(NotFound):
        load_campaigns(ROOT / "no-such-folder")


def test_files_that_cannot_be_read(tmp_path: Path):
    (tmp_path / "latin.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(CampaignErrors) as info:
        load_campaign(tmp_path / "latin.yaml", root=tmp_path)
    assert str(info.value) == "latin.yaml:1:10: the file is not UTF-8 text (byte 0xe9; save the file as UTF-8)"
    with pytest.raises(CampaignErrors, match="missing.yaml: file not found"):
        load_campaign(tmp_path / "missing.yaml", root=tmp_path)


def test_windows_line_endings_and_byte_order_mark():
    raw = (ROOT / "campaigns" / "industry-news.yaml").read_bytes()
    windows = b"\xef\xbb\xbf" + raw.replace(b"\n", b"\r\n")
    c = parse_campaign(windows, file="industry-news.yaml", expected_id="industry-news")
    assert c.steps[1].line == load_campaign(ROOT / "campaigns" / "industry-news.yaml").steps[1].line
    assert c.content_hash == hashlib.sha256(windows).hexdigest()


def test_path_is_kept_as_given_without_root(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(ROOT)
    assert load_campaign("campaigns/ec-payments.yaml").path == "campaigns/ec-payments.yaml"
    assert [c.path for c in load_campaigns("campaigns")][0] == "campaigns/ec-payments.yaml"
    outside = load_campaign(ROOT / "campaigns" / "industry-news.yaml", root=ROOT / "tests")
    assert outside.path == str(ROOT / "campaigns" / "industry-news.yaml")


def test_campaign_error_for_later_checks():
    c = load_campaign(ROOT / "campaigns" / "ec-payments.yaml", root=ROOT)
    e = campaign_error(c, 'no link named "pricing" in ec-payments/service.html', field="follow_up[0].when.clicked")
    line, col = c.where("follow_up[0].when.clicked")
    assert str(e).startswith(f"campaigns/ec-payments.yaml:{line}:{col}: follow_up[0].when.clicked: no link")
    assert "pricing" in c.source.splitlines()[line - 1][col - 1:]
    # An unknown field falls back to its nearest parent.
    assert c.where("steps[1].nothing") == c.where("steps[1]")
    assert c.where("steps[1]")[0] == c.steps[1].line


def test_samples_become_contacts():
    c = load_campaign(ROOT / "campaigns" / "ec-payments.yaml")
    first = find_sample(c)
    contact = sample_contact(first)
    assert contact.email == first["email"] and contact.company == first["company"]
    assert contact.attributes["similar_company"] == first["similar_company"]
    assert "email" not in contact.attributes
    assert contact.as_template_vars()["similar_company"] == first["similar_company"]
    assert find_sample(c, "2") is c.samples[1]
    assert find_sample(c, c.samples[2]["email"].upper()) is c.samples[2]
    with pytest.raises(NotFound, match="samples: yui.sato@kumo-tea.example"):
        find_sample(c, "nobody@example.com")


# -- robustness: any value anywhere gives CampaignErrors or a Campaign, never a crash ----------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SHIPPED = yaml.safe_load((ROOT / "campaigns" / "ec-payments.yaml").read_text())
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 100), st.floats(allow_nan=False),
                     st.text(max_size=12), st.sampled_from(["any", "clicked", "pricing", "7d", "mon", "0"]))
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["clicked", "step", "id", "x"]), inner, max_size=3)),
    max_leaves=6)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


_ALL_PATHS = [p for p in _paths(SHIPPED) if p]


def _set(doc, path, value):
    import copy

    doc = copy.deepcopy(doc)
    target = doc
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return doc


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(_ALL_PATHS), value=_values)
def test_any_value_anywhere_is_an_error_or_a_campaign(path, value):
    text = yaml.safe_dump(_set(SHIPPED, path, value), allow_unicode=True)
    try:
        c = parse_campaign(text, file="ec-payments.yaml", expected_id="ec-payments")
    except CampaignErrors as e:
        assert e.errors and all(isinstance(x, CampaignError) and x.line for x in e.errors), e
    else:
        assert c.id == "ec-payments" and c.steps
        # What the loader accepts, the schema accepts too (the loader is the stricter one).
        assert list(_VALIDATOR.iter_errors(yaml.safe_load(text))) == [], (path, value)


_VALIDATOR = validator()


def test_follow_up_cadence_keys():
    doc = minimal()
    doc["steps"].append({"id": "two", "subject": "S", "template": "t.html", "wait": "3d"})
    doc["follow_up"] = [{"when": "clicked", "attempts": 4, "retry": ["30m", "next_day 9:30"],
                         "unreachable": {"step": "two"}}, {"when": "clicked"}]
    c = parse_campaign(yaml.safe_dump(doc), file="x.yaml", expected_id="x")
    r, default = c.follow_up
    assert (r.attempts, r.retry, dict(r.unreachable)) == (4, ("30m", "next_day 9:30"), {"step": "two"})
    assert (default.attempts, default.retry, default.unreachable) == (3, ("2h", "next_day 10:00"), None)
    assert not list(validator().iter_errors(doc))
    doc["follow_up"] = [{"when": "clicked", "attempts": 0, "retry": ["soon"], "unreachable": {"step": "nope"}}]
    with pytest.raises(CampaignErrors) as e:
        parse_campaign(yaml.safe_dump(doc), file="x.yaml", expected_id="x")
    fields = [err.field for err in e.value.errors]
    assert fields == ["follow_up[0].attempts", "follow_up[0].retry[0]", "follow_up[0].unreachable.step"], fields
    assert len(list(validator().iter_errors(doc))) >= 2


# -- preheader, locale and footer ------------------------------------------------------------

def test_the_japanese_example_is_ec_payments_in_japanese():
    en = load_campaign(ROOT / "campaigns" / "ec-payments.yaml", root=ROOT)
    ja = load_campaign(ROOT / "campaigns" / "ec-payments-ja.yaml", root=ROOT)
    assert (en.locale, ja.locale) == ("en", "ja") and ja.footer == {}
    assert [s.id for s in ja.steps] == [s.id for s in en.steps]
    assert [s.template for s in ja.steps] == [f"ec-payments-ja/{s.template.split('/')[1]}" for s in en.steps]
    assert [s.wait for s in ja.steps] == [s.wait for s in en.steps] and ja.steps[1].unless == en.steps[1].unless
    assert all(s.preheader for s in ja.steps + en.steps)
    assert [r.when for r in ja.follow_up] == [r.when for r in en.follow_up]
    assert all(not str(s.get("last_name", "")).isascii() for s in ja.samples if "last_name" in s)


def test_preheader_locale_and_footer_are_read():
    doc = minimal()
    doc["steps"][0]["preheader"] = "Hi {{ contact.first_name }}"
    doc.update(locale="ja-JP", footer={"unsubscribe": "配信停止は[こちら]から"})
    c = parse_campaign(yaml.safe_dump(doc, allow_unicode=True), file="x.yaml", expected_id="x")
    assert (c.steps[0].preheader, c.locale, dict(c.footer)) == (
        "Hi {{ contact.first_name }}", "ja-JP", {"unsubscribe": "配信停止は[こちら]から"})
    assert parse_campaign(yaml.safe_dump(minimal()), file="x.yaml", expected_id="x").locale == "en"
    assert not list(validator().iter_errors(doc))


@pytest.mark.parametrize(("change", "message"), [
    ({"locale": "de"}, 'locale: "de" is not a language nurture has texts for (known: en, ja); '
                       "give footer: why and unsubscribe in that language"),
    ({"locale": "Japanese"}, 'locale: "Japanese" is not a language tag such as "en", "ja" or "en-GB"'),
    ({"footer": {"unsubscribe": "Unsubscribe here"}},
     'footer.unsubscribe: must mark the link text with [brackets] once, e.g. "Not relevant any more? [Unsubscribe]'),
    ({"footer": {"unsubscribe": "[a] or [b]"}}, "(found 2)"),
    ({"footer": {"whyy": "x"}}, 'footer.whyy: unknown key "whyy" (did you mean "why"?)'),
    ({"footer": {"why": ""}}, "footer.why: must not be empty"),
])
def test_locale_and_footer_mistakes(change: dict, message: str):
    doc = {**minimal(), **change}
    with pytest.raises(CampaignErrors) as info:
        parse_campaign(yaml.safe_dump(doc), file="x.yaml", expected_id="x")
    assert any(message in str(e) for e in info.value.errors), [str(e) for e in info.value.errors]
    if change != {"locale": "de"}:  # the schema checks the tag's shape, not the catalogue
        assert list(validator().iter_errors(doc)), change


def test_another_language_with_its_own_footer_is_a_campaign():
    doc = {**minimal(), "locale": "de", "footer": {"why": "Sie erhalten diese Mail, weil ...",
                                                   "unsubscribe": "Nicht mehr relevant? [Abmelden] mit einem Klick."}}
    c = parse_campaign(yaml.safe_dump(doc), file="x.yaml", expected_id="x")
    assert c.locale == "de" and c.footer["unsubscribe"].startswith("Nicht")
    assert not list(validator().iter_errors(doc))


def test_calendar_closures_and_pace():
    import datetime as _dt

    doc = minimal()
    doc.update(calendar="jp", closures=["2026-12-29..2027-01-03", _dt.date(2027, 5, 6)], pace="reps")
    c = parse_campaign(yaml.safe_dump(doc), file="x.yaml", expected_id="x")
    assert (c.calendar, c.pace) == ("JP", "reps")
    assert [str(x) for x in c.closures] == ["2026-12-29..2027-01-03", "2027-05-06"]
    doc.update(calendar="none")
    assert parse_campaign(yaml.safe_dump(doc), file="x.yaml", expected_id="x").calendar == "none"
    # The schema checks shapes; only the loader knows countries and calendar dates.
    for key, value, message, shape in (("calendar", "Atlantis", "not a country with a holiday calendar", True),
                                       ("closures", ["2027-02-30"], "no such date", True),
                                       ("closures", "2027-01-01", "must be a list", False),
                                       ("pace", "fast", "is not a pace", False)):
        bad = minimal()
        bad[key] = value
        with pytest.raises(CampaignErrors, match=message):
            parse_campaign(yaml.safe_dump(bad), file="x.yaml", expected_id="x")
        assert (not list(validator().iter_errors(bad))) == shape
