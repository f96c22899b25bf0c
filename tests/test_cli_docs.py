"""``nurture docs`` through click's runner: the list, a guide at 80 columns, --path, the pager."""

from __future__ import annotations

import shlex
from pathlib import Path

from click.testing import CliRunner
from rich.cells import cell_len

from nurture.cli import main

ROOT = Path(__file__).resolve().parent.parent


def invoke(*args: str, env: dict[str, str | None] | None = None):
    return CliRunner().invoke(main, list(args), env={"COLUMNS": "200", **(env or {})})


def test_without_a_topic_it_lists_the_guides_with_their_titles(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no project needed, and none is created
    result = invoke("docs")
    assert result.exit_code == 0, result.output
    rows = {line.split(None, 1)[0]: line.split(None, 1)[1].strip() for line in result.stdout.splitlines()[1:-1]}
    assert rows["campaigns"] == "Writing a campaign" and rows["config"] == "Configuration reference (README)"
    assert "nurture docs TOPIC" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_a_guide_prints_as_plain_text_at_80_columns_with_links_as_commands() -> None:
    result = invoke("docs", "templates")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "Writing email templates" in lines[0]
    assert max(cell_len(line) for line in lines) <= 80
    assert all(line == line.rstrip() for line in lines) and "\x1b[" not in result.stdout
    assert "The campaign format itself is in nurture docs campaigns." in " ".join(result.stdout.split())
    assert "campaigns.md" not in result.stdout


def test_a_narrow_terminal_gets_a_narrower_page() -> None:
    result = invoke("docs", "reps", env={"COLUMNS": "50"})
    assert result.exit_code == 0
    assert max(cell_len(line) for line in result.stdout.splitlines()) <= 50


def test_path_prints_where_the_file_is() -> None:
    assert invoke("docs", "campaigns", "--path").stdout.strip() == str(ROOT / "docs" / "campaigns.md")
    assert invoke("docs", "config", "--path").stdout.strip() == str(ROOT / "README.md")
    assert invoke("docs", "--path").stdout.strip() == str(ROOT / "docs")


def test_an_unknown_topic_is_one_error_line_naming_the_known_ones() -> None:
    result = invoke("docs", "campains")
    assert result.exit_code == 1
    assert result.stderr.startswith('error no guide "campains"; did you mean "campaigns"?')
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_pager_gets_the_page_and_less_its_options(tmp_path: Path) -> None:
    out = tmp_path / "paged.txt"
    pager = f"sh -c {shlex.quote(f'echo LESS=$LESS > {out}; cat >> {out}')}"
    result = invoke("docs", "sending", "--pager", env={"PAGER": pager, "LESS": None})
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    paged = out.read_text()
    assert paged.startswith("LESS=FRX\n") and "nurture send" in paged


def test_without_a_pager_to_run_it_prints() -> None:
    result = invoke("docs", "sending", "--pager", env={"PAGER": "no-such-pager-here"})
    assert result.exit_code == 0 and "nurture send" in result.stdout


def test_a_broken_config_does_not_keep_you_from_the_guide_that_explains_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text("smtp: {port: nope}\nno_such_key: 1\n")
    result = invoke("docs", "config")
    assert result.exit_code == 0, result.output
    assert "Configuration reference" in result.stdout and result.stderr == ""
