"""nurture.project: the files of a new project (nurture init) and the shipped examples."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from nurture.config import CONFIG_KEYS, load_settings
from nurture.errors import NurtureError
from nurture.project import (
    EXAMPLES,
    SCHEMA_FILE,
    SECRET_FILE,
    demo_sources,
    examples_root,
    init_project,
    project_files,
)
from nurture.validate import check

ROOT = Path(__file__).resolve().parent.parent


def test_examples_come_from_the_checkout_in_a_source_tree() -> None:
    assert examples_root() == ROOT
    assert sorted(p.stem for p in (ROOT / "campaigns").glob("*.yaml")) == sorted(EXAMPLES)


def test_init_writes_a_project_that_validates(tmp_path: Path) -> None:
    result = init_project(folder=tmp_path / "p", secret=b"s3cret-for-the-test")
    p = tmp_path / "p"
    assert set(result.written) == {
        "config.yaml", "campaigns/ec-payments.yaml", "templates/base.html", "templates/ec-payments/case_study.html",
        "templates/ec-payments/service.html", "templates/ec-payments/webinar.html", SCHEMA_FILE, "contacts.csv",
        ".gitignore", SECRET_FILE}
    assert result.kept == () and result.first_step == "case-study"
    assert stat.S_IMODE((p / SECRET_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE((p / ".nurture").stat().st_mode) == 0o700
    settings = load_settings(p / "config.yaml", env={})
    assert settings.tracking.keys == {"k1": b"s3cret-for-the-test"} and settings.warnings == ()
    assert settings.tracking.secret_origin == f"file {p / SECRET_FILE}"
    assert settings.database == str(p / "nurture.db")
    assert (settings.smtp.host, settings.smtp.port) == ("127.0.0.1", 1025)
    report = check(None, settings=settings)
    assert not report.errors and "1 campaign" in report.summary()
    # The editor's $schema comment points at a file that exists in the project.
    first = (p / "campaigns" / "ec-payments.yaml").read_text().splitlines()[0]
    ref = re.fullmatch(r"# yaml-language-server: \$schema=(\S+)", first)
    assert ref and (p / "campaigns" / ref.group(1)).resolve() == (p / SCHEMA_FILE).resolve()
    ignored = (p / ".gitignore").read_text().splitlines()
    assert {"*.db", ".nurture/", "mail/"} <= set(ignored)
    assert (p / "contacts.csv").read_text().startswith("email,first_name,")


def test_init_never_overwrites(tmp_path: Path) -> None:
    init_project(folder=tmp_path, secret=b"one")
    (tmp_path / "config.yaml").write_text("database: mine.db\n")
    with pytest.raises(NurtureError, match=r"already has config.yaml, campaigns/ec-payments.yaml.*--force"):
        init_project(folder=tmp_path, secret=b"two")
    assert (tmp_path / "config.yaml").read_text() == "database: mine.db\n"
    assert (tmp_path / SECRET_FILE).read_bytes() == b"one\n"


def test_force_adds_only_what_is_missing(tmp_path: Path) -> None:
    init_project(folder=tmp_path, secret=b"one")
    (tmp_path / "templates" / "base.html").unlink()
    (tmp_path / "config.yaml").write_text("database: mine.db\n")
    result = init_project(folder=tmp_path, force=True, secret=b"two")
    assert result.written == ("templates/base.html",)
    assert "config.yaml" in result.kept and SECRET_FILE in result.kept
    assert (tmp_path / "config.yaml").read_text() == "database: mine.db\n"
    assert (tmp_path / SECRET_FILE).read_bytes() == b"one\n"
    assert (tmp_path / "templates" / "base.html").read_bytes() == (ROOT / "templates" / "base.html").read_bytes()


def test_with_a_secret_in_the_environment_no_secret_file_is_written(tmp_path: Path) -> None:
    result = init_project(folder=tmp_path, secret=None)
    assert result.secret_file is None and not (tmp_path / ".nurture").exists()
    settings = load_settings(tmp_path / "config.yaml", env={"NURTURE_SECRET": "from-env"})
    assert settings.tracking.secret_origin == "env NURTURE_SECRET"


def test_industry_news_example(tmp_path: Path) -> None:
    result = init_project(folder=tmp_path, example="industry-news", secret=b"x")
    assert "campaigns/industry-news.yaml" in result.written and "templates/industry-news/issue_1.html" in result.written
    assert not (tmp_path / "campaigns" / "ec-payments.yaml").exists()
    assert check(None, settings=load_settings(tmp_path / "config.yaml", env={})).errors == ()
    with pytest.raises(NurtureError, match=r'no example "nope" \(known: ec-payments, ec-payments-ja, industry-news\)'):
        project_files(example="nope", secret=None)


def test_japanese_example(tmp_path: Path) -> None:
    result = init_project(folder=tmp_path, example="ec-payments-ja", secret=b"x")
    assert {"campaigns/ec-payments-ja.yaml", "templates/base.html", "templates/ec-payments-ja/case_study.html",
            "templates/ec-payments-ja/service.html", "templates/ec-payments-ja/webinar.html"} <= set(result.written)
    assert not (tmp_path / "templates" / "ec-payments").exists()
    assert check(None, settings=load_settings(tmp_path / "config.yaml", env={})).errors == ()


def test_the_shipped_config_names_every_key() -> None:
    """config.yaml (which init copies) shows every key, set or commented out with its default."""
    text = (ROOT / "config.yaml").read_text()
    for key in CONFIG_KEYS:
        leaf = key.rsplit(".", 1)[-1]
        assert re.search(rf"(?<![\w.]){re.escape(leaf)}:", text), f"config.yaml lacks {key}"


def test_demo_plays_the_shipped_example_outside_a_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    bare = load_settings(env={})
    assert bare.source is None
    settings, campaigns = demo_sources(bare)
    assert campaigns == ROOT / "campaigns" and settings.templates_dir == str(ROOT / "templates")
    assert [r.id for r in settings.reps] == ["aoki", "baker", "garcia"]  # the shipped config's reps
    init_project(folder=tmp_path, secret=b"x")
    own = load_settings(tmp_path / "config.yaml", env={})
    assert demo_sources(own) == (own, tmp_path / "campaigns")
