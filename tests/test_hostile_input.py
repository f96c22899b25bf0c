"""Hostile input to every loader: a NurtureError (one located line) or success, never another
exception, and bounded work (issue 18.5). Property tests feed random YAML (aliases, merge keys,
depth, odd scalars and tags) and random bytes (encodings, binary) to the config, campaign and
contacts loaders; a table of named cases pins the messages."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nurture.campaigns import load_campaign, parse_campaign
from nurture.config import load_settings
from nurture.contacts import import_contacts
from nurture.errors import NurtureError
from nurture.store import open_store
from nurture.yamlsrc import YamlSyntaxError, decode, load

SCALARS = st.sampled_from(["1", "-1", "99999", "70000", "1e999", "0x1F", "2024-13-45", "2024-02-30T25:00:00",
                           "~", "null", "true", "'x'", '"\\x00"', "!!binary aGk=", "!!binary '%%'",
                           "!!python/object:os.system ls", "!!int x", "!!float y", "!!timestamp z", "&a 1",
                           "*a", "*nope", "<<: *a", "[]", "{}", "'" + "9" * 5000 + "'", "9" * 5000,
                           "\t", "\x1b[31m", "\u202e", "'''", "a: b: c", "- - -", "? x", "%TAG ! !x", "---"])
KEYS = st.sampled_from(["database", "smtp", "port", "listen", "tracking", "trusted_proxies", "reps", "id",
                        "steps", "template", "wait", "<<", "subject", "x", "&k a", "*k", "? [a]", "1"])


@st.composite
def yaml_docs(draw: st.DrawFn) -> str:
    """Random YAML-ish text: nested blocks and flows with anchors and aliases."""
    lines: list[str] = []
    for _ in range(draw(st.integers(1, 12))):
        indent = "  " * draw(st.integers(0, 6))
        key, value = draw(KEYS), draw(SCALARS)
        form = draw(st.integers(0, 4))
        if form == 0:
            lines.append(f"{indent}{key}: {value}")
        elif form == 1:
            lines.append(f"{indent}- {value}")
        elif form == 2:
            depth = draw(st.integers(1, 300))
            lines.append(f"{indent}{key}: " + "[" * depth + value + "]" * draw(st.integers(0, depth)))
        elif form == 3:
            name = draw(st.sampled_from("abc"))
            items = ", ".join(draw(st.lists(st.sampled_from(["*a", "*b", "*c", value]), max_size=12)))
            lines.append(f"{indent}{key}: &{name} [{items}]")
        else:
            lines.append(indent + draw(st.text(string.printable, max_size=30)))
    return "\n".join(lines) + "\n"


def bomb(levels: int, width: int = 10) -> str:
    out = ["l0: &l0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        out.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(out) + "\n"


def located_or_ok(fn, *args, **kw) -> None:
    try:
        fn(*args, **kw)
    except NurtureError as e:
        text = str(e)
        assert text.strip() and "Traceback" not in text


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(yaml_docs())
def test_random_yaml_is_a_syntax_error_or_data(text):
    try:
        load(text, "x.yaml")
    except YamlSyntaxError as e:
        assert e.message


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(doc=yaml_docs())
def test_random_yaml_as_config_and_campaign_is_a_clean_error_or_settings(tmp_path, doc):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(doc, encoding="utf-8")
    located_or_ok(load_settings, cfg, env={})
    located_or_ok(parse_campaign, doc, file="campaigns/x.yaml", expected_id="x")


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=400),
                      st.text(max_size=200).map(lambda t: t.encode("utf-16")),
                      st.text(max_size=200).map(lambda t: t.encode("shift_jis", "replace")),
                      yaml_docs().map(lambda t: t.encode("utf-8"))))
def test_random_bytes_as_config_and_campaign_files(tmp_path, data):
    cfg = tmp_path / "config.yaml"
    cfg.write_bytes(data)
    located_or_ok(load_settings, cfg, env={})
    located_or_ok(parse_campaign, data, file="campaigns/x.yaml", expected_id="x")


CSV_CELLS = st.sampled_from(["a@x.example", "not-an-email", "", "=1+1", '"', '""', '"a,b"', "\x00", "\r",
                             "Europe/London", "Mars/Base", "山田", "\ufeff", "9" * 5000, ";", "\t", "x" * 3000])


@st.composite
def csv_bytes(draw: st.DrawFn) -> bytes:
    header = draw(st.sampled_from(["email,first_name,timezone", "email;name", "Email Address\tCompany", "", "a,a"]))
    rows = [",".join(draw(st.lists(CSV_CELLS, max_size=5))) for _ in range(draw(st.integers(0, 6)))]
    text = "\n".join([header, *rows])
    codec = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "shift_jis", "latin-1", "binary"]))
    if codec == "binary":
        return draw(st.binary(max_size=300))
    return text.encode(codec, "replace")


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(data=csv_bytes())
def test_random_csv_bytes_import_cleanly_or_fail_cleanly(tmp_path, now, data):
    f = tmp_path / "c.csv"
    f.write_bytes(data)
    store = open_store(str(tmp_path / "n.db"))
    try:
        located_or_ok(import_contacts, store, f, now=now)
    finally:
        store.close()


# -- named cases: each a located one-line error, nothing written -------------------------------

@pytest.mark.parametrize(("text", "expected", "line"), [
    (bomb(9), "expands to more than", None),
    ("a: &a [*a]\n", "recursive", 1),
    ("x: " + "[" * 10_000 + "]" * 10_000 + "\n", "nested deeper than 64", 1),
    ("".join("  " * i + f"k{i}:\n" for i in range(100)) + "  " * 100 + "v\n", "nested deeper than 64", 64),
    ("when: 2024-13-45\n", "month must be in 1..12", 1),
    ("n: " + "9" * 5000 + "\n", "cannot read the value", 1),
    ("a: 1\nb: x\x1by\n", r"U\+001B is not allowed", 2),
    ("? [a]\n: 1\n", "a key must be a plain value", 1),
])
def test_hostile_yaml_documents(text, expected, line):
    with pytest.raises(YamlSyntaxError, match=expected) as e:
        load(text, "x.yaml")
    if line is not None:
        assert e.value.line == line


def test_the_alias_bomb_is_refused_before_it_expands():
    import time
    started = time.perf_counter()
    with pytest.raises(YamlSyntaxError):
        load(bomb(12), "x.yaml")  # 10**12 values if expanded
    assert time.perf_counter() - started < 2


@pytest.mark.parametrize(("data", "expected", "line"), [
    ("名前: 山田\n".encode("shift_jis"), "not UTF-8 text", 1),
    ("a: 1\n".encode("utf-16"), "UTF-16", 1),
    (b"database: x\n\x00\x01\x02", "binary file", 2),
    ("x: 1\n".encode("utf-32"), "UTF-32", 1),
])
def test_undecodable_files(data, expected, line):
    with pytest.raises(YamlSyntaxError, match=expected) as e:
        decode(data, "x.yaml")
    assert e.value.line == line


@pytest.mark.parametrize(("config", "key", "line"), [
    ("smtp:\n  port: -1\n", "smtp.port", 2),
    ("smtp:\n  port: 70000\n", "smtp.port", 2),
    ("smtp:\n  timeout: .nan\n", "smtp.timeout", 2),
    ("smtp:\n  max_connections: 100000000\n", "smtp.max_connections", 2),
    ("reps_app:\n  listen: 127.0.0.1:99999\n", "reps_app.listen", 2),
    ("tracking:\n  trusted_proxies: [10.0.0.0/8, 10.0.0.0/33]\n", "tracking.trusted_proxies[1]", 2),
    ("tracking:\n  trusted_proxies: [not-an-ip]\n", "tracking.trusted_proxies[0]", 2),
    ("database: {dir}\n", "database", 1),
])
def test_bad_config_values_fail_at_their_key(tmp_path, config, key, line):
    from nurture.errors import ConfigError

    cfg = tmp_path / "config.yaml"
    cfg.write_text(config.format(dir=tmp_path))
    with pytest.raises(ConfigError) as e:
        load_settings(cfg, env={})
    assert (e.value.field, e.value.line, e.value.file) == (key, line, str(cfg))
    assert "\n" not in str(e.value)


def test_a_config_file_that_is_a_folder_or_shift_jis_is_one_line(tmp_path):
    from nurture.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_settings(tmp_path, env={})
    cfg = tmp_path / "config.yaml"
    cfg.write_bytes("database: 顧客.db\n".encode("shift_jis"))
    with pytest.raises(ConfigError, match=r"config.yaml:1:\d+: the file is not UTF-8") as e:
        load_settings(cfg, env={})
    assert e.value.line == 1


@pytest.mark.parametrize("template", ["../secret.html", "a/../../b.html", "/etc/passwd", "~/x.html", "a\\b.html"])
def test_a_template_outside_templates_dir_is_refused_at_load(tmp_path, template):
    from nurture.errors import CampaignErrors

    f = tmp_path / "x.yaml"
    f.write_text(f"id: x\nname: X\ntimezone: UTC\nsteps:\n  - id: s1\n    subject: Hi\n    template: '{template}'\n")
    with pytest.raises(CampaignErrors, match=r"steps\[0\]\.template.*inside templates_dir") as e:
        load_campaign(f)
    assert e.value.errors[0].line == 7
    assert Path(f).exists()
