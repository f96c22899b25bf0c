"""nurture.render_bounds: a template that would build something huge fails fast and clearly."""

from __future__ import annotations

import time

import pytest

from nurture.errors import TemplateError
from nurture.render_bounds import BoundedSandbox, TemplateTooBig, bounded_render
from nurture.render_env import Templates, render_snippet


def render(src: str, **ctx) -> str:
    t = BoundedSandbox().from_string(src)
    return bounded_render(lambda: t.generate(**ctx))


@pytest.mark.parametrize(("src", "expected"), [
    ("{{ ('a' * 1000000) * 1000 }}", "longer than 1,000,000 characters"),
    ("{{ 1000 * ('a' * 1000000) }}", "longer than 1,000,000 characters"),
    ("{{ [0] * 100000000 }}", "longer than 1,000,000 characters"),
    ("{% set s = 'a' * 900000 %}{{ s + s }}", "longer than 1,000,000 characters"),
    ("{% set s = 'a' * 900000 %}{{ s ~ s ~ s }}", "rendered text is longer than 2,000,000"),
    ("{{ 10 ** 100000 }}", "number too large"),
    ("{{ 'x' | center(1000000000) }}", "an argument of 1,000,000,000"),
    ("{{ 'x'.ljust(10 ** 9) }}", "an argument of 1,000,000,000"),
    ("{{ '{:>1000000000}'.format(1) }}", "format width"),
    ("{{ '%2000000000d' % 1 }}", "format width"),
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "loop steps"),
    ("{{ range(10 ** 12) | list }}", "an argument of"),
])
def test_huge_templates_fail_fast(src, expected):
    started = time.perf_counter()
    with pytest.raises(TemplateTooBig, match=expected):
        render(src)
    assert time.perf_counter() - started < 1.5


def test_ordinary_templates_render_as_before():
    src = "Hi {{ name | title }}, {{ '%s: %5d' % ('n', 3) }} {{ '{} {:>4}'.format('a', 1) }}" \
          "{% for i in range(3) %}{{ i }}{% endfor %} {{ 'ab' * 3 }} {{ 2 ** 10 }}"
    assert render(src, name="ann lee") == "Hi Ann Lee, n:     3 a    1012 ababab 1024"


def test_the_deadline_stops_a_slow_template(monkeypatch):
    import nurture.render_bounds as rb

    monkeypatch.setattr(rb, "MAX_SECONDS", 0.2)
    started = time.perf_counter()
    with pytest.raises(TemplateTooBig, match="longer than 0.2 s"):
        render("{% for i in range(900000) %}{{ i | string | length }}{% endfor %}")
    assert time.perf_counter() - started < 1.0


def test_a_mail_template_and_a_note_fail_with_file_and_line(tmp_path):
    (tmp_path / "big.html").write_text("<p>Hello</p>\n{{ ('a' * 1000000) * 1000 }}\n")
    templates = Templates(tmp_path)
    started = time.perf_counter()
    with pytest.raises(TemplateError) as e:
        templates.run(templates.get("big.html"), {})
    assert time.perf_counter() - started < 1.5
    assert e.value.line == 2 and e.value.template.endswith("big.html")
    assert "longer than 1,000,000 characters" in str(e.value)
    with pytest.raises(TemplateError, match="longer than"):
        render_snippet("{{ 'x' * 10 ** 8 }}", {})
