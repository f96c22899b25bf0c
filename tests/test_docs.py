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
