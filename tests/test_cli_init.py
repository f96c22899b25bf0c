"""``nurture init`` through click's runner."""

from __future__ import annotations

import stat
from pathlib import Path

from click.testing import CliRunner

from nurture.cli import main


def invoke(*args: str, env: dict[str, str | None] | None = None):
    return CliRunner().invoke(main, list(args), env={"NURTURE_SECRET": None, **(env or {})})


def test_init_writes_the_project_and_prints_the_next_three_commands(tmp_path: Path) -> None:
    result = invoke("init", str(tmp_path / "proj"))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    nxt = lines.index("Next:")
    assert [line.strip() for line in lines[nxt + 1:nxt + 4]] == [
        f"cd {tmp_path / 'proj'} && nurture validate", "nurture preview ec-payments case-study",
        "nurture contacts import contacts.csv"]
    assert "signing secret: .nurture/secret" in result.stdout
    assert stat.S_IMODE((tmp_path / "proj" / ".nurture" / "secret").stat().st_mode) == 0o600


def test_init_refuses_to_overwrite_then_force_adds_what_is_missing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert invoke("init").exit_code == 0
    (tmp_path / "contacts.csv").unlink()
    again = invoke("init")
    assert again.exit_code == 1
    assert "already has config.yaml" in again.stderr and "--force" in again.stderr
    assert not (tmp_path / "contacts.csv").exists()
    forced = invoke("init", "--force")
    assert forced.exit_code == 0, forced.output
    assert "wrote contacts.csv" in forced.stdout and "kept  config.yaml" in forced.stdout
    lines = forced.stdout.splitlines()
    assert lines[lines.index("Next:") + 1].strip() == "nurture validate"  # no `cd` into the folder we are in


def test_init_with_a_secret_in_the_environment_writes_no_secret_file(tmp_path: Path) -> None:
    result = invoke("init", str(tmp_path), "--example", "industry-news", env={"NURTURE_SECRET": "from-env"})
    assert result.exit_code == 0, result.output
    assert "from NURTURE_SECRET in the environment" in result.stdout
    assert not (tmp_path / ".nurture").exists()
    assert "nurture preview industry-news issue-1" in result.stdout


def test_init_rejects_an_unknown_example(tmp_path: Path) -> None:
    result = invoke("init", str(tmp_path), "--example", "nope")
    assert result.exit_code == 2 and "ec-payments" in result.output
