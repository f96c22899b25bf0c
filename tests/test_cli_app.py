"""What every command shares (nurture.cli.app): the secret guard and config warnings."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from nurture.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config with no secret configured: nurture falls back to the development secret."""
    path = tmp_path / "config.yaml"
    path.write_text(
        f"database: {tmp_path / 'nurture.db'}\n"
        f"campaigns_dir: {ROOT / 'campaigns'}\n"
        f"templates_dir: {ROOT / 'templates'}\n"
        "smtp: {port: 1}\n"
        "tracking: {listen: '127.0.0.1:0', secret_env: ACME_TEST_SECRET}\n"
        "reps_app: {listen: '127.0.0.1:0'}\n"
        "sender: {from: 'Acme Payments <hello@acme.example>', postal_address: '1-2-3 Marunouchi, Tokyo'}\n")
    return path


def invoke(*args: str, env: dict[str, str | None] | None = None):
    return CliRunner().invoke(main, list(args), env={"ACME_TEST_SECRET": None, "NURTURE_SECRET": None,
                                                     **(env or {})})


@pytest.mark.parametrize("command", [["run"], ["serve"], ["send", "--once"]], ids=lambda c: c[0])
def test_command_refuses_the_development_secret(config: Path, command: list[str]) -> None:
    result = invoke("--config", str(config), *command)
    assert result.exit_code == 1, result.output
    assert f"nurture {command[0]} will not start with the built-in development signing secret" in result.stderr
    assert "ACME_TEST_SECRET" in result.stderr and f"tracking.secret_file in {config}" in result.stderr
    assert "Traceback" not in result.output
    assert not (config.parent / "nurture.db").exists(), "it refused before touching the database"


def test_preview_may_use_the_development_secret_and_says_so(config: Path, tmp_path: Path) -> None:
    result = invoke("--config", str(config), "preview", "ec-payments", "case-study", "--out", str(tmp_path / "p"))
    assert result.exit_code == 0, result.output
    assert "links signed with the built-in development secret" in result.stdout
    with_secret = invoke("--config", str(config), "preview", "ec-payments", "case-study",
                         "--out", str(tmp_path / "p"), env={"ACME_TEST_SECRET": "real"})
    assert with_secret.exit_code == 0 and "development secret" not in with_secret.stdout


def test_send_starts_with_a_secret_file(config: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("a-real-secret")
    secret.chmod(0o600)
    config.write_text(config.read_text().replace("secret_env: ACME_TEST_SECRET", "secret_file: secret"))
    result = invoke("--config", str(config), "send", "--once")
    assert "development signing secret" not in result.output
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr


def test_loose_secret_file_is_warned_about_on_stderr(config: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("a-real-secret")
    secret.chmod(0o640)
    config.write_text(config.read_text().replace("secret_env: ACME_TEST_SECRET", "secret_file: secret"))
    result = invoke("--config", str(config), "validate")
    assert result.exit_code == 0, result.output
    assert f"warning secret file {secret} can be read by other users (mode 0640); run: chmod 600 {secret}" \
        in result.stderr
    assert "warning" not in result.stdout


def test_no_config_and_no_project_says_so_and_creates_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for command in (["tasks"], ["clicks"], ["stats"], ["contacts", "import", "x.csv"]):
        result = invoke(*command, env={"NURTURE_CONFIG": None, "NURTURE_DATABASE": None})
        assert result.exit_code == 1, (command, result.output)
        assert f"no config.yaml in {tmp_path} and no project here: `nurture init` starts one" in result.stderr
    assert list(tmp_path.iterdir()) == [], "nothing was created"
    assert invoke("schema").exit_code == 0  # commands that need no project still work


def test_config_other_than_the_default_is_named_on_stderr_only(config: Path, tmp_path: Path, monkeypatch) -> None:
    import json

    result = invoke("--config", str(config), "reps", "list", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) is not None
    assert result.stderr.splitlines() == [f"config: {config}"]
    monkeypatch.chdir(config.parent)  # ./config.yaml is the default: nothing to say
    result = invoke("reps", "list", "--json")
    assert result.exit_code == 0 and result.stderr == ""


def test_commands_that_read_the_campaigns_say_there_is_no_project(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"NURTURE_CONFIG": None, "NURTURE_DATABASE": None}
    for command in (["validate"], ["validate", "--json"], ["preview", "ec-payments", "case-study"],
                    ["simulate", "ec-payments"]):
        result = invoke(*command, env=env)
        assert result.exit_code == 1, (command, result.output)
        assert f"no config.yaml in {tmp_path} and no project here: `nurture init` starts one" in result.stderr
        assert "known: none" not in result.output
    assert list(tmp_path.iterdir()) == [], "nothing was created"
    (tmp_path / "c.yaml").write_text((ROOT / "campaigns" / "ec-payments.yaml").read_text())
    named = invoke("validate", "c.yaml", env=env)  # files named on the command line need no project
    assert "no project here" not in named.output and "c.yaml" in named.output
