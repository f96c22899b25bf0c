"""tests/pg_fixtures.py and the PostgreSQL tests: without psycopg the suite still collects."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# As if nurture were installed without its postgres extra: importing psycopg fails.
_HIDE_PSYCOPG = """
import sys

class HidePsycopg:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("psycopg", "psycopg_c", "psycopg_binary", "psycopg_pool"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, HidePsycopg())
import pytest
sys.exit(pytest.main(sys.argv[1:]))
"""


def test_the_suite_collects_without_psycopg() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("NURTURE_TEST_BACKEND", None)
    proc = subprocess.run(
        [sys.executable, "-c", _HIDE_PSYCOPG, "--collect-only", "-q", "-p", "no:cacheprovider", "tests"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    summary = out.strip().splitlines()[-1]
    assert re.fullmatch(r"\d+ tests collected in [\d.]+s", summary), out  # "..., 1 error in" otherwise
    assert "ERROR" not in out, out
    assert re.search(r"(?m)^SKIPPED \[1\] tests/test_pg\.py:\d+: .*psycopg", out), out
    assert "tests/test_db_copy.py::" in out  # collected; its PostgreSQL tests skip when run
