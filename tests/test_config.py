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


def test_inbound_transports(tmp_path):
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    der = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    p = write(tmp_path, """inbound:
  return_path: bounces@Bounce.Acme.Example
  reply_domain: reply.acme.example
  smtp: {listen: "0.0.0.0:2525"}
  imap: {host: imap.gmail.com, username: sales@acme.example, password_env: IMAP_PW, poll: 2m}
  ses: {topic_arns: ["arn:aws:sns:us-east-1:123456789012:ses-events"]}
  sendgrid: {public_key_env: SG_KEY}
""")
    s = load_settings(p, env={"IMAP_PW": "app-password", "SG_KEY": base64.b64encode(der).decode()})
    assert s.inbound.smtp.domains == ("bounce.acme.example", "reply.acme.example")
    assert s.inbound.imap is not None and s.inbound.imap.password == "app-password"
    assert (s.inbound.imap.port, s.inbound.imap.tls, s.inbound.imap.poll_seconds) == (993, "tls", 120)
    assert "app-password" not in repr(s.inbound.imap)
    assert s.inbound.ses is not None and s.inbound.ses.confirm_subscriptions
    assert s.inbound.sendgrid is not None and s.inbound.sendgrid.public_key == der
    with pytest.raises(ConfigError, match="IMAP_PW is not set"):
        load_settings(p, env={"SG_KEY": base64.b64encode(der).decode()})


@pytest.mark.parametrize("text, error", [
    ('inbound:\n  smtp: {listen: "0.0.0.0:25"}\n', "needs domains"),
    ('inbound:\n  smtp: {listen: "0.0.0.0:25", domains: ["a@b.example"]}\n', "is not a domain"),
    ("inbound:\n  imap: {host: h, username: u}\n", "needs password_env"),
    ("inbound:\n  imap: {host: h, username: u, password_env: P, tls: starttls}\n", "not an IMAP TLS mode"),
    ("inbound:\n  imap: {host: h, username: u, password_env: P, flag: '\\\\Seen'}\n", "not an IMAP keyword"),
    ("inbound:\n  ses: {topic_arns: []}\n", "need topic_arns"),
    ("inbound:\n  ses: {topic_arns: [my-topic]}\n", "not an SNS topic ARN"),
    ("inbound:\n  sendgrid: {public_key: 'not base64!'}\n", "inbound.sendgrid.public_key"),
])
def test_inbound_transport_errors(tmp_path, text, error):
    with pytest.raises(ConfigError, match=error):
        load_settings(write(tmp_path, text), env={"P": "x"})
