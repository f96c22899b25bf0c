import re
from datetime import timedelta

from nurture.models import Campaign, Step
from nurture.report import COLUMNS, rows, svg_chart, totals


def campaign() -> Campaign:
    steps = tuple(Step(id=i, subject=f"Subject {i}", template=f"{i}.html", wait=timedelta(days=7))
                  for i in ("one", "two", "three"))
    return Campaign(id="c", name="C", path="campaigns/c.yaml", timezone="UTC", steps=steps)


FUNNEL = {
    "one": {"sent": 100, "failed": 2, "bounced": 1, "human_clickers": 20, "human_clicks": 25,
            "scanner_clicks": 40, "tasks": 12, "connected": 5, "qualified": 2},
    "two": {"sent": 80, "skipped": 10, "human_clickers": 8, "tasks": 6},
    "gone": {"sent": 3},
}


def test_rows_follow_the_campaign_order_and_keep_removed_steps():
    r = rows(campaign(), FUNNEL)
    assert [x.step_id for x in r] == ["one", "two", "three", "gone"]
    assert r[2].get("sent") == 0  # nobody reached step three yet
    assert r[0].click_rate == 0.2
    assert "no longer" in r[3].subject


def test_totals_add_up():
    t = totals(rows(campaign(), FUNNEL))
    assert t["sent"] == 183 and t["tasks"] == 18 and t["qualified"] == 2


def test_svg_chart_is_accessible_and_has_a_bar_per_series_and_step():
    svg = svg_chart(rows(campaign(), FUNNEL))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert 'role="img"' in svg and "<title" in svg
    assert len(re.findall(r"<rect [^>]*rx=\"2\"", svg)) == 4 * 4  # 4 series × 4 steps
    assert ">100<" in svg and ">20<" in svg


def test_svg_escapes_step_ids():
    c = campaign()
    svg = svg_chart(rows(c, {"<b>x</b>": {"sent": 1}}))
    assert "<b>" not in svg and "&lt;b&gt;" in svg


def test_columns_have_labels():
    assert all(label for _, label in COLUMNS)
