"""Settings: config.yaml and the environment, read once into frozen dataclasses.

This is the only module that reads files or environment variables for settings.
Everything else receives a :class:`Settings` (or a part of it) as an argument.
"""

from __future__ import annotations

import importlib.resources
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn

from nurture.errors import ConfigError
from nurture.models import Rep
from nurture.timeutil import Rate, parse_duration, parse_hours, parse_rate, parse_weekdays, zone
from nurture.yamlsrc import Source, YamlSyntaxError, field_name, load

DEFAULT_CONFIG = "config.yaml"
#: Signs tokens when no secret is configured, so a fresh checkout can preview mail. ``run``,
#: ``serve`` and ``send`` refuse it (:func:`require_real_secret`): anyone who has read this
#: line could forge click, open and unsubscribe links.
DEVELOPMENT_SECRET = b"nurture-development-secret-change-me"
TLS_MODES = ("none", "starttls", "tls")
WEBHOOK_EVENTS = ("task.created", "task.overdue", "task.done", "contact.hot", "contact.unsubscribed")


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


@dataclass(frozen=True, slots=True)
class Webhook:
    url: str
    events: tuple[str, ...] = WEBHOOK_EVENTS
    secret: bytes = field(default=b"", repr=False)


@dataclass(frozen=True, slots=True)
class RepsAppSettings:
    listen: str = "127.0.0.1:8081"
    base_url: str = "http://127.0.0.1:8081"


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
                 "settle": (str, int), "group_commit_ms": (int, float),
                 "scanner_networks": str},
    "sender": {"from": str, "reply_to": str, "postal_address": str},
    "dkim": {"selector": str, "domain": str, "private_key_file": str, "private_key_env": str},
    "reps_app": {"listen": str, "base_url": str},
    "reps": list,
    "webhooks": list,
    "territories": dict,
}
_REP_KEYS = {"id": str, "name": str, "email": str, "timezone": str, "hours": str,
             "days": list, "territory": (str, list), "capacity": int}
_WEBHOOK_KEYS = {"url": str, "events": list, "secret_env": str, "secret_file": str}

#: Every key config.yaml accepts (dotted), for docs and the docs test.
CONFIG_KEYS: tuple[str, ...] = tuple(
    [k if not isinstance(v, dict) else f"{k}.{sub}" for k, v in _SCHEMA.items()
     for sub in (v if isinstance(v, dict) else [None])]
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
        src = load(p.read_text(encoding="utf-8"), str(p))
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
        dkim = DkimSettings(selector=dk["selector"], domain=dk["domain"], private_key=key)
    reps = tuple(b.rep(i, r) for i, r in enumerate(data.get("reps") or []))
    ids = [r.id for r in reps]
    for i, rid in enumerate(ids):
        if rid in ids[:i]:
            b.fail(("reps", i, "id"), f'duplicate rep id "{rid}"')
    webhooks = tuple(b.webhook(i, w, env, resolve) for i, w in enumerate(data.get("webhooks") or []))
    territories = data.get("territories") or {}
    for k, v in territories.items():
        if v not in ids:
            b.fail(("territories", k), f'"{v}" is not a rep id')
    return Settings(
        database=database,
        campaigns_dir=resolve(str(data.get("campaigns_dir", "campaigns"))),
        templates_dir=resolve(str(data.get("templates_dir", "templates"))),
        smtp=smtp, tracking=tracking, sender=sender, dkim=dkim, reps=reps,
        reps_app=RepsAppSettings(listen=app_d.get("listen", "127.0.0.1:8081"),
                                 base_url=str(app_d.get("base_url", "http://127.0.0.1:8081")).rstrip("/")),
        webhooks=webhooks, territories=dict(territories),
        source=src.file, warnings=tuple(b.warnings),
    )


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

    def convert(self, path: tuple[str | int, ...], fn: Any, value: Any) -> Any:
        try:
            return fn(value)
        except ValueError as e:
            self.fail(path, str(e))

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

    def rep(self, i: int, r: Any) -> Rep:
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
        return Rep(id=str(r["id"]), name=r["name"], email=r["email"], timezone=tz, hours=hours,
                   days=days, territory=tuple([terr] if isinstance(terr, str) else terr), capacity=cap)

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
