"""nurture.guides: the guides by topic, README sections, and links rewritten for a terminal."""

from __future__ import annotations

from pathlib import Path

import pytest

from nurture.errors import NurtureError
from nurture.guides import README_SECTIONS, docs_root, find_guide, guide_text, guides, terminal_markdown

ROOT = Path(__file__).resolve().parent.parent


def test_every_docs_file_and_the_readme_sections_are_topics() -> None:
    topics = {g.topic for g in guides()}
    assert {p.stem for p in (ROOT / "docs").glob("*.md")} <= topics
    assert {"readme", *README_SECTIONS} <= topics
    assert docs_root() == ROOT / "docs"
    assert find_guide("campaigns").title == "Writing a campaign"


def test_a_unique_prefix_finds_a_guide_and_an_unknown_one_names_the_known() -> None:
    assert find_guide("camp").topic == "campaigns"
    assert find_guide("Inbound.md").topic == "inbound"
    with pytest.raises(NurtureError, match=r'no guide "campains"; did you mean "campaigns"\?.*known: architecture'):
        find_guide("campains")
    with pytest.raises(NurtureError, match='no guide "s"'):  # scaling and sending
        find_guide("s")


def test_a_readme_section_runs_from_its_heading_to_the_next() -> None:
    text = guide_text(find_guide("config"))
    assert text.startswith("## Configuration reference\n")
    assert "\n## " not in text and "| `database` |" in text


def test_links_to_guides_become_the_command_and_other_links_their_text() -> None:
    topics = {"reps", "tracking"}
    md = ("See [docs/reps.md](docs/reps.md), the [ledger](tracking.md#the-ledger), [below](#exits), "
          "[bench](../bench/README.md), [RFC 8058](https://www.rfc-editor.org/rfc/rfc8058), "
          "[reference](README.md#configuration-reference) and [x](other.md).\n"
          "![The task list](docs/img/tasks.png)\n```\n[kept](reps.md)\n```")
    assert terminal_markdown(md, topics=topics).split("\n") == [
        "See `nurture docs reps`, the ledger (`nurture docs tracking`), below, bench, "
        "[RFC 8058](https://www.rfc-editor.org/rfc/rfc8058), reference (`nurture docs config`) and x.",
        "*(The task list)*", "```", "[kept](reps.md)", "```"]


def test_no_shipped_guide_keeps_a_relative_link() -> None:
    topics = {g.topic for g in guides()}
    for guide in guides():
        text = terminal_markdown(guide_text(guide), topics=topics)
        outside_code = "\n".join(part for i, part in enumerate(text.split("```")) if i % 2 == 0)
        assert ".md)" not in outside_code, guide.topic
