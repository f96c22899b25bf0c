"""``nurture init``: start a project of your own."""

from __future__ import annotations

import os
from pathlib import Path

import click
from rich.markup import escape

from nurture.cli.app import console, handle_errors, main
from nurture.config import environment_secret
from nurture.project import DEFAULT_EXAMPLE, EXAMPLES, SAMPLE_CONTACTS, init_project, new_secret


@main.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--example", type=click.Choice(EXAMPLES), default=DEFAULT_EXAMPLE, show_default=True,
              help="Which shipped example campaign to start from.")
@click.option("--force", is_flag=True, help="Add only the files that are missing (never overwrites one).")
@handle_errors
def init_command(directory: Path, example: str, force: bool) -> None:
    """Create a working project in DIRECTORY (default: this folder).

    Writes a commented config.yaml (every key with its default, mail going to a local SMTP
    sink on 127.0.0.1:1025), an example campaign in campaigns/ with its templates and the
    base layout in templates/, the campaign JSON Schema in schema/, a sample contacts.csv,
    a .gitignore, and a random signing secret in .nurture/secret (mode 0600, named by
    tracking.secret_file) unless NURTURE_SECRET is set in the environment. Refuses to
    overwrite existing files; --force adds only the missing ones.
    """
    in_env = environment_secret()
    result = init_project(folder=directory, example=example, force=force,
                          secret=None if in_env else new_secret())
    where = escape(str(directory))
    if result.written:
        console.print(f"[green]✓[/green] nurture project in {where}/ with the {escape(example)} example:")
        for path in result.written:
            console.print(f"  [dim]wrote[/dim] {escape(path)}")
    else:
        console.print(f"nothing to add: {where}/ already has every file of a project")
    for path in result.kept:
        console.print(f"  [dim]kept[/dim]  {escape(path)} [dim](already there)[/dim]")
    if result.secret_file is not None:
        console.print(f"signing secret: {escape(result.secret_file)} (only you can read it; config.yaml "
                      "names it in tracking.secret_file; keep it out of version control)")
    else:
        console.print(f"signing secret: from {in_env} in the environment (config.yaml names it "
                      "in tracking.secret_env)")
    cd = "" if directory.resolve() == Path.cwd().resolve() else f"cd {_quote(str(directory))} && "
    console.print("\nNext:")
    console.print(f"  {cd}nurture validate", markup=False, soft_wrap=True)
    console.print(f"  nurture preview {result.example} {result.first_step}", markup=False, soft_wrap=True)
    console.print(f"  nurture contacts import {SAMPLE_CONTACTS}", markup=False, soft_wrap=True)
    console.print(f"[dim]then `nurture enroll {escape(result.example)} --all` and `nurture run` (with an SMTP "
                  "sink such as `python -m aiosmtpd -n -l 127.0.0.1:1025` running)[/dim]", soft_wrap=True)
    console.print("[dim]guides: `nurture docs` lists them; `nurture docs campaigns` explains every key[/dim]",
                  soft_wrap=True)


def _quote(path: str) -> str:
    import shlex

    return shlex.quote(path) if os.sep in path or " " in path else path
