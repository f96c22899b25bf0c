"""Build hook: ship the repository's examples inside the package.

The example campaigns, their templates (with the base layout) and the commented
config.yaml are edited in one place, the repository's top-level ``campaigns/``,
``templates/`` and ``config.yaml``. A built wheel carries a copy of them as package data
under ``nurture/examples/``, which ``nurture init`` and ``nurture demo`` use once nurture
is installed; an editable install reads the checkout's own folders instead
(``nurture.project.examples_root``). The user guides, ``docs/*.md`` and README.md, go
the same way to ``nurture/docs/`` for ``nurture docs`` (``nurture.guides.docs_root``).
Everything else is configured in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
EXAMPLES = ("campaigns", "templates", "config.yaml")
GUIDES = (*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md")


class BuildWithExamples(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "nurture" / "examples"
        target.mkdir(parents=True, exist_ok=True)
        for name in EXAMPLES:
            src, dst = ROOT / name, target / name
            if src.is_dir():
                shutil.rmtree(dst, ignore_errors=True)
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))
            else:
                shutil.copy2(src, dst)
        if not (ROOT / "docs" / "campaigns.md").is_file():
            raise RuntimeError("docs/*.md is missing: the wheel ships the guides for `nurture docs`")
        docs = Path(self.build_lib) / "nurture" / "docs"
        docs.mkdir(parents=True, exist_ok=True)
        for src in GUIDES:
            shutil.copy2(src, docs / src.name)


setup(cmdclass={"build_py": BuildWithExamples})
