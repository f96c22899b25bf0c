"""Settings: config.yaml and the environment, read once into frozen dataclasses.

This is the only module that reads files or environment variables for settings.
Everything else receives a :class:`Settings` (or a part of it) as an argument.
"""

from __future__ import annotations

import base64
import binascii
import importlib.resources
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from nurture.calendars import NONE_WORDS, Closure, calendar_for, check_country, parse_closures
from nurture.config_checks import check_values
from nurture.errors import ConfigError
from nurture.models import Rep
from nurture.timeutil import Rate, parse_duration, parse_hours, parse_rate, parse_weekdays, zone
from nurture.yamlsrc import Path as YPath
from nurture.yamlsrc import Source, YamlSyntaxError, decode, field_name, load

T = TypeVar("T")

DEFAULT_CONFIG = "config.yaml"
#: Signs tokens when no secret is configured, so a fresh checkout can preview mail. ``run``,
#: ``serve`` and ``send`` refuse it (:func:`require_real_secret`): anyone who has read this
#: line could forge click, open and unsubscribe links.
DEVELOPMENT_SECRET = b"nurture-development-secret-change-me"
TLS_MODES = ("none", "starttls", "tls")
#: The client-address headers a trusted proxy may set (``tracking.proxy_header``).
PROXY_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")
WEBHOOK_EVENTS = ("task.created", "task.overdue", "task.done", "task.attempt", "contact.hot",
                  "contact.unsubscribed", "contact.replied", "contact.bounced", "contact.complained")


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    host: str = "127.0.0.1"
    port: int = 1025
    tls: str = "none"  # none | starttls | tls
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    max_connections: int = 8
    rate: Rate = Rate(20, 1)
    max_attempts: int = 8
    helo: str | None = None


@dataclass(frozen=True, slots=True)
class ScannerList:
    """The text of a scanner list and where it came from (for error messages)."""

    text: str
    source: str


def read_scanner_list(path: str | None) -> ScannerList:
    """The scanner list at ``path``, or the one shipped in ``nurture/data/scanners.txt``."""
    try:
        if path:
            return ScannerList(Path(path).read_text(encoding="utf-8"), path)
        res = importlib.resources.files("nurture").joinpath("data/scanners.txt")
        return ScannerList(res.read_text(encoding="utf-8"), "nurture/data/scanners.txt")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read the scanner list: {e}", field="tracking.scanner_networks") from None


@dataclass(frozen=True, slots=True)
class TrackingSettings:
    base_url: str = "http://127.0.0.1:8080"
    listen: str = "127.0.0.1:8080"
    #: key id → secret bytes; ``current_key`` signs new tokens, every key verifies.
    keys: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    current_key: str = "k1"
    open_tracking: bool = True
    trusted_proxies: tuple[str, ...] = ()
    #: The one header the trusted proxies set with the client's address (one of PROXY_HEADERS).
    proxy_header: str = "X-Forwarded-For"
    settle_seconds: float = 90.0
    group_commit_ms: float = 2.0
    scanner_networks_file: str | None = None
    #: The scanner list's text, read once here (``tracking.scanner_networks`` or the shipped list).
    scanner_list: ScannerList = field(default_factory=lambda: read_scanner_list(None))
    #: Where the current signing secret came from: ``"env NAME"``, ``"file PATH"`` or
    #: ``"development default"``; :attr:`development_secret` is true for the last.
    secret_origin: str = "development default"
    #: The environment variable consulted for the secret (``tracking.secret_env``).
    secret_env: str = "NURTURE_SECRET"

    @property
    def development_secret(self) -> bool:
        """True when tokens would be signed with :data:`DEVELOPMENT_SECRET`."""
        return self.secret_origin == "development default"


@dataclass(frozen=True, slots=True)
class SenderIdentity:
    from_address: str = "nurture <hello@example.com>"
    reply_to: str | None = None
    postal_address: str = ""


@dataclass(frozen=True, slots=True)
class DkimSettings:
    selector: str
    domain: str
    private_key: bytes = field(repr=False)
    #: An optional second signature with Ed25519 (RFC 8463), under its own selector.
    ed25519_selector: str | None = None
    ed25519_key: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Webhook:
    url: str
    events: tuple[str, ...] = WEBHOOK_EVENTS
    secret: bytes = field(default=b"", repr=False)


# -- inbound: the ways bounces, replies and provider events come in ---------------------------

IMAP_TLS_MODES = ("tls", "none")


