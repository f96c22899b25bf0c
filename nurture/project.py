"""A nurture project on disk: what ``nurture init`` writes, and the examples shipped with the package.

The examples (campaign YAML, their templates, the base layout) are package data under
``nurture/examples/`` in a built wheel; in a source checkout they are the repository's own
top-level ``campaigns/`` and ``templates/`` folders, the one copy that is edited.
"""

from __future__ import annotations

import csv
import io
import os
import re
import secrets
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from nurture.config import Settings
from nurture.errors import NurtureError


def new_secret() -> bytes:
    """A fresh random signing secret (256 bits, URL-safe text)."""
    return secrets.token_urlsafe(32).encode()


def write_secret(path: Path, secret: bytes) -> Path:
    """Write ``secret`` to ``path`` readable by its owner only (mode 0600, folder 0700)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing file keeps its old mode through O_CREAT
        os.write(fd, secret + b"\n")
    finally:
        os.close(fd)
    return path


#: The examples ``nurture init --example`` knows: one campaign file and a templates folder each.
EXAMPLES = ("ec-payments", "ec-payments-ja", "industry-news")
DEFAULT_EXAMPLE = "ec-payments"
#: Where ``init`` puts the project's signing secret (relative to the project folder).
SECRET_FILE = ".nurture/secret"
#: Where ``init`` puts the JSON Schema the campaign files' ``$schema`` comment points at.
SCHEMA_FILE = "schema/campaign.schema.json"
SAMPLE_CONTACTS = "contacts.csv"

GITIGNORE = """\
# nurture: local data, secrets and generated mail stay out of version control
*.db
*.db-wal
*.db-shm
.nurture/
mail/
preview/
nurture-demo/
"""

_SCHEMA_COMMENT = re.compile(r"(?m)^(# yaml-language-server: \$schema=)\S+")
_SECRET_ENV_LINE = re.compile(r"(?m)^  secret_env: NURTURE_SECRET .*$")
_SECRET_FILE_LINE = re.compile(r"(?m)^  # secret_file: \.nurture/secret .*$")


def examples_root() -> Path:
    """The folder holding the shipped ``config.yaml``, ``campaigns/`` and ``templates/``:
    ``nurture/examples`` in an installed wheel, the checkout itself in a source tree."""
    here = Path(__file__).resolve().parent
    for root in (here / "examples", here.parent):
        if (root / "config.yaml").is_file() and (root / "templates" / "base.html").is_file() \
                and (root / "campaigns" / f"{DEFAULT_EXAMPLE}.yaml").is_file():
            return root
    raise NurtureError("this nurture installation lacks its examples (nurture/examples); reinstall nurture")


@dataclass(frozen=True, slots=True)
class ProjectFile:
    """One file ``nurture init`` writes: a path relative to the project folder and its bytes."""

    path: str
    content: bytes
    mode: int = 0o644


@dataclass(frozen=True, slots=True)
class InitResult:
    """What :func:`init_project` did."""

    folder: Path
    written: tuple[str, ...]
    kept: tuple[str, ...]  # already there (with ``force``), left as they were
    example: str
    first_step: str
    secret_file: str | None  # the secret file named by config.yaml, or None (the environment has one)


def project_files(*, example: str, secret: bytes | None) -> list[ProjectFile]:
    """Every file of a new project with ``example``'s campaign; the signing secret goes to
    :data:`SECRET_FILE` when ``secret`` is given, else config.yaml names ``NURTURE_SECRET``."""
    if example not in EXAMPLES:
        raise NurtureError(f'no example "{example}" (known: {", ".join(EXAMPLES)})')
    root = examples_root()
    config = (root / "config.yaml").read_text(encoding="utf-8")
    if secret is not None:
        config = _SECRET_ENV_LINE.sub(
            "  # secret_env: NURTURE_SECRET        # or: a variable holding the signing secret", config, count=1)
        config = _SECRET_FILE_LINE.sub(
            f"  secret_file: {SECRET_FILE}        # the signing secret, written by nurture init (mode 0600)",
            config, count=1)
    campaign = (root / "campaigns" / f"{example}.yaml").read_text(encoding="utf-8")
    campaign = _SCHEMA_COMMENT.sub(lambda m: m.group(1) + "../" + SCHEMA_FILE, campaign, count=1)
    files = [
        ProjectFile("config.yaml", config.encode()),
        ProjectFile(f"campaigns/{example}.yaml", campaign.encode()),
        ProjectFile("templates/base.html", (root / "templates" / "base.html").read_bytes()),
    ]
    tdir = root / "templates" / example
    for p in sorted(tdir.rglob("*")):
        if p.is_file() and not p.name.startswith("."):
            files.append(ProjectFile(f"templates/{p.relative_to(root / 'templates').as_posix()}", p.read_bytes()))
    schema = resources.files("nurture").joinpath("schema/campaign.schema.json").read_bytes()
    files += [ProjectFile(SCHEMA_FILE, schema), ProjectFile(SAMPLE_CONTACTS, _sample_contacts()),
              ProjectFile(".gitignore", GITIGNORE.encode())]
    if secret is not None:
        files.append(ProjectFile(SECRET_FILE, secret + b"\n", mode=0o600))
    return files


def init_project(*, folder: Path, example: str = DEFAULT_EXAMPLE, force: bool = False,
                 secret: bytes | None) -> InitResult:
    """Write a new project into ``folder`` (created if needed). Refuses when any of its
    files exists, unless ``force``: then it writes only the missing ones and never
    overwrites."""
    from nurture.campaigns import load_campaign

    files = project_files(example=example, secret=secret)
    existing = [f.path for f in files if (folder / f.path).exists()]
    if existing and not force:
        shown = ", ".join(existing[:6]) + (f" and {len(existing) - 6} more" if len(existing) > 6 else "")
        raise NurtureError(f"{folder} already has {shown}; nurture init never overwrites a file "
                           "(--force adds only the missing ones)")
    written = []
    for f in files:
        target = folder / f.path
        if target.exists():
            continue
        if f.mode == 0o600:
            write_secret(target, f.content.strip())
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("xb") as out:  # exclusive: never replace a file that appeared meanwhile
                out.write(f.content)
        written.append(f.path)
    campaign = load_campaign(folder / "campaigns" / f"{example}.yaml")
    return InitResult(folder=folder, written=tuple(written), kept=tuple(existing), example=example,
                      first_step=campaign.steps[0].id, secret_file=SECRET_FILE if secret is not None else None)


def _sample_contacts(count: int = 8) -> bytes:
    """A small contacts CSV of fictional merchants, in the columns the examples use."""
    from nurture.demo_data import COLUMNS, merchants

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for m in merchants(count):
        w.writerow(m.row())
    return buf.getvalue().encode()


def demo_sources(settings: Settings, *, campaign: str = DEFAULT_EXAMPLE) -> tuple[Settings, Path]:
    """The settings and campaigns folder ``nurture demo`` plays ``campaign`` from: the
    project's own when its campaigns folder has it, else the shipped example, with its
    templates (and, when no config file was found, the shipped config's reps and sender)."""
    from dataclasses import replace

    from nurture.config import load_settings

    own = Path(settings.campaigns_dir)
    if (own / f"{campaign}.yaml").is_file():
        return settings, own
    root = examples_root()
    if settings.source is None:
        settings = load_settings(root / "config.yaml")
    return (replace(settings, campaigns_dir=str(root / "campaigns"), templates_dir=str(root / "templates")),
            root / "campaigns")
