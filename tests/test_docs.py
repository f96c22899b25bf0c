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


_FILE_POINTER = re.compile(r"\b(?:docs/)?[\w-]+\.md\b")
_DOCS_COMMAND = re.compile(r"nurture docs ([a-z][a-z-]*)")


def _user_facing_texts() -> list[tuple[str, str]]:
    """What an installed nurture shows a user: every command's and option's help, the JSON
    Schema, the shipped data files, and every file ``nurture init`` writes."""
    from nurture.campaigns import campaign_json_schema
    from nurture.project import project_files

    texts = [(f"nurture {' '.join(path)} --help", "\n".join(
        [cmd.help or "", *(getattr(p, "help", None) or "" for p in cmd.params)])) for path, cmd in COMMANDS]
    texts.append(("nurture --help", main.help or ""))

    def strings(node: object) -> list[str]:
        if isinstance(node, dict):
            return [s for v in node.values() for s in strings(v)]
        if isinstance(node, list):
            return [s for v in node for s in strings(v)]
        return [node] if isinstance(node, str) else []

    texts.append(("the JSON Schema", "\n".join(strings(campaign_json_schema()))))
    texts += [(f"nurture/data/{p.name}", p.read_text(encoding="utf-8"))
              for p in sorted((ROOT / "nurture" / "data").iterdir()) if p.suffix in (".txt", ".yaml", ".csv")]
    for example in ("ec-payments", "industry-news"):
        texts += [(f"init --example {example}: {f.path}", f.content.decode()) for f in
                  project_files(example=example, secret=b"x") if f.mode != 0o600]
    return texts


@pytest.mark.parametrize("where, text", [pytest.param(w, t, id=w) for w, t in _user_facing_texts()])
def test_pointers_to_the_docs_work_once_installed(where: str, text: str) -> None:
    from nurture.guides import find_guide

    assert not _FILE_POINTER.findall(text), f"{where} points at a file an installed nurture lacks; " \
        "say `nurture docs TOPIC` instead"
    for topic in _DOCS_COMMAND.findall(text):
        find_guide(topic)  # raises for a topic that is no guide


def test_the_campaign_files_and_schema_point_at_the_campaign_guide() -> None:
    from nurture.campaigns import campaign_json_schema

    assert "`nurture docs campaigns`" in campaign_json_schema()["description"]
    for path in (ROOT / "campaigns").glob("*.yaml"):
        assert "nurture docs campaigns" in path.read_text(encoding="utf-8"), path.name
    assert "nurture docs config" in (ROOT / "config.yaml").read_text(encoding="utf-8")