@dataclass(frozen=True, slots=True)
class InboundSmtpSettings:
    """``inbound.smtp``: the listener that receives mail for the bounce and reply domains."""

    #: ``host:port``; None (the default) runs no listener.
    listen: str | None = None
    #: The only domains RCPT TO is accepted for (lowercase); anything else is a 550.
    domains: tuple[str, ...] = ()
    max_size: int = 10 * 1024 * 1024  # bytes: larger mail gets 552
    max_recipients: int = 100
    hostname: str | None = None


@dataclass(frozen=True, slots=True)
class ImapSettings:
    """``inbound.imap``: a mailbox (such as the team's sales inbox) read for replies and bounces."""

    host: str
    username: str
    password: str = field(repr=False)
    port: int = 993
    tls: str = "tls"  # tls | none
    folder: str = "INBOX"
    poll_seconds: float = 60.0
    idle: bool = True
    #: The keyword set on every message the reader has handed on (never \Seen, never moved).
    flag: str = "$NurtureSeen"
    #: How far back the first scan after a start looks.
    lookback_seconds: float = 14 * 86400.0
    timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class SesSettings:
    """``inbound.ses``: Amazon SES notifications through an SNS topic (``POST /inbound/ses``)."""

    #: Only messages of these topics are accepted (AWS: reject an unexpected TopicArn).
    topic_arns: tuple[str, ...]
    #: Confirm a subscription to an accepted topic by visiting its SubscribeURL.
    confirm_subscriptions: bool = True


@dataclass(frozen=True, slots=True)
class SendGridSettings:
    """``inbound.sendgrid``: SendGrid's signed Event Webhook (``POST /inbound/sendgrid``)."""

    #: The webhook's verification key: DER SubjectPublicKeyInfo bytes (as SendGrid shows it, base64-decoded).
    public_key: bytes
    tolerance_seconds: float = 300.0


@dataclass(frozen=True, slots=True)
class MailgunSettings:
    """``inbound.mailgun``: Mailgun's signed webhooks (``POST /inbound/mailgun``)."""

    #: The HTTP webhook signing key (HMAC-SHA256 over timestamp + token).
    signing_key: bytes = field(repr=False)
    #: Largest distance between the signature's timestamp and now; a token is accepted once.
    tolerance_seconds: float = 900.0


@dataclass(frozen=True, slots=True)
class InboundSettings:
    """What comes back (``inbound:``): VERP addresses, limits, and how replies are handled."""

    #: ``bounces@bounce.acme.example``: the envelope sender becomes ``bounces+<token>@…``.
    return_path: str | None = None
    #: ``reply.acme.example``: Reply-To becomes ``reply+<token>@…`` (nurture forwards the reply).
    reply_domain: str | None = None
    #: Forward replies that came to a ``reply+`` address to the contact's owner rep.
    forward_replies: bool = True
    #: Pause after an out-of-office without a return date.
    ooo_pause: timedelta = timedelta(days=7)
    #: Messages longer than this are recorded as ``unknown`` without being parsed.
    max_bytes: int = 10 * 1024 * 1024
    #: This many soft bounces, the first and the last at least ``soft_bounce_span`` apart, suppress.
    soft_bounce_limit: int = 3
    soft_bounce_span: timedelta = timedelta(days=3)
    #: The ways in besides ``nurture inbound``: SMTP listener, IMAP reader, provider webhooks.
    smtp: InboundSmtpSettings = InboundSmtpSettings()
    imap: ImapSettings | None = None
    ses: SesSettings | None = None
    sendgrid: SendGridSettings | None = None
    mailgun: MailgunSettings | None = None


@dataclass(frozen=True, slots=True)
class RepsAppSettings:
    listen: str = "127.0.0.1:8081"
    base_url: str = "http://127.0.0.1:8081"


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """The Prometheus endpoint ``/metrics`` on the reps' app: off unless a bearer token is
    configured (``metrics.token_env`` / ``metrics.token_file``); database figures are
    recomputed at most every ``cache_seconds``."""

    token: bytes | None = field(default=None, repr=False)
    cache_seconds: float = 5.0

    @property
    def enabled(self) -> bool:
        return self.token is not None


@dataclass(frozen=True, slots=True)
class Settings:
    database: str = "nurture.db"
    campaigns_dir: str = "campaigns"
    templates_dir: str = "templates"
    smtp: SmtpSettings = SmtpSettings()
    tracking: TrackingSettings = TrackingSettings()
    sender: SenderIdentity = SenderIdentity()
    dkim: DkimSettings | None = None
    reps: tuple[Rep, ...] = ()
    reps_app: RepsAppSettings = RepsAppSettings()
    webhooks: tuple[Webhook, ...] = ()
    territories: Mapping[str, str] = field(default_factory=dict)
    inbound: InboundSettings = InboundSettings()
    metrics: MetricsSettings = MetricsSettings()
    #: ``closures:``: company closures (no task due, no nurture mail), inclusive date ranges.
    closures: tuple[Closure, ...] = ()
    #: The config file read; None when there was none (the defaults, no ./config.yaml).
    source: str | None = None
    #: Problems worth telling the operator that do not stop a command (a secret file that
    #: others can read); the CLI prints them on stderr.
    warnings: tuple[str, ...] = ()

    def rep(self, rep_id: str) -> Rep:
        for r in self.reps:
            if r.id == rep_id:
                return r
        raise KeyError(rep_id)


