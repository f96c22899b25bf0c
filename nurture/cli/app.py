"""The ``nurture`` command group and what every command shares: settings, errors, output.

The CLI is a thin adapter: commands call the library and turn :class:`NurtureError`
into a message on stderr and exit code 1 (2 for usage errors). Never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ParamSpec, TypeVar

import click

from nurture import __version__
from nurture.cli.term import SafeConsole
from nurture.config import DEFAULT_CONFIG, Settings, load_settings, outside_project, require_real_secret
from nurture.errors import CampaignErrors, ConfigError, NurtureError

P = ParamSpec("P")
R = TypeVar("R")

console = SafeConsole(highlight=False)
err_console = SafeConsole(stderr=True, highlight=False, soft_wrap=True)  # one line per error, for logs and grep


#: Commands that need no project: they write none of its data, or make their own workspace.
NO_PROJECT_COMMANDS = frozenset({"init", "demo", "docs", "validate", "preview", "schema", "simulate", "db"})


class State:
    """Per-invocation state: the config path, and the settings read from it once."""

    def __init__(self, config: str | None, command: str | None = None) -> None:
        self.config = config
        self.command = command
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            settings = load_settings(self.config)
            if settings.source is not None and Path(settings.source).resolve() != Path(DEFAULT_CONFIG).resolve():
                # Said on stderr, so --json and --csv output stays clean.
                err_console.print(f"[dim]config: {_escape(settings.source)}[/dim]")
            for warning in settings.warnings:
                err_console.print(f"[yellow]warning[/yellow] {_escape(warning)}")
            if self.command not in NO_PROJECT_COMMANDS and outside_project(settings):
                raise no_project_error()
            self._settings = settings
        return self._settings


def no_project_error() -> ConfigError:
    """What a command says when it runs where there is no config file and no project."""
    return ConfigError(f"no {DEFAULT_CONFIG} in {Path.cwd()} and no project here: `nurture init` starts one, "
                       "or point at yours with --config FILE (or NURTURE_CONFIG); nothing was created")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config", metavar="FILE", envvar="NURTURE_CONFIG",
              help="Config file (default: ./config.yaml; also NURTURE_CONFIG).")
@click.option("--log-format", "log_format", type=click.Choice(["text", "json"]), default="text",
              envvar="NURTURE_LOG_FORMAT", show_default=True,
              help="Logs on stderr as text, or as one JSON object a line (also NURTURE_LOG_FORMAT).")
@click.version_option(__version__, prog_name="nurture")
@click.pass_context
def main(ctx: click.Context, config: str | None, log_format: str) -> None:
    """nurture: email nurturing campaigns as code, with click-triggered follow-up.

    Marketers write campaigns in campaigns/*.yaml and templates/; nurture sends them,
    tracks clicks, and turns real interest into "call now" tasks for reps.
    Guides: `nurture docs` lists them, `nurture docs campaigns` is the place to start.
    """
    from nurture.logs import configure

    configure(log_format)
    ctx.obj = State(config, ctx.invoked_subcommand)


def settings_of(ctx: click.Context) -> Settings:
    state = ctx.find_object(State)
    if state is None:  # a command invoked outside the `nurture` group
        raise RuntimeError("nurture commands run inside the nurture group")
    return state.settings


def project_settings(ctx: click.Context) -> Settings:
    """The settings, for a command that needs no database but reads the project's campaigns
    (``preview``, ``simulate``, ``validate`` without PATHS): outside a project it says so
    instead of "no campaign ... (known: none)"."""
    settings = settings_of(ctx)
    if outside_project(settings):
        raise no_project_error()
    return settings


def production_settings(ctx: click.Context, command: str) -> Settings:
    """The settings, for a command that sends mail or answers links: never with the
    built-in development secret (see :func:`nurture.config.require_real_secret`)."""
    settings = settings_of(ctx)
    require_real_secret(settings, command=command)
    return settings


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop`` while inside (a clean drain instead of an abrupt exit).
    Outside the main thread (embedded, tests) signals stay as they are."""
    loop = asyncio.get_running_loop()
    handled = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
        except (RuntimeError, ValueError):
            pass
    try:
        yield
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn nurture's errors into a message and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except CampaignErrors as e:
            for err in e.errors:
                err_console.print(f"[red]error[/red] {_escape(str(err))}")
            sys.exit(1)
        except NurtureError as e:
            err_console.print(f"[red]error[/red] {_escape(str(e))}")
            sys.exit(1)
        except KeyboardInterrupt:
            err_console.print("interrupted")
            sys.exit(130)

    return wrapper


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
