"""Shared fixtures: a real SMTP sink on loopback, a real SQLite file, settings."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from support import make_campaign

from nurture.config import Settings, settings_from_dict
from nurture.sink import Sink, start_sink

ROOT = Path(__file__).resolve().parent.parent

# --backend sqlite|postgres, the throwaway PostgreSQL cluster, pg_url, @pytest.mark.sqlite_only
pytest_plugins = ["pg_fixtures"]

#: A fixed clock for tests: a Tuesday, 10:00 UTC (19:00 in Tokyo).
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture
def db_path(tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A SQLite file in tmp_path, or with ``--backend postgres`` a fresh PostgreSQL database URL."""
    if request.config.getoption("--backend") == "postgres":
        return request.getfixturevalue("pg_url")
    return str(tmp_path / "nurture.db")


@pytest.fixture
def store(db_path: str):
    """A synchronous store on ``db_path``, closed after the test."""
    from nurture.store import open_store

    s = open_store(db_path)
    yield s
    s.close()


@pytest.fixture
def make_settings(tmp_path: Path, db_path: str):
    """Settings built from a dict on top of the shipped config.yaml's defaults."""

    def make(*, env: dict[str, str] | None = None, **overrides) -> Settings:
        data = {
            "database": db_path,
            "campaigns_dir": str(ROOT / "campaigns"),
            "templates_dir": str(ROOT / "templates"),
            "sender": {"from": "Acme Payments <hello@acme.example>",
                       "postal_address": "1-2-3 Marunouchi, Tokyo"},
            "reps": [
                {"id": "aoki", "name": "Aoki Yui", "email": "aoki@acme.example",
                 "timezone": "Asia/Tokyo", "hours": "09:00-18:00", "territory": ["JP"]},
                {"id": "baker", "name": "Sam Baker", "email": "baker@acme.example",
                 "timezone": "Europe/London", "hours": "09:00-17:30", "territory": ["GB"]},
            ],
        }
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        return settings_from_dict(data, env={"NURTURE_SECRET": "test-secret", **(env or {})})

    return make


@pytest.fixture
def settings(make_settings) -> Settings:
    return make_settings()


@pytest.fixture
def campaigns():
    """The follow-up tests' campaign (``support.make_campaign``) by id."""
    return {"ec-payments": make_campaign()}


@pytest.fixture
async def smtp_sink():
    """A real aiosmtpd server on 127.0.0.1:<free port>; ``.sink.messages`` holds what arrived."""
    running = await start_sink(Sink())
    try:
        yield running
    finally:
        await running.aclose()