# The schema below drives both validation and the configuration reference in the README.
_SCHEMA: dict[str, Any] = {
    "database": str,
    "campaigns_dir": str,
    "templates_dir": str,
    "smtp": {"host": str, "port": int, "tls": str, "username": str, "password_env": str, "password_file": str,
             "timeout": (int, float), "max_connections": int, "rate": (str, int, float),
             "max_attempts": int, "helo": str},
    "tracking": {"base_url": str, "listen": str, "secret_env": str, "secret_file": str, "key_id": str,
                 "old_keys_env": str, "old_keys_file": str, "open_tracking": bool, "trusted_proxies": list,
                 "proxy_header": str,
                 "settle": (str, int), "group_commit_ms": (int, float),
                 "scanner_networks": str},
    "sender": {"from": str, "reply_to": str, "postal_address": str},
    "dkim": {"selector": str, "domain": str, "private_key_file": str, "private_key_env": str,
             "ed25519_selector": str, "ed25519_key_file": str, "ed25519_key_env": str},
    "reps_app": {"listen": str, "base_url": str},
    "reps": list,
    "webhooks": list,
    "territories": dict,
    "inbound": {
        "return_path": str, "reply_domain": str, "forward_replies": bool, "ooo_pause": (str, int),
        "max_bytes": int, "soft_bounce_limit": int, "soft_bounce_span": (str, int),
        "smtp": {"listen": str, "domains": list, "max_size": int, "max_recipients": int, "hostname": str},
        "imap": {"host": str, "port": int, "tls": str, "username": str, "password_env": str, "password_file": str,
                 "folder": str,
                 "poll": (str, int, float), "idle": bool, "flag": str, "lookback": (str, int, float),
                 "timeout": (int, float)},
        "ses": {"topic_arns": list, "confirm_subscriptions": bool},
        "sendgrid": {"public_key": str, "public_key_env": str, "tolerance": (str, int, float)},
        "mailgun": {"signing_key_env": str, "signing_key_file": str, "tolerance": (str, int, float)},
    },
    "metrics": {"token_env": str, "token_file": str, "cache": str},
    "closures": list,
}
_REP_KEYS = {"id": str, "name": str, "email": str, "timezone": str, "hours": str,
             "days": list, "territory": (str, list), "capacity": int,
             "calendar": str}
_WEBHOOK_KEYS = {"url": str, "events": list, "secret_env": str, "secret_file": str}

#: Every key config.yaml accepts (dotted), for docs and the docs test.
def _dotted(schema: Mapping[str, Any], prefix: str = "") -> list[str]:
    return [k for key, v in schema.items()
            for k in (_dotted(v, f"{prefix}{key}.") if isinstance(v, dict) else [f"{prefix}{key}"])]


CONFIG_KEYS: tuple[str, ...] = tuple(
    _dotted(_SCHEMA)
    + [f"reps[].{k}" for k in _REP_KEYS]
    + [f"webhooks[].{k}" for k in _WEBHOOK_KEYS]
)


