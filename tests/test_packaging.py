"""The built wheel carries what a project needs: installed (not editable) into a fresh venv,
the `nurture` command works from an empty folder, away from this checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: What a build needs from the checkout (setup.py copies the examples into the package).
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "config.yaml", "nurture", "campaigns",
           "templates", "docs")


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, \
        f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with the wheel built from a clean copy of the sources; its dependencies are this
    interpreter's (added to the venv's path), so nothing is downloaded but the build backend."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, src / name)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(base / "dist"), str(src)],
         cwd=base, env=env, timeout=300)
    (wheel,) = (base / "dist").glob("nurture-*.whl")
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=base, env=env)
    python = venv / "bin" / "python"
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                   cwd=base, env=env).stdout.strip()
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(purelib, "_nurture_test_deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
          str(wheel)], cwd=base, env=env, timeout=300)
    return venv


def _env() -> dict[str, str]:
    drop = {"PYTHONPATH", "NURTURE_SECRET", "NURTURE_CONFIG", "NURTURE_DATABASE", "NURTURE_OLD_KEYS"}
    return {**{k: v for k, v in os.environ.items() if k not in drop}, "COLUMNS": "120"}


@pytest.mark.slow
def test_installed_command_runs_init_validate_preview_from_an_empty_folder(installed: Path, tmp_path: Path) -> None:
    nurture = str(installed / "bin" / "nurture")
    where = _run([str(installed / "bin" / "python"), "-c", "import nurture; print(nurture.__file__)"],
                 cwd=tmp_path, env=_env()).stdout.strip()
    assert where.startswith(str(installed)), f"imported nurture from {where}, not the installed wheel"
    out = _run([nurture, "init", "proj"], cwd=tmp_path, env=_env()).stdout
    assert "Next:" in out and "nurture validate" in out
    project = tmp_path / "proj"
    assert (project / "templates" / "base.html").is_file() and (project / ".nurture" / "secret").is_file()
    assert "ok: 1 campaign" in _run([nurture, "validate"], cwd=project, env=_env()).stdout
    preview = _run([nurture, "preview", "ec-payments", "case-study"], cwd=project, env=_env()).stdout
    assert "wrote preview/ec-payments-case-study.eml" in preview.replace("\n", " ")
    assert (project / "preview" / "ec-payments-case-study.html").read_text().count("/c/") >= 2
    schema = _run([nurture, "schema"], cwd=tmp_path, env=_env()).stdout
    assert '"$schema"' in schema


@pytest.mark.slow
def test_installed_demo_runs_in_an_empty_folder(installed: Path, tmp_path: Path) -> None:
    proc = _run([str(installed / "bin" / "nurture"), "demo", "--exit", "--speed", "1000000", "--contacts", "12",
                 "--tracker-port", "0", "--reps-port", "0"], cwd=tmp_path, env=_env(), timeout=240)
    assert "call-now task(s) waiting for reps" in " ".join(proc.stdout.split()), proc.stdout
    assert (tmp_path / "nurture-demo" / "nurture.db").is_file()
    assert list((tmp_path / "nurture-demo" / "mail").glob("*.eml"))


@pytest.mark.slow
def test_installed_docs_command_reads_the_shipped_guides(installed: Path, tmp_path: Path) -> None:
    nurture = str(installed / "bin" / "nurture")
    guide = _run([nurture, "docs", "campaigns"], cwd=tmp_path, env=_env()).stdout
    lines = guide.splitlines()
    assert "Writing a campaign" in lines[0] and len(lines) > 100
    assert max(len(line) for line in lines) <= 80  # COLUMNS is 120: a guide is set at 80
    assert "see nurture docs inbound" in " ".join(guide.split()) and ".md)" not in guide
    path = Path(_run([nurture, "docs", "campaigns", "--path"], cwd=tmp_path, env=_env()).stdout.strip())
    assert path.is_relative_to(installed) and path.name == "campaigns.md"
    listing = _run([nurture, "docs"], cwd=tmp_path, env=_env()).stdout
    assert {"campaigns", "templates", "config", "readme"} <= {line.split()[0] for line in listing.splitlines()[1:-1]}
    assert "Configuration reference" in _run([nurture, "docs", "config"], cwd=tmp_path, env=_env()).stdout
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_installed_japanese_example_renders_with_the_catalogue(installed: Path, tmp_path: Path) -> None:
    nurture = str(installed / "bin" / "nurture")
    _run([nurture, "init", "proj", "--example", "ec-payments-ja"], cwd=tmp_path, env=_env())
    project = tmp_path / "proj"
    assert "ok: 1 campaign" in _run([nurture, "validate"], cwd=project, env=_env()).stdout
    _run([nurture, "preview", "ec-payments-ja", "case-study"], cwd=project, env=_env())
    html = (project / "preview" / "ec-payments-ja-case-study.html").read_text(encoding="utf-8")
    assert '<html lang="ja">' in html and "ワンクリックで配信を停止できます" in html and "佐藤 結衣 様" in html
