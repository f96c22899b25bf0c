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


def test_secret_file_is_read_and_beats_the_environment(tmp_path):
    (tmp_path / ".nurture").mkdir()
    secret = tmp_path / ".nurture" / "secret"
    secret.write_text("from-a-file\n")
    secret.chmod(0o600)
    p = write(tmp_path, "tracking:\n  secret_file: .nurture/secret\n")
    s = load_settings(p, env={"NURTURE_SECRET": "from-env"})
    assert s.tracking.keys == {"k1": b"from-a-file"}
    assert s.tracking.secret_origin == f"file {secret}" and not s.tracking.development_secret
    assert s.warnings == ()


def test_secret_file_readable_by_others_is_a_warning(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s3cret")
    secret.chmod(0o644)
    p = write(tmp_path, "tracking:\n  secret_file: secret\n")
    s = load_settings(p, env={})
    assert s.tracking.keys["k1"] == b"s3cret"
    assert len(s.warnings) == 1
    assert f"secret file {secret} can be read by other users (mode 0644)" in s.warnings[0]
    assert f"chmod 600 {secret}" in s.warnings[0]


def test_missing_or_empty_secret_file_names_the_key(tmp_path):
    p = write(tmp_path, "tracking:\n  secret_file: nowhere\n")
    with pytest.raises(ConfigError, match=r"tracking.secret_file: secret file not found: .*nowhere"):
        load_settings(p, env={})
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "empty").chmod(0o600)
    p = write(tmp_path, "tracking:\n  secret_file: empty\n")
    with pytest.raises(ConfigError, match="is empty"):
        load_settings(p, env={})


def test_development_secret_only_when_nothing_is_set(tmp_path):
    from nurture.config import DEVELOPMENT_SECRET

    s = load_settings(write(tmp_path, "database: x.db\n"), env={})
    assert s.tracking.development_secret and s.tracking.keys == {"k1": DEVELOPMENT_SECRET}
    s = load_settings(write(tmp_path, "database: x.db\n"), env={"NURTURE_SECRET": "real"})
    assert not s.tracking.development_secret and s.tracking.secret_origin == "env NURTURE_SECRET"


def test_require_real_secret_names_the_variable_and_the_key(tmp_path):
    from nurture.config import require_real_secret

    p = write(tmp_path, "tracking:\n  secret_env: ACME_SECRET\n")
    with pytest.raises(ConfigError) as e:
        require_real_secret(load_settings(p, env={}), command="serve")
    msg = str(e.value)
    assert "nurture serve will not start with the built-in development signing secret" in msg
    assert "ACME_SECRET" in msg and f"tracking.secret_file in {p}" in msg
    require_real_secret(load_settings(p, env={"ACME_SECRET": "x"}), command="serve")  # no error


def test_key_rotation_with_files(tmp_path):
    """A new key from a file signs; the retired one, from another file, still verifies."""
    from nurture.config import settings_from_dict
    from nurture.signing import Signer

    old = settings_from_dict({}, env={"NURTURE_SECRET": "old-secret"})
    token = Signer.from_settings(old.tracking).sign("click", 7, 9)
    for name, text in (("new", "new-secret"), ("old_keys", "k1=old-secret\n")):
        (tmp_path / name).write_text(text)
        (tmp_path / name).chmod(0o600)
    p = write(tmp_path, "tracking:\n  secret_file: new\n  key_id: k2\n  old_keys_file: old_keys\n")
    new = load_settings(p, env={})
    assert new.tracking.keys == {"k2": b"new-secret", "k1": b"old-secret"}
    signer = Signer.from_settings(new.tracking)
    assert signer.verify("click", token) == (7, 9)
    assert signer.sign("click", 7, 9) != token


def test_smtp_password_dkim_key_and_webhook_secret_from_files(tmp_path):
    for name, text in (("pw", "smtp-pw\n"), ("hook", "hook-secret"), ("dkim.key", "-----BEGIN KEY-----")):
        (tmp_path / name).write_text(text)
        (tmp_path / name).chmod(0o600)
    p = write(tmp_path, "smtp:\n  password_file: pw\n"
                        "dkim: {selector: s1, domain: acme.example, private_key_file: dkim.key}\n"
                        "webhooks:\n  - {url: 'https://hooks.example/x', secret_file: hook}\n")
    s = load_settings(p, env={})
    assert s.smtp.password == "smtp-pw"
    assert s.dkim is not None and s.dkim.private_key == b"-----BEGIN KEY-----"
    assert s.webhooks[0].secret == b"hook-secret"
    assert s.warnings == ()


def test_a_named_secret_variable_that_is_unset_is_an_error(tmp_path):
    p = write(tmp_path, "webhooks:\n  - {url: 'https://hooks.example/x', secret_env: HOOK_SECRET}\n")
    with pytest.raises(ConfigError, match=r"webhooks\[0\].secret_env: environment variable HOOK_SECRET is not set"):
        load_settings(p, env={})
    assert load_settings(p, env={"HOOK_SECRET": "h"}).webhooks[0].secret == b"h"
    p = write(tmp_path, "smtp: {password_env: PW, password_file: pw}\n")
    with pytest.raises(ConfigError, match="smtp.password_env or smtp.password_file, not both"):
        load_settings(p, env={"PW": "x"})


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


