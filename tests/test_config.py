from pathlib import Path

import pytest

from nurture.config import load_settings
from nurture.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.yaml"
    p.write_text(text)
    return p


def test_shipped_config_loads(root):
    s = load_settings(root / "config.yaml", env={})
    assert s.smtp.rate.per_second == 20
    assert [r.id for r in s.reps] == ["aoki", "baker", "garcia"]
    assert s.database.endswith("nurture.db")


def test_unknown_key_names_key_and_line(tmp_path):
    p = write(tmp_path, "database: x.db\nsmtp:\n  host: a\n  prot: 25\n")
    with pytest.raises(ConfigError) as e:
        load_settings(p, env={})
    assert f"{p}:4:" in str(e.value) and "smtp.prot" in str(e.value) and "unknown key" in str(e.value)


def test_bad_rate_and_tls(tmp_path):
    p = write(tmp_path, "smtp:\n  rate: lots\n")
    with pytest.raises(ConfigError, match=r":2:\d+: smtp.rate: \"lots\" is not a rate"):
        load_settings(p, env={})
    p = write(tmp_path, "smtp:\n  tls: maybe\n")
    with pytest.raises(ConfigError, match="smtp.tls"):
        load_settings(p, env={})


def test_wrong_type(tmp_path):
    p = write(tmp_path, "smtp:\n  port: twenty-five\n")
    with pytest.raises(ConfigError, match="smtp.port: must be a whole number"):
        load_settings(p, env={})


def test_rep_time_zone_checked(tmp_path):
    p = write(tmp_path, "reps:\n  - {id: a, name: A, email: a@x.example, timezone: Nowhere/Land}\n")
    with pytest.raises(ConfigError, match=r"reps\[0\].timezone"):
        load_settings(p, env={})


def test_secret_and_password_come_from_environment(tmp_path):
    p = write(tmp_path, "smtp:\n  password_env: SMTP_PW\ntracking:\n  secret_env: SEC\n  key_id: k2\n")
    s = load_settings(p, env={"SMTP_PW": "pw", "SEC": "s3cret", "NURTURE_OLD_KEYS": "k1=old"})
    assert s.smtp.password == "pw"
    assert s.tracking.keys == {"k2": b"s3cret", "k1": b"old"} and s.tracking.current_key == "k2"
    with pytest.raises(ConfigError, match="SMTP_PW is not set"):
        load_settings(p, env={})


def test_nurture_config_env_selects_file(tmp_path):
    p = write(tmp_path, "database: other.db\n")
    s = load_settings(env={"NURTURE_CONFIG": str(p)})
    assert s.database == str(tmp_path / "other.db")
    with pytest.raises(ConfigError, match="not found"):
        load_settings(env={"NURTURE_CONFIG": str(tmp_path / "missing.yaml")})


def test_yaml_syntax_error_has_position(tmp_path):
    p = write(tmp_path, "smtp:\n  host: [a,\n")
    with pytest.raises(ConfigError, match=rf"{p}:\d+:\d+: YAML syntax error"):
        load_settings(p, env={})
