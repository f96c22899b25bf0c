"""The docs stay honest: every CLI command has help text and a row in README.md's command table."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from nurture.cli import main

ROOT = Path(__file__).resolve().parent.parent


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    out = []
    for name, cmd in sorted(group.commands.items()):
        path = (*prefix, name)
        out.append((path, cmd))
        if isinstance(cmd, click.Group):
            out.extend(_commands(cmd, path))
    return out


COMMANDS = _commands(main)


def _commands_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"^## Commands\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert m, "README.md has no '## Commands' section"
    return m.group(1)


def test_some_commands_are_registered() -> None:
    names = {path[0] for path, _ in COMMANDS}
    assert {"validate", "preview", "schema"} <= names


@pytest.mark.parametrize("path, cmd", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_command_has_help(path: tuple[str, ...], cmd: click.Command) -> None:
    assert (cmd.help or "").strip(), f"nurture {' '.join(path)} has no help text"
    assert (cmd.get_short_help_str() or "").strip()


@pytest.mark.parametrize("path, cmd", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_command_is_in_readme(path: tuple[str, ...], cmd: click.Command) -> None:
    section = _commands_section()
    invocation = "`nurture " + " ".join(path)
    assert re.search(re.escape(invocation) + r"[ `]", section), \
        f"README.md's command table does not mention {invocation}`"


def _section(title: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 3)
    return text[start:end if end != -1 else None]


@pytest.mark.parametrize("key", __import__("nurture.config", fromlist=["CONFIG_KEYS"]).CONFIG_KEYS)
def test_config_key_is_in_the_reference(key: str) -> None:
    assert f"| `{key}` |" in _section("Configuration reference"), f"config key {key} is not documented"


def test_readme_test_command_is_what_ci_runs() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert lines[3] == "pip install -e . && nurture demo"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    assert ci == lines[4], "the README's test command and .ci/run's last line must be the same"


def test_shipped_config_has_only_documented_keys() -> None:
    from nurture.config import load_settings

    load_settings(ROOT / "config.yaml", env={})  # unknown keys would raise ConfigError