def config_path(explicit: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path:
    """``--config`` wins, then ``NURTURE_CONFIG``, then ./config.yaml."""
    return Path(explicit or env.get("NURTURE_CONFIG") or DEFAULT_CONFIG)


def load_settings(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    required: bool = False,
) -> Settings:
    """Read config.yaml (or ``path``) and the environment into :class:`Settings`.

    A missing default file gives the built-in defaults unless ``required``; a file named
    explicitly must exist. Relative paths in the file are resolved against its folder.
    """
    env = dict(os.environ if env is None else env)
    p = config_path(path, env)
    explicit = path is not None or "NURTURE_CONFIG" in env
    if not p.exists():
        if explicit or required:
            raise ConfigError(f"config file not found: {p}")
        return replace(_build(Source(file=str(p), data={}), env, base=Path.cwd()), source=None)
    try:
        src = load(decode(p.read_bytes(), str(p)), str(p))
    except OSError as e:  # a directory, no permission
        raise ConfigError(f"cannot read the config file: {e.strerror or e}", file=str(p)) from None
    except YamlSyntaxError as e:
        raise ConfigError(e.message, file=str(p), line=e.line, column=e.column) from None
    if src.data is None:
        src.data = {}
    return _build(src, env, base=p.resolve().parent)


def settings_from_dict(data: Mapping[str, Any], *, env: Mapping[str, str] | None = None,
                       base: Path | None = None) -> Settings:
    """Build settings from an in-memory mapping (tests, demo)."""
    return _build(Source(file="<config>", data=dict(data)), dict(env or {}), base=base or Path.cwd())


def _build(src: Source, env: Mapping[str, str], *, base: Path) -> Settings:
    b = _Builder(src)
    data = src.data
    if not isinstance(data, dict):
        b.fail((), "the config file must be a mapping of keys")
    b.check_keys(data, _SCHEMA, ())
    smtp_d = b.section(data, "smtp")
    trk_d = b.section(data, "tracking")
    snd_d = b.section(data, "sender")
    app_d = b.section(data, "reps_app")

    def resolve(p: str) -> str:
        if p == ":memory:" or "://" in p:
            return p
        return str(base / p) if not os.path.isabs(p) else p

    database = env.get("NURTURE_DATABASE") or resolve(str(data.get("database", "nurture.db")))
    if "://" not in database and os.path.isdir(database):
        b.fail(("database",), f"{database} is a folder; give the database file's path")
    check_values(b.fail, smtp=smtp_d, tracking=trk_d, reps_app=app_d)

    password = b.secret(("smtp",), smtp_d, "password", env, resolve)
    tls = smtp_d.get("tls", "none")
    if tls not in TLS_MODES:
        b.fail(("smtp", "tls"), f'"{tls}" is not a TLS mode (use none, starttls or tls)')
    rate = b.convert(("smtp", "rate"), parse_rate, smtp_d.get("rate", "20/s"))
    max_conn = smtp_d.get("max_connections", 8)
    if max_conn < 1:
        b.fail(("smtp", "max_connections"), "must be at least 1")
    smtp = SmtpSettings(
        host=smtp_d.get("host", "127.0.0.1"), port=smtp_d.get("port", 1025), tls=tls,
        username=smtp_d.get("username"), password=password.decode() if password is not None else None,
        timeout=float(smtp_d.get("timeout", 30)), max_connections=max_conn, rate=rate,
        max_attempts=smtp_d.get("max_attempts", 8), helo=smtp_d.get("helo"),
    )

    secret_env = str(trk_d.get("secret_env", "NURTURE_SECRET"))
    key_id = str(trk_d.get("key_id", "k1"))
    keys: dict[str, bytes] = {}
    if trk_d.get("secret_file"):
        if "secret_env" in trk_d:
            b.fail(("tracking", "secret_file"), "set tracking.secret_file or tracking.secret_env, not both")
        keys[key_id] = b.read_secret(("tracking", "secret_file"), resolve(str(trk_d["secret_file"])))
        origin = f"file {resolve(str(trk_d['secret_file']))}"
    elif env.get(secret_env):
        keys[key_id] = env[secret_env].strip().encode()
        origin = f"env {secret_env}"
    else:
        keys[key_id] = DEVELOPMENT_SECRET
        origin = "development default"
    old_keys = env.get(str(trk_d.get("old_keys_env", "NURTURE_OLD_KEYS")), "") or ""
    if trk_d.get("old_keys_file"):
        old_keys += "," + b.read_secret(("tracking", "old_keys_file"),
                                        resolve(str(trk_d["old_keys_file"]))).decode()
    for item in old_keys.replace("\n", ",").split(","):
        if "=" in item:
            kid, _, val = item.strip().partition("=")
            keys.setdefault(kid, val.encode())
    settle = b.convert(("tracking", "settle"), parse_duration, trk_d.get("settle", "90s"))
    scanner_file = resolve(trk_d["scanner_networks"]) if trk_d.get("scanner_networks") else None
    tracking = TrackingSettings(
        base_url=str(trk_d.get("base_url", "http://127.0.0.1:8080")).rstrip("/"),
        listen=trk_d.get("listen", "127.0.0.1:8080"), keys=keys, current_key=key_id,
        open_tracking=trk_d.get("open_tracking", True),
        trusted_proxies=tuple(str(x) for x in trk_d.get("trusted_proxies", [])),
        proxy_header=b.proxy_header(trk_d.get("proxy_header", "X-Forwarded-For")),
        settle_seconds=settle.total_seconds(), group_commit_ms=float(trk_d.get("group_commit_ms", 2.0)),
        scanner_networks_file=scanner_file,
        scanner_list=read_scanner_list(scanner_file),
        secret_origin=origin, secret_env=secret_env,
    )
    for addr_key in ("listen",):
        b.convert(("tracking", addr_key), parse_listen, tracking.listen)
    sender = SenderIdentity(
        from_address=snd_d.get("from", "nurture <hello@example.com>"),
        reply_to=snd_d.get("reply_to"), postal_address=snd_d.get("postal_address", ""),
    )
    dkim = None
    if "dkim" in data:
        dk = b.section(data, "dkim")
        key = b.secret(("dkim",), dk, "private_key", env, resolve)
        if not (dk.get("selector") and dk.get("domain") and key):
            b.fail(("dkim",), "needs selector, domain and private_key_file or private_key_env")
        ed_key = None
        if dk.get("ed25519_key_env"):
            ed_key = (env.get(dk["ed25519_key_env"]) or "").encode() or None
            if ed_key is None:
                b.fail(("dkim", "ed25519_key_env"), f"environment variable {dk['ed25519_key_env']} is not set")
        elif dk.get("ed25519_key_file"):
            ep = Path(resolve(dk["ed25519_key_file"]))
            if not ep.exists():
                b.fail(("dkim", "ed25519_key_file"), f"file not found: {ep}")
            ed_key = ep.read_bytes()
        if ed_key is not None and not dk.get("ed25519_selector"):
            b.fail(("dkim", "ed25519_selector"), "an Ed25519 key needs its own selector")
        dkim = DkimSettings(selector=dk["selector"], domain=dk["domain"], private_key=key,
                            ed25519_selector=dk.get("ed25519_selector") if ed_key else None, ed25519_key=ed_key)
    closures = b.convert(("closures",), parse_closures, data.get("closures") or [])
    reps = tuple(b.rep(i, r, closures or ()) for i, r in enumerate(data.get("reps") or []))
    ids = [r.id for r in reps]
    for i, rid in enumerate(ids):
        if rid in ids[:i]:
            b.fail(("reps", i, "id"), f'duplicate rep id "{rid}"')
    webhooks = tuple(b.webhook(i, w, env, resolve) for i, w in enumerate(data.get("webhooks") or []))
    territories = data.get("territories") or {}
    for k, v in territories.items():
        if v not in ids:
            b.fail(("territories", k), f'"{v}" is not a rep id')
    inbound = _transports(b, b.inbound(b.section(data, "inbound")), b.section(data, "inbound"), env, resolve)
    metrics = MetricsSettings()
    if "metrics" in data:
        met_d = b.section(data, "metrics")
        token = b.secret(("metrics",), met_d, "token", env, resolve)
        token = token.strip() if token is not None else None
        if not token:
            b.fail(("metrics",), "needs token_env or token_file: /metrics is never served without a bearer token")
        cache = b.convert(("metrics", "cache"), parse_duration, met_d.get("cache", "5s"))
        metrics = MetricsSettings(token=token, cache_seconds=cache.total_seconds())
    return Settings(
        database=database,
        campaigns_dir=resolve(str(data.get("campaigns_dir", "campaigns"))),
        templates_dir=resolve(str(data.get("templates_dir", "templates"))),
        smtp=smtp, tracking=tracking, sender=sender, dkim=dkim, reps=reps,
        reps_app=RepsAppSettings(listen=app_d.get("listen", "127.0.0.1:8081"),
                                 base_url=str(app_d.get("base_url", "http://127.0.0.1:8081")).rstrip("/")),
        webhooks=webhooks, territories=dict(territories), inbound=inbound, metrics=metrics,
        closures=closures or (), source=src.file, warnings=tuple(b.warnings),
    )


def _transports(b: _Builder, inbound: InboundSettings, d: dict[str, Any], env: Mapping[str, str],
                resolve: Any) -> InboundSettings:
    """``inbound`` with the section's transports: SMTP listener, IMAP reader, SES, SendGrid and Mailgun webhooks."""
    smtp_d = b.section(d, "smtp") if "smtp" in d else {}
    listen = smtp_d.get("listen")
    if listen is not None:
        b.convert(("inbound", "smtp", "listen"), parse_listen, listen)
    # By default the listener takes mail for the bounce domain and the reply domain.
    ours = [x for x in (inbound.return_path.rpartition("@")[2] if inbound.return_path else None,
                        inbound.reply_domain) if x]
    domains = tuple(dict.fromkeys(str(x).strip().lower().rstrip(".") for x in smtp_d.get("domains") or ours))
    if listen is not None and not domains:
        b.fail(("inbound", "smtp"), "an inbound SMTP listener needs domains (or inbound.return_path / reply_domain)")
    for i, dom in enumerate(domains):
        if not dom or "@" in dom or " " in dom:
            b.fail(("inbound", "smtp", "domains", i), f'"{dom}" is not a domain')
    for key in ("max_size", "max_recipients"):
        if smtp_d.get(key, 1) < 1:
            b.fail(("inbound", "smtp", key), "must be at least 1")
    smtp = InboundSmtpSettings(listen=listen, domains=domains,
                               max_size=smtp_d.get("max_size", 10 * 1024 * 1024),
                               max_recipients=smtp_d.get("max_recipients", 100),
                               hostname=smtp_d.get("hostname"))
    imap = None
    if "imap" in d:
        im = b.section(d, "imap")
        for key in ("host", "username"):
            if not im.get(key):
                b.fail(("inbound", "imap"), f"an IMAP reader needs {key}")
        password = b.secret(("inbound", "imap"), im, "password", env, resolve)
        if password is None:
            b.fail(("inbound", "imap"), "an IMAP reader needs password_env or password_file")
        tls = im.get("tls", "tls")
        if tls not in IMAP_TLS_MODES:
            b.fail(("inbound", "imap", "tls"), f'"{tls}" is not an IMAP TLS mode (use tls or none)')
        flag = str(im.get("flag", "$NurtureSeen"))
        if not flag or flag.startswith("\\") or any(c in flag for c in '(){ %*"]\\'):
            b.fail(("inbound", "imap", "flag"), f'"{flag}" is not an IMAP keyword (such as $NurtureSeen)')
        poll = b.convert(("inbound", "imap", "poll"), parse_duration, im.get("poll", "60s"))
        lookback = b.convert(("inbound", "imap", "lookback"), parse_duration, im.get("lookback", "14d"))
        imap = ImapSettings(host=im["host"], username=im["username"], password=password.decode(),
                            port=im.get("port", 993 if tls == "tls" else 143), tls=tls,
                            folder=im.get("folder", "INBOX"), poll_seconds=max(1.0, poll.total_seconds()),
                            idle=im.get("idle", True), flag=flag, lookback_seconds=lookback.total_seconds(),
                            timeout=float(im.get("timeout", 30)))
    ses = None
    if "ses" in d:
        se = b.section(d, "ses")
        arns = tuple(str(a) for a in se.get("topic_arns") or [])
        if not arns:
            b.fail(("inbound", "ses"), "SES notifications need topic_arns: the SNS topics to accept")
        for i, arn in enumerate(arns):
            if not arn.startswith("arn:aws") or arn.count(":") != 5:
                b.fail(("inbound", "ses", "topic_arns", i), f'"{arn}" is not an SNS topic ARN')
        ses = SesSettings(topic_arns=arns, confirm_subscriptions=se.get("confirm_subscriptions", True))
    sendgrid = None
    if "sendgrid" in d:
        sg = b.section(d, "sendgrid")
        text = sg.get("public_key") or (env.get(sg["public_key_env"]) if sg.get("public_key_env") else None)
        if not text:
            b.fail(("inbound", "sendgrid"), "SendGrid's Event Webhook needs public_key or public_key_env")
        der = b.convert(("inbound", "sendgrid", "public_key"), _public_key_der, str(text))
        tolerance = b.convert(("inbound", "sendgrid", "tolerance"), parse_duration, sg.get("tolerance", "5m"))
        sendgrid = SendGridSettings(public_key=der, tolerance_seconds=tolerance.total_seconds())
    mailgun = None
    if "mailgun" in d:
        mg = b.section(d, "mailgun")
        signing_key = b.secret(("inbound", "mailgun"), mg, "signing_key", env, resolve)
        if not signing_key or not signing_key.strip():
            b.fail(("inbound", "mailgun"), "Mailgun's webhooks need signing_key_env or signing_key_file")
        tolerance = b.convert(("inbound", "mailgun", "tolerance"), parse_duration, mg.get("tolerance", "15m"))
        if tolerance.total_seconds() <= 0:
            b.fail(("inbound", "mailgun", "tolerance"), "must be longer than 0 (Mailgun's delays vary: 15m is safe)")
        mailgun = MailgunSettings(signing_key=signing_key.strip(), tolerance_seconds=tolerance.total_seconds())
    return replace(inbound, smtp=smtp, imap=imap, ses=ses, sendgrid=sendgrid, mailgun=mailgun)


def _public_key_der(text: str) -> bytes:
    """A public key as SendGrid shows it (base64 DER), or PEM, → DER bytes."""
    body = "".join(line for line in text.strip().splitlines() if not line.startswith("-----"))
    try:
        der = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not a base64 public key") from None
    if len(der) < 64:
        raise ValueError("is too short for a public key")
    return der


def parse_listen(text: str) -> tuple[str, int]:
    """``"127.0.0.1:8080"`` → ``("127.0.0.1", 8080)``."""
    host, sep, port = str(text).rpartition(":")
    if not sep or not port.isdigit() or not (0 <= int(port) < 65536):
        raise ValueError(f'"{text}" is not host:port')
    return host.strip("[]") or "0.0.0.0", int(port)


def outside_project(settings: Settings) -> bool:
    """True when no config file was found and nothing here looks like a project (no
    campaigns folder, no database file yet): opening the database would quietly create a
    ``nurture.db`` in whatever folder the command happens to run in."""
    if settings.source is not None or "://" in settings.database or settings.database == ":memory:":
        return False
    return not Path(settings.database).exists() and not Path(settings.campaigns_dir).is_dir()


def environment_secret(env: Mapping[str, str] | None = None, *, name: str = "NURTURE_SECRET") -> str | None:
    """``name`` when that environment variable holds a signing secret, else None
    (``nurture init`` then writes a secret file instead)."""
    env = os.environ if env is None else env
    return name if env.get(name, "").strip() else None


def require_real_secret(settings: Settings, *, command: str) -> None:
    """Refuse to go on with :data:`DEVELOPMENT_SECRET`: raise a :class:`ConfigError` that
    names what to set. ``run``, ``serve`` and ``send`` call it before they start."""
    if not settings.tracking.development_secret:
        return
    where = settings.source if settings.source and settings.source != "<config>" else DEFAULT_CONFIG
    raise ConfigError(
        f"nurture {command} will not start with the built-in development signing secret (anyone who "
        f"has read nurture's source could forge click, open and unsubscribe links): set the environment "
        f"variable {settings.tracking.secret_env} to a long random value, or name a file holding one with "
        f"tracking.secret_file in {where} (`nurture init` writes one)")


class _Builder:
    def __init__(self, src: Source) -> None:
        self.src = src
        self.warnings: list[str] = []

    def read_secret(self, path: tuple[str | int, ...], file: str) -> bytes:
        """The contents of a secret file (surrounding whitespace dropped), with a warning
        when its mode lets the group or others read it."""
        p = Path(file)
        try:
            st = p.stat()
            data = p.read_bytes().strip()
        except FileNotFoundError:
            self.fail(path, f"secret file not found: {p}")
        except OSError as e:
            self.fail(path, f"cannot read secret file {p}: {e.strerror}")
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            self.warnings.append(
                f"secret file {p} can be read by other users (mode {stat.S_IMODE(st.st_mode):04o}); "
                f"run: chmod 600 {p}")
        if not data:
            self.fail(path, f"secret file {p} is empty")
        return data

    def secret(self, path: tuple[str | int, ...], section: Mapping[str, Any], name: str, env: Mapping[str, str],
               resolve: Any) -> bytes | None:
        """``NAME_env`` (a variable's name) or ``NAME_file`` (a file's path) of ``section``:
        the secret they point at, None when neither is set. A named variable that is unset
        or a named file that is missing is an error."""
        env_key, file_key = f"{name}_env", f"{name}_file"
        if section.get(env_key) and section.get(file_key):
            self.fail((*path, file_key), f"set {field_name((*path, env_key))} or "
                                         f"{field_name((*path, file_key))}, not both")
        if section.get(file_key):
            return self.read_secret((*path, file_key), resolve(str(section[file_key])))
        if section.get(env_key):
            value = env.get(str(section[env_key]))
            if not value:
                self.fail((*path, env_key), f"environment variable {section[env_key]} is not set")
            return value.encode()
        return None

    def fail(self, path: tuple[str | int, ...], message: str) -> NoReturn:
        line, col = self.src.where(path)
        raise ConfigError(message, file=self.src.file, line=line, column=col,
                          field=field_name(path) or None)

    def convert(self, path: YPath, fn: Callable[[Any], T], value: Any) -> T:
        try:
            return fn(value)
        except ValueError as e:
            self.fail(path, str(e))

    def proxy_header(self, value: str) -> str:
        for name in PROXY_HEADERS:
            if value.strip().lower() == name.lower():
                return name
        self.fail(("tracking", "proxy_header"), f'"{value}" is not one of {", ".join(PROXY_HEADERS)}')

    def section(self, data: dict[str, Any], name: str) -> dict[str, Any]:
        value = data.get(name) or {}
        if not isinstance(value, dict):
            self.fail((name,), "must be a mapping")
        return value

    def check_keys(self, data: dict[str, Any], schema: dict[str, Any], path: tuple[str | int, ...]) -> None:
        for key, value in data.items():
            if key not in schema:
                known = ", ".join(sorted(schema))
                self.fail((*path, key), f'unknown key (known keys: {known})')
            expected = schema[key]
            if isinstance(expected, dict):
                if not isinstance(value, dict):
                    self.fail((*path, key), "must be a mapping")
                self.check_keys(value, expected, (*path, key))
            elif value is not None and not _is(value, expected):
                self.fail((*path, key), f"must be {_type_name(expected)}, not {type(value).__name__}")

    def rep(self, i: int, r: Any, closures: tuple[Closure, ...] = ()) -> Rep:
        path = ("reps", i)
        if not isinstance(r, dict):
            self.fail(path, "must be a mapping with id, name and email")
        self.check_keys(r, _REP_KEYS, path)
        for k in ("id", "name", "email"):
            if not r.get(k):
                self.fail((*path, k) if k in r else path, f"rep needs {k}")
        tz = r.get("timezone", "UTC")
        self.convert((*path, "timezone"), zone, tz)
        hours = self.convert((*path, "hours"), parse_hours, r["hours"]) if r.get("hours") else None
        days = self.convert((*path, "days"), parse_weekdays, r.get("days", ["mon", "tue", "wed", "thu", "fri"]))
        terr = r.get("territory") or ()
        cap = r.get("capacity", 16)
        if cap < 0:
            self.fail((*path, "capacity"), "must not be negative")
        code = r.get("calendar")
        if code is not None and code.strip().lower() not in NONE_WORDS:
            self.convert((*path, "calendar"), check_country, code)
        return Rep(id=str(r["id"]), name=r["name"], email=r["email"], timezone=tz, hours=hours,
                   days=days, territory=tuple([terr] if isinstance(terr, str) else terr), capacity=cap,
                   calendar=calendar_for(code, zone_name=tz, closures=closures))

    def inbound(self, d: dict[str, Any]) -> InboundSettings:
        path = ("inbound",)
        return_path = d.get("return_path")
        if return_path is not None and not _BARE_ADDRESS.match(return_path):
            self.fail((*path, "return_path"),
                      f'"{return_path}" is not a bare address such as bounces@bounce.acme.example')
        if return_path is not None and "+" in return_path:
            self.fail((*path, "return_path"), "must not contain + (nurture adds +<token> itself)")
        reply_domain = d.get("reply_domain")
        if reply_domain is not None and not _DOMAIN.match(reply_domain):
            self.fail((*path, "reply_domain"), f'"{reply_domain}" is not a domain such as reply.acme.example')
        defaults = InboundSettings()
        for key in ("max_bytes", "soft_bounce_limit"):
            if d.get(key) is not None and d[key] < 1:
                self.fail((*path, key), "must be at least 1")
        return InboundSettings(
            return_path=return_path, reply_domain=reply_domain,
            forward_replies=d.get("forward_replies", True),
            ooo_pause=self.convert((*path, "ooo_pause"), parse_duration, d["ooo_pause"])
            if d.get("ooo_pause") is not None else defaults.ooo_pause,
            max_bytes=d.get("max_bytes", defaults.max_bytes),
            soft_bounce_limit=d.get("soft_bounce_limit", defaults.soft_bounce_limit),
            soft_bounce_span=self.convert((*path, "soft_bounce_span"), parse_duration, d["soft_bounce_span"])
            if d.get("soft_bounce_span") is not None else defaults.soft_bounce_span,
        )

    def webhook(self, i: int, w: Any, env: Mapping[str, str], resolve: Any) -> Webhook:
        path = ("webhooks", i)
        if not isinstance(w, dict) or not w.get("url"):
            self.fail(path, "a webhook needs a url")
        self.check_keys(w, _WEBHOOK_KEYS, path)
        events = tuple(w.get("events") or WEBHOOK_EVENTS)
        for j, ev in enumerate(events):
            if ev not in WEBHOOK_EVENTS:
                self.fail((*path, "events", j), f'unknown event "{ev}" (known: {", ".join(WEBHOOK_EVENTS)})')
        secret = self.secret(path, w, "secret", env, resolve) or b""
        return Webhook(url=w["url"], events=events, secret=secret)


_BARE_ADDRESS = re.compile(r"^[A-Za-z0-9._%-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_DOMAIN = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


def _is(value: Any, expected: Any) -> bool:
    types = expected if isinstance(expected, tuple) else (expected,)
    if isinstance(value, bool) and bool not in types:
        return False
    return isinstance(value, types)


def _type_name(expected: Any) -> str:
    names = {str: "a string", int: "a whole number", float: "a number", bool: "true or false",
             list: "a list", dict: "a mapping"}
    types = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join(names.get(t, t.__name__) for t in types)
