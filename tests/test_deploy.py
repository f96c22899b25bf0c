"""The Dockerfile, .dockerignore and docker-compose.yml in the repository, parsed (no Docker engine here).

An image that runs as root, bakes a secret in, or has no health check would pass a build and
still be wrong; these checks read the files the way Docker does and fail on each of those.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SECRETISH = re.compile(r"SECRET|PASSWORD|TOKEN|_KEY\b", re.I)


def instructions(text: str) -> list[tuple[str, str]]:
    """``[(INSTRUCTION, arguments)]``: comments dropped, ``\\`` continuations joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


DOCKERFILE = instructions((ROOT / "Dockerfile").read_text(encoding="utf-8"))


def args_of(name: str) -> list[str]:
    return [a for i, a in DOCKERFILE if i == name]


def test_dockerfile_instructions_are_known():
    known = {"FROM", "ENV", "WORKDIR", "COPY", "RUN", "USER", "EXPOSE", "HEALTHCHECK", "STOPSIGNAL",
             "ENTRYPOINT", "CMD", "ARG", "LABEL", "VOLUME"}
    assert {i for i, _ in DOCKERFILE} <= known
    assert DOCKERFILE[0][0] == "FROM"


def test_base_image_is_python_3_11_or_newer():
    [base] = args_of("FROM")
    m = re.fullmatch(r"python:3\.(\d+)(-[\w.-]+)?", base)
    assert m and int(m.group(1)) >= 11, base


def test_runs_as_a_user_that_is_not_root():
    users = args_of("USER")
    assert users and users[-1] not in ("root", "0") and not users[-1].startswith(("root:", "0:"))
    names = [i for i, _ in DOCKERFILE]
    last_user = len(names) - 1 - names[::-1].index("USER")
    assert "RUN" not in names[last_user:], "nothing runs as root after the last USER"
    assert any("useradd" in a and users[-1] in a for a in args_of("RUN")), "the user is created in the image"


def test_healthcheck_asks_healthz():
    [check] = args_of("HEALTHCHECK")
    assert "/healthz" in check and "CMD" in check
    assert re.search(r"--interval=\d+s", check) and re.search(r"--timeout=\d+s", check)
    cmd = check[check.index("CMD") + 3:].strip()
    assert json.loads(cmd)[0] == "python"  # exec form: no shell needed in the image


def test_no_secret_is_baked_in():
    for name in ("ENV", "ARG", "LABEL"):
        for a in args_of(name):
            assert not SECRETISH.search(a), f"{name} {a}"
    for a in args_of("COPY"):
        assert ".nurture" not in a and ".env" not in a and not a.startswith(". "), a
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".nurture", "*.db", ".git", "*.env"} <= set(ignored)


def test_entrypoint_is_nurture_with_json_logs():
    [entry] = args_of("ENTRYPOINT")
    assert json.loads(entry) == ["nurture", "--log-format", "json"]
    assert json.loads(args_of("CMD")[-1]) == ["run"]
    assert {"8080", "8081"} <= set(" ".join(args_of("EXPOSE")).split())


COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


def test_compose_runs_nurture_with_postgresql():
    services = COMPOSE["services"]
    assert set(services) == {"nurture", "db"}
    db, app = services["db"], services["nurture"]
    assert re.fullmatch(r"postgres:\d+(\.\d+)?(-[\w.]+)?", db["image"])
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert app["build"] == "." and app["depends_on"]["db"]["condition"] == "service_healthy"
    url = app["environment"]["NURTURE_DATABASE"]
    assert url.startswith("postgresql://") and "@db:" in url
    assert ":" not in url.split("//", 1)[1].split("@", 1)[0], "no password in the database URL"
    assert "pgdata" in COMPOSE["volumes"] and any(v.startswith("pgdata:") for v in db["volumes"])


def test_compose_takes_secrets_from_a_file_not_from_itself():
    for name, service in COMPOSE["services"].items():
        env = service.get("environment") or {}
        assert isinstance(env, dict), f"{name}: environment as a mapping"
        for key, val in env.items():
            assert not SECRETISH.search(key), f"{name}: {key} is set in the compose file ({val!r})"
        assert service["env_file"] == [".nurture/docker.env"], name
    from nurture.project import GITIGNORE

    assert ".nurture/" in GITIGNORE.split()  # a project's .gitignore (nurture init) keeps the env file out of git


def test_compose_mounts_the_project_read_only_and_keeps_the_reps_app_local():
    app = COMPOSE["services"]["nurture"]
    mounts = {v.split(":")[1]: v for v in app["volumes"]}
    assert {"/srv/nurture/config.yaml", "/srv/nurture/campaigns", "/srv/nurture/templates"} <= set(mounts)
    assert all(v.endswith(":ro") for v in mounts.values())
    assert app["environment"]["NURTURE_CONFIG"] == "/srv/nurture/config.yaml"
    assert "8080:8080" in app["ports"] and "127.0.0.1:8081:8081" in app["ports"]


def test_the_image_builds_from_every_source_the_wheel_needs():
    from test_packaging import SOURCES  # what a wheel build reads from the checkout

    copied = {src.rstrip("/") for a in args_of("COPY") for src in a.split()[:-1]}
    assert set(SOURCES) <= copied, f"the Dockerfile does not COPY {sorted(set(SOURCES) - copied)}"
    ignored = set((ROOT / ".dockerignore").read_text(encoding="utf-8").split())
    assert not ignored & set(SOURCES), "the build context leaves out a source the wheel needs"
    assert "docs/img" in ignored  # the guides go in, their screenshots need not