def test_mailgun_signing_key_from_the_environment_or_a_file(tmp_path):
    p = write(tmp_path, "inbound:\n  mailgun: {signing_key_env: MG_KEY}\n")
    s = load_settings(p, env={"MG_KEY": " key-0123456789abcdef\n"})
    assert s.inbound.mailgun is not None and s.inbound.mailgun.signing_key == b"key-0123456789abcdef"
    assert s.inbound.mailgun.tolerance_seconds == 900 and "0123456789" not in repr(s.inbound.mailgun)
    key = tmp_path / "mailgun-key"
    key.write_text("key-from-file\n")
    key.chmod(0o600)
    p = write(tmp_path, "inbound:\n  mailgun: {signing_key_file: mailgun-key, tolerance: 5m}\n")
    s = load_settings(p, env={})
    assert s.inbound.mailgun is not None and s.inbound.mailgun.signing_key == b"key-from-file"
    assert s.inbound.mailgun.tolerance_seconds == 300 and s.warnings == ()
    assert load_settings(write(tmp_path, "inbound: {}\n"), env={}).inbound.mailgun is None


@pytest.mark.parametrize("text, error", [
    ('inbound:\n  smtp: {listen: "0.0.0.0:25"}\n', "needs domains"),
    ('inbound:\n  smtp: {listen: "0.0.0.0:25", domains: ["a@b.example"]}\n', "is not a domain"),
    ("inbound:\n  imap: {host: h, username: u}\n", "needs password_env"),
    ("inbound:\n  imap: {host: h, username: u, password_env: P, tls: starttls}\n", "not an IMAP TLS mode"),
    ("inbound:\n  imap: {host: h, username: u, password_env: P, flag: '\\\\Seen'}\n", "not an IMAP keyword"),
    ("inbound:\n  ses: {topic_arns: []}\n", "need topic_arns"),
    ("inbound:\n  ses: {topic_arns: [my-topic]}\n", "not an SNS topic ARN"),
    ("inbound:\n  sendgrid: {public_key: 'not base64!'}\n", "inbound.sendgrid.public_key"),
    ("inbound:\n  mailgun: {}\n", "need signing_key_env or signing_key_file"),
    ("inbound:\n  mailgun: {signing_key_env: NOT_SET}\n", "NOT_SET is not set"),
    ("inbound:\n  mailgun: {signing_key_env: P, signing_key_file: k}\n", "not both"),
    ("inbound:\n  mailgun: {signing_key_env: P, tolerance: 0}\n", "longer than 0"),
    ("inbound:\n  mailgun: {signing_key_env: P, key: x}\n", "unknown key"),
])
def test_inbound_transport_errors(tmp_path, text, error):
    with pytest.raises(ConfigError, match=error):
        load_settings(write(tmp_path, text), env={"P": "x"})


def test_dkim_with_an_optional_ed25519_key(tmp_path):
    (tmp_path / "rsa.pem").write_text("RSA PEM")
    (tmp_path / "ed.pem").write_text("ED PEM")
    base = "dkim:\n  selector: s1\n  domain: acme.example\n  private_key_file: rsa.pem\n"
    s = load_settings(write(tmp_path, base), env={})
    assert s.dkim is not None and s.dkim.ed25519_key is None and s.dkim.ed25519_selector is None
    s = load_settings(write(tmp_path, base + "  ed25519_selector: e1\n  ed25519_key_file: ed.pem\n"), env={})
    assert (s.dkim.ed25519_selector, s.dkim.ed25519_key, s.dkim.private_key) == ("e1", b"ED PEM", b"RSA PEM")
    s = load_settings(write(tmp_path, base + "  ed25519_selector: e1\n  ed25519_key_env: EDK\n"), env={"EDK": "K"})
    assert s.dkim.ed25519_key == b"K"
    with pytest.raises(ConfigError, match="dkim.ed25519_selector: an Ed25519 key needs its own selector"):
        load_settings(write(tmp_path, base + "  ed25519_key_file: ed.pem\n"), env={})
    with pytest.raises(ConfigError, match="dkim.ed25519_key_file: file not found"):
        load_settings(write(tmp_path, base + "  ed25519_selector: e1\n  ed25519_key_file: nope.pem\n"), env={})


def test_closures_and_rep_calendars(tmp_path):
    from datetime import date

    p = write(tmp_path, "closures: [2026-12-29..2027-01-03, 2027-08-13..2027-08-16, 2027-05-06]\n"
                        "reps:\n"
                        "  - {id: a, name: A, email: a@x.example, timezone: Asia/Tokyo}\n"
                        "  - {id: b, name: B, email: b@x.example, timezone: Asia/Tokyo, calendar: US}\n"
                        "  - {id: c, name: C, email: c@x.example, calendar: none}\n")
    s = load_settings(p, env={})
    assert [str(c) for c in s.closures] == ["2026-12-29..2027-01-03", "2027-08-13..2027-08-16", "2027-05-06"]
    a, b, c = s.reps
    assert a.calendar.country == "JP" and b.calendar.country == "US" and c.calendar.country is None
    assert a.calendar.closed(date(2027, 1, 11)) == "Coming of Age Day (JP)"
    assert c.calendar.closed(date(2027, 1, 1)) == "closure 2026-12-29..2027-01-03"  # closures apply to every rep


def test_bad_closure_and_calendar_are_named(tmp_path):
    p = write(tmp_path, "closures: [2027-01-03..2026-12-29]\n")
    with pytest.raises(ConfigError, match="closures: .*ends before it starts"):
        load_settings(p, env={})
    p = write(tmp_path, "reps:\n  - {id: a, name: A, email: a@x.example, calendar: Atlantis}\n")
    with pytest.raises(ConfigError, match=r"reps\[0\].calendar: .*not a country with a holiday calendar"):
        load_settings(p, env={})
