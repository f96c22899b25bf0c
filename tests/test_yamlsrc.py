"""nurture.yamlsrc: where every key and value sits (1-based line and column), and syntax
errors with their position."""

from __future__ import annotations

import pytest

from nurture.yamlsrc import Source, YamlSyntaxError, field_name, load

CAMPAIGN = """\
id: ec-payments
steps:
  - id: case-study
    wait: 3 dayz
  - id: webinar
    tags: [one, two]
sample:
  name: Kim
"""


def test_scalar_values_point_at_the_value_containers_at_their_key() -> None:
    src = load(CAMPAIGN, "c.yaml")
    assert src.file == "c.yaml"
    assert src.data == {"id": "ec-payments", "steps": [{"id": "case-study", "wait": "3 dayz"},
                                                      {"id": "webinar", "tags": ["one", "two"]}],
                        "sample": {"name": "Kim"}}
    p = src.positions
    assert p[()] == (1, 1)
    assert p[("id",)] == (1, 5)                       # the value "ec-payments"
    assert p[("steps",)] == (2, 1)                    # a list: its key
    assert p[("steps", 0)] == (3, 5)                  # an item: where it starts, after "- "
    assert p[("steps", 0, "wait")] == (4, 11)         # "wait: 3 dayz" → at "3 dayz"
    assert p[("steps", 1, "tags")] == (6, 5)          # a flow list: its key
    assert p[("steps", 1, "tags", 1)] == (6, 17)      # "two"
    assert p[("sample",)] == (7, 1) and p[("sample", "name")] == (8, 9)


def test_where_falls_back_to_the_nearest_parent() -> None:
    src = load(CAMPAIGN, "c.yaml")
    assert src.where(("steps", 0, "wait")) == (4, 11)
    assert src.where(("steps", 0, "subject")) == (3, 5)   # missing key: the step it belongs in
    assert src.where(("steps", 7, "id")) == (2, 1)        # no such step: the list
    assert src.where(("nothing",)) == (1, 1)               # the document
    assert Source(file="x", data=None).where(("a",)) == (None, None)


@pytest.mark.parametrize("text", ["", "# only a comment\n"])
def test_an_empty_document(text: str) -> None:
    src = load(text, "e.yaml")
    assert src.data is None and src.where(("id",)) == (None, None)


def test_merge_keys_point_where_the_value_is_written() -> None:
    src = load("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n", "m.yaml")
    assert src.data == {"base": {"x": 1}, "other": {"x": 1, "y": 2}}
    assert src.positions[("other", "x")] == (1, 14) and src.positions[("other", "y")] == (4, 6)


def test_values_are_typed_as_safe_yaml_types() -> None:
    src = load("n: 3\nf: 1.5\nb: true\nz: ~\nd: 2026-11-24\ns: '007'\n", "t.yaml")
    assert src.data["n"] == 3 and src.data["f"] == 1.5 and src.data["b"] is True and src.data["z"] is None
    assert str(src.data["d"]) == "2026-11-24" and src.data["s"] == "007"


@pytest.mark.parametrize(("text", "message", "line", "column"), [
    ("a: 1\na: 2\n", 'duplicate key "a"', 2, 1),
    ("steps:\n  - id: x\n    id: y\n", 'duplicate key "id"', 3, 5),
    ("? [1]\n: x\n", "a key must be a plain value", 1, 3),
    ("a: [1, 2\nb: 3\n", "expected ',' or ']'", 2, 2),
    ("a:\n\t- x\n", "found character '\\t' that cannot start any token", 2, 1),
    ('a: "x\n', "found unexpected end of stream", 2, 1),
    ("a: 1\n---\nb: 2\n", "expected a single document", 2, 1),
    ("a: *nope\n", "found undefined alias 'nope'", 1, 4),
    ("a: !!binary xx=\n", "failed to decode base64 data", 1, 4),
    ("a: !python/object:os.system x\n", "could not determine a constructor", 1, 4),  # safe: no objects
])
def test_syntax_errors_say_where(text: str, message: str, line: int, column: int) -> None:
    with pytest.raises(YamlSyntaxError) as info:
        load(text, "bad.yaml")
    e = info.value
    assert e.message.startswith("YAML syntax error: ") and message in e.message
    assert (e.line, e.column) == (line, column) and str(e) == e.message


def test_field_name() -> None:
    assert field_name(("steps", 1, "wait")) == "steps[1].wait"
    assert field_name(("send_window", "days", 0)) == "send_window.days[0]"
    assert field_name((0, "id")) == "[0].id"
    assert field_name(("id",)) == "id" and field_name(()) == ""
