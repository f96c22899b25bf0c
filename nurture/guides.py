"""The user guides (the repository's ``docs/*.md`` and README) as installed nurture has them.

A built wheel carries a copy of them as package data under ``nurture/docs/`` (setup.py's
build hook, as for the examples); a source checkout reads its own ``docs/`` and
``README.md``. A guide is a topic name (``campaigns`` for ``campaigns.md``), or a section
of the README (``config`` is its "Configuration reference"). :func:`terminal_markdown`
turns links between the guides into the ``nurture docs TOPIC`` command that shows them,
since a relative ``.md`` link leads nowhere in a terminal.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

from nurture.errors import NurtureError

#: The guide every campaign file and the JSON Schema point at; checked to exist.
REQUIRED = "campaigns"
README = "README.md"
#: Topics that are one section of the README (an ``## `` heading), and the whole README.
README_SECTIONS = {"commands": "Commands", "config": "Configuration reference", "production": "Going to production"}
README_TOPIC = "readme"

_LINK = re.compile(r"(!?)\[([^\]\n]*)\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^\s*(```|~~~)")


@dataclass(frozen=True, slots=True)
class Guide:
    """One topic of ``nurture docs``: its name, its title, the file it is read from and, for a
    README section, the heading it starts at."""

    topic: str
    title: str
    path: Path
    section: str | None = None


def docs_root() -> Path:
    """The folder holding the guides: ``nurture/docs`` in an installed wheel, the checkout's
    ``docs/`` in a source tree."""
    here = Path(__file__).resolve().parent
    for root in (here / "docs", here.parent / "docs"):
        if (root / f"{REQUIRED}.md").is_file():
            return root
    raise NurtureError("this nurture installation lacks its guides (nurture/docs); reinstall nurture")


def _readme(root: Path) -> Path | None:
    for path in (root / README, root.parent / README):
        if path.is_file():
            return path
    return None


def _title(text: str, fallback: str) -> str:
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return fallback


def guides() -> list[Guide]:
    """Every guide, by topic name."""
    root = docs_root()
    found = [Guide(p.stem, _title(p.read_text(encoding="utf-8"), p.stem), p) for p in root.glob("*.md")
             if p.name != README]
    readme = _readme(root)
    if readme is not None:
        found.append(Guide(README_TOPIC, "nurture: overview, commands, configuration, production", readme))
        found += [Guide(topic, f"{heading} (README)", readme, heading) for topic, heading in README_SECTIONS.items()]
    return sorted(found, key=lambda g: g.topic)


def find_guide(topic: str) -> Guide:
    """The guide named ``topic`` (or the only one whose name starts with it); NurtureError
    naming the known topics otherwise."""
    known = guides()
    wanted = topic.strip().lower().removesuffix(".md")
    exact = [g for g in known if g.topic == wanted]
    matches = (exact or [g for g in known if g.topic.startswith(wanted)]) if wanted else []
    if len(matches) == 1:
        return matches[0]
    names = [g.topic for g in known]
    close = difflib.get_close_matches(wanted, names, n=1)
    hint = f'; did you mean "{close[0]}"?' if close and not matches else ""
    raise NurtureError(f'no guide "{topic}"{hint} (known: {", ".join(names)}; `nurture docs` lists them)')


def guide_text(guide: Guide) -> str:
    """The guide's Markdown as written (a README section from its heading to the next one)."""
    text = guide.path.read_text(encoding="utf-8")
    if guide.section is None:
        return text
    m = re.search(rf"(?ms)^## {re.escape(guide.section)}\n.*?(?=^## |\Z)", text)
    if m is None:
        raise NurtureError(f'{guide.path.name} has no "{guide.section}" section; reinstall nurture')
    return m.group(0)


def _slug(heading: str) -> str:
    return re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-")


def terminal_markdown(text: str, *, topics: set[str]) -> str:
    """``text`` with its links made to work in a terminal: a link to another guide names
    the ``nurture docs TOPIC`` command, a link inside the page or to a file that is not
    installed keeps only its text, a picture becomes its description; web links stay.
    Fenced code is left as it is."""
    sections = {_slug(heading): topic for topic, heading in README_SECTIONS.items()}

    def link(m: re.Match[str]) -> str:
        bang, label, target = m.groups()
        if bang:
            return f"*({label})*" if label else ""
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            return m.group(0)
        page, _, anchor = target.partition("#")
        name = page.rsplit("/", 1)[-1]
        topic = None
        if page in (README, f"../{README}"):
            topic = sections.get(anchor, README_TOPIC)
        elif name.endswith(".md") and name[:-3] in topics and not page.startswith(".."):
            topic = name[:-3]
        if topic is None:
            return label
        command = f"`nurture docs {topic}`"
        return command if label.strip("`").endswith(".md") else f"{label} ({command})"

    out, fenced = [], False
    for line in text.split("\n"):
        if _FENCE.match(line):
            fenced = not fenced
        out.append(line if fenced else _LINK.sub(link, line))
    return "\n".join(out)
