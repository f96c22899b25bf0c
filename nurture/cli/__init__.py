"""The ``nurture`` command. Commands live in submodules by area and register on :data:`main`."""

from __future__ import annotations

import importlib

from nurture.cli.app import main

for _module in ("init", "campaigns", "contacts", "people", "send", "run", "tracking", "reps", "demo", "db",
                "inbound", "docs"):
    try:
        importlib.import_module(f"nurture.cli.{_module}")
    except ModuleNotFoundError as e:  # an area not built yet
        if e.name != f"nurture.cli.{_module}":
            raise

__all__ = ["main"]
