"""``nurture demo``: the whole loop on this machine, on a compressed clock.

A fresh workspace (SQLite file and a mail folder), an embedded SMTP sink, the tracker and
the reps' app on localhost, ~60 fictional merchants enrolled in ``ec-payments``, and
simulated recipients: most ignore the mail, some read the case study, a few open the
pricing page, and corporate mail scanners sweep some messages. Every click is a real HTTP
request to the real tracker, judged by the real click judge; human pricing clicks become
call-now tasks for the right reps, scanner sweeps become none.

The clock: while something is happening (mail going out, people clicking) simulated time
runs at real speed, so the click judge sees realistic gaps; in between it glides forward
``speed`` times faster to the next thing that is due. Simulated reps work the tasks older
than a day, so the report shows outcomes, and the freshest call-now tasks stay open for you.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import re
import shutil
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

from nurture.config import RepsAppSettings, Settings
from nurture.demo_data import Merchant, merchants, write_csv
from nurture.errors import NurtureError
from nurture.models import Campaign
from nurture.project import new_secret, write_secret
from nurture.signing import Signer
from nurture.sink import Received, Sink, start_sink
from nurture.store import AsyncStore, Store
from nurture.timeutil import utcnow

CAMPAIGN = "ec-payments"
#: The workspace's signing secret (mode 0600), named by its config.yaml's tracking.secret_file.
SECRET_FILE = ".nurture/secret"
#: Simulated days the play spans: three weekly steps plus late clicks.
PLAY_DAYS = 15
DEFAULT_SPEED = 80_000.0
SAFE_LINKS_UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                 "Chrome/97.0.4692.99 Safari/537.36")
BROWSER_UAS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/156.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Mobile/15E148 Safari/604.1",
)
_HREF = re.compile(r'href="([^"]+/c/[A-Za-z0-9_\-]+)"')


def default_start(now: datetime) -> datetime:
    """A Monday 08:55 in Tokyo (as Tokyo's send window opens) about ``PLAY_DAYS`` before
    ``now``, so the play ends close to the real date and its tasks look fresh afterwards."""
    tokyo = ZoneInfo("Asia/Tokyo")
    day = (now - timedelta(days=PLAY_DAYS)).astimezone(tokyo).date()
    monday = day - timedelta(days=day.weekday())
    return datetime.combine(monday, time(8, 55), tzinfo=tokyo).astimezone(UTC)


class DemoClock:
    """Real time plus an offset that only grows: ``advance`` glides simulated time forward."""

    def __init__(self, start: datetime) -> None:
        self._offset = start - utcnow()

    def now(self) -> datetime:
        return utcnow() + self._offset

    def advance(self, delta: timedelta) -> None:
        if delta > timedelta(0):
            self._offset += delta

    def to_real_time(self) -> timedelta:
        """From now on run on the real clock; returns how far simulated time was ahead."""
        offset, self._offset = self._offset, timedelta(0)
        return offset


@dataclass(frozen=True, slots=True)
class Persona:
    """What one simulated recipient does with each step's mail."""

    scanned: bool = False                       # their company's mail gateway sweeps every link
    clicks: tuple[tuple[str, str, timedelta], ...] = ()  # (step, link name, after delivery)
    unsubscribes_after: str | None = None       # step after which they unsubscribe
    comes_back: bool = False                    # opens the pricing link of an old mail at the end
    bounces: bool = False                       # the sink refuses the address at RCPT
    replies: bool = False                       # answers the first mail: "Could you call me on Thursday?"
    out_of_office: bool = False                 # away until next week: an automatic reply with the date
    bounces_later: bool = False                 # the sink accepts, then a DSN comes back (asynchronous)


def persona(i: int) -> Persona:
    """A deterministic mix: mostly silence, some readers, a few buyers, some scanners."""
    h = timedelta(hours=1)
    clicks: list[tuple[str, str, timedelta]] = []
    if i % 4 == 0:
        clicks.append(("case-study", "case-study", (2 + i % 5) * h))
    if i % 12 == 5:
        clicks.append(("case-study", "pricing", (3 + i % 3) * h))
    if i % 6 == 2:
        clicks.append(("service-page", "pricing", (1 + i % 4) * h))
    if i % 7 == 3:
        clicks.append(("webinar", "webinar-register", (4 + i % 3) * h))
    return Persona(scanned=i % 5 == 1, clicks=tuple(clicks), comes_back=i % 10 == 9,
                   unsubscribes_after="case-study" if i == 58 else None, bounces=i == 57,
                   replies=i == 10, out_of_office=i == 11, bounces_later=i == 7)


@dataclass
class Action:
    at: datetime
    email: str
    kind: str  # click | sweep | unsubscribe | mail (back to nurture: a reply, an out-of-office, a DSN)
    url: str
    link: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "GET"
    data: bytes | None = None


@dataclass
class DemoResult:
    settings: Settings
    workdir: Path
    tracker_url: str
    reps_url: str
    tokens: dict[str, str]
    activity: dict[str, Any]
    funnel: dict[str, dict[str, int]]
    actions_done: int
    #: How far the workspace's times were moved to put them on the real clock after the play.
    shifted: timedelta = timedelta(0)
    #: What came back (a reply, an out-of-office, an asynchronous bounce), in words.
    inbound: tuple[str, ...] = ()


def free_port(preferred: int | None, host: str = "127.0.0.1", *, option: str = "the port") -> int:
    """``preferred`` when it is free, any free port for None or 0. A taken port is an error
    that names ``option``, never silently another port (the printed links would differ)."""
    with socket.socket() as s:
        try:
            s.bind((host, preferred or 0))
        except OSError as e:
            raise NurtureError(f"port {preferred} on {host} is already in use ({e.strerror}): pass another "
                               f"with {option}, or 0 for any free port") from None
        return int(s.getsockname()[1])


def demo_settings(base: Settings, *, workdir: Path, smtp_port: int, tracker_port: int,
                  reps_port: int) -> Settings:
    """The operator's settings, pointed at the demo's workspace, sink and ports."""
    workdir = workdir.resolve()  # the workspace's config.yaml must work from any folder
    tracker = f"http://127.0.0.1:{tracker_port}"
    reps = f"http://127.0.0.1:{reps_port}"
    return replace(
        base,
        database=str(workdir / "nurture.db"),
        smtp=replace(base.smtp, host="127.0.0.1", port=smtp_port, tls="none", username=None,
                     password=None, max_connections=4, timeout=10.0,
                     rate=type(base.smtp.rate)(200, 1)),
        # Its own random signing secret, never the operator's nor the development default.
        tracking=replace(base.tracking, base_url=tracker, listen=f"127.0.0.1:{tracker_port}",
                         keys={base.tracking.current_key: new_secret()},
                         secret_origin=f"file {workdir / SECRET_FILE}",
                         # The simulated recipients reach the tracker through loopback and
                         # say where they come from in X-Forwarded-For, like a reverse proxy.
                         trusted_proxies=("127.0.0.0/8",)),
        reps_app=RepsAppSettings(listen=f"127.0.0.1:{reps_port}", base_url=reps),
        # Bounces and automatic replies come back to a VERP address that names the send.
        inbound=replace(base.inbound, return_path=base.inbound.return_path or f"bounces@bounce.{_domain_of(base)}"),
        webhooks=(),
        dkim=None,
    )


def _domain_of(settings: Settings) -> str:
    from email.utils import parseaddr

    return parseaddr(settings.sender.from_address)[1].rpartition("@")[2] or "example.com"


def write_config(settings: Settings, path: Path) -> Path:
    """Write the demo's settings as a config.yaml, so every command works on its workspace:
    ``nurture --config nurture-demo/config.yaml tasks``."""
    import yaml

    from nurture.timeutil import WEEKDAYS

    data = {
        "database": settings.database,
        "campaigns_dir": settings.campaigns_dir,
        "templates_dir": settings.templates_dir,
        "smtp": {"host": settings.smtp.host, "port": settings.smtp.port, "tls": settings.smtp.tls,
                 "max_connections": settings.smtp.max_connections, "rate": str(settings.smtp.rate)},
        "tracking": {"base_url": settings.tracking.base_url, "listen": settings.tracking.listen,
                     "key_id": settings.tracking.current_key, "secret_file": SECRET_FILE,
                     "trusted_proxies": list(settings.tracking.trusted_proxies)},
        "sender": {"from": settings.sender.from_address, "postal_address": settings.sender.postal_address,
                   **({"reply_to": settings.sender.reply_to} if settings.sender.reply_to else {})},
        "reps_app": {"listen": settings.reps_app.listen, "base_url": settings.reps_app.base_url},
        "reps": [{"id": r.id, "name": r.name, "email": r.email, "timezone": r.timezone,
                  **({"hours": str(r.hours)} if r.hours else {}),
                  "days": [WEEKDAYS[d] for d in sorted(r.days)], "territory": list(r.territory),
                  "capacity": r.capacity} for r in settings.reps],
    }
    if settings.inbound.return_path:
        data["inbound"] = {"return_path": settings.inbound.return_path}
    if settings.territories:
        data["territories"] = dict(settings.territories)
    write_secret(path.parent / SECRET_FILE, settings.tracking.keys[settings.tracking.current_key])
    path.write_text("# Written by `nurture demo` for its workspace.\n"
                    + yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


class Director:
    """Watches mail arrive at the sink and plays the recipients; drives the clock."""

    def __init__(self, *, clock: DemoClock, store: AsyncStore[Store], campaign: Campaign, people: list[Merchant],
                 settings: Settings, speed: float, rng: random.Random) -> None:
        self.clock = clock
        self.store = store
        self.campaign = campaign
        self.settings = settings
        self.speed = speed
        self.rng = rng
        self.by_email = {m.email.lower(): (i, m) for i, m in enumerate(people)}
        self.actions: list[Action] = []
        self.done = 0
        self.delivered = 0
        self.phase = "starting"
        self.errors: list[str] = []
        self.finale: list[Action] = []
        self.inbox: asyncio.Queue[Received] = asyncio.Queue()
        self.signer = Signer.from_settings(settings.tracking)
        self._link_names: dict[int, str] = {}
        #: What came back and what nurture did about it, for the live view and the finale.
        self.inbound: list[str] = []

    # -- mail arrives -------------------------------------------------------------------------
    def on_message(self, rec: Received) -> None:
        """The sink's callback: queue the message for the recipient to read."""
        self.delivered += 1
        self.inbox.put_nowait(rec)

    async def _read(self, rec: Received) -> None:
        msg = rec.message
        email = (rec.rcpt_tos[0] if rec.rcpt_tos else "").lower()
        if email not in self.by_email:
            return
        i, _m = self.by_email[email]
        p = persona(i)
        step = msg.get("X-Nurture-Step", "")
        html_part = msg.get_body(preferencelist=("html",))
        links = _HREF.findall(html_part.get_content() if html_part is not None else "")
        now = self.clock.now()
        if p.scanned:
            # A Safe Links-style sweep: HEAD then GET on every link, within a couple of seconds.
            ip = f"40.107.{i % 200}.{10 + i % 40}"
            for n, url in enumerate(links):
                hdrs = {"User-Agent": SAFE_LINKS_UA, "X-Forwarded-For": ip}
                at = now + timedelta(milliseconds=300 + 150 * n)
                self.actions.append(Action(at, email, "sweep", url, headers=hdrs, method="HEAD"))
                self.actions.append(Action(at + timedelta(milliseconds=60), email, "sweep", url, headers=hdrs))
        ua = BROWSER_UAS[i % len(BROWSER_UAS)]
        ip = f"203.0.113.{1 + i}"
        for c_step, link, after in p.clicks:
            if c_step != step:
                continue
            url = await self._link_url(links, link)
            if url:
                self.actions.append(Action(now + after, email, "click", url, link=link,
                                           headers={"User-Agent": ua, "X-Forwarded-For": ip}))
        if p.comes_back and step == "service-page":
            url = await self._link_url(links, "pricing")
            if url:  # kept for the finale: the morning after the campaign has run its course
                self.finale.append(Action(now, email, "click", url, link="pricing",
                                          headers={"User-Agent": ua, "X-Forwarded-For": ip}))
        if step == "case-study" and (p.replies or p.out_of_office or p.bounces_later):
            self.actions.append(_mail_back(rec, self.by_email[email][1], p, now))
        if p.unsubscribes_after == step:
            m = re.search(r"<(https?://[^>]+/u/[^>]+)>", msg.get("List-Unsubscribe", ""))
            if m:  # RFC 8058 one-click, as a mailbox provider's "Unsubscribe" button sends it
                self.actions.append(Action(now + timedelta(hours=5), email, "unsubscribe", m.group(1),
                                           method="POST", data=b"List-Unsubscribe=One-Click",
                                           headers={"Content-Type": "application/x-www-form-urlencoded"}))
        self.actions.sort(key=lambda a: a.at)

    async def _link_url(self, urls: list[str], name: str) -> str | None:
        """The tracked URL in ``urls`` whose link is called ``name``."""
        for url in urls:
            try:
                _send_id, link_id = self.signer.verify("click", url.rsplit("/", 1)[1])
            except NurtureError:
                continue
            if link_id not in self._link_names:
                link = await self.store.call(Store.get_link, link_id)
                self._link_names[link_id] = link.name if link else ""
            if self._link_names[link_id] == name:
                return url
        return None

    # -- the play -------------------------------------------------------------------------------
    def start_finale(self) -> bool:
        """Schedule the merchants who come back to an old mail's pricing link: on the next
        weekday morning in Tokyo, a few minutes apart. False if there is nobody (or it ran)."""
        if not self.finale:
            return False
        tokyo = ZoneInfo("Asia/Tokyo")
        local = self.clock.now().astimezone(tokyo)
        day = local.date() + timedelta(days=1 if local.time() >= time(10, 0) else 0)
        while day.weekday() >= 5:
            day += timedelta(days=1)
        start = datetime.combine(day, time(10, 0), tzinfo=tokyo).astimezone(UTC)
        for n, action in enumerate(self.finale):
            action.at = start + timedelta(minutes=4 * n + self.rng.randint(0, 3))
        self.actions = sorted(self.actions + self.finale, key=lambda a: a.at)
        self.finale = []
        self.phase = "the next morning…"
        return True

    async def run(self, session: aiohttp.ClientSession, *, until: datetime, stop: asyncio.Event,
                  before_finale: Callable[[], Awaitable[object]] | None = None) -> None:
        """Perform due actions; glide the clock when nothing is due; end when idle (after the
        finale) or at ``until``."""
        idle_rounds = 0
        settle = self.settings.tracking.settle_seconds + 1
        while not stop.is_set():
            while not self.inbox.empty():
                await self._read(self.inbox.get_nowait())
            now = self.clock.now()
            due = [a for a in self.actions if a.at <= now]
            if due:
                self.actions = [a for a in self.actions if a.at > now]
                await asyncio.gather(*(self._perform(session, a) for a in due))
                continue
            in_flight, next_due, clicks_due = await self.store.run(lambda s: (
                s.sending_in_flight(), s.next_activity_at(), s.click_work_at(settle_seconds=settle)))
            candidates = [a.at for a in self.actions[:1]]
            candidates += [t for t in (next_due, clicks_due) if t is not None]
            if not candidates and not in_flight:
                idle_rounds += 1
                if idle_rounds > 6:  # nothing left: every enrollment finished, every click judged
                    if before_finale is not None and self.finale:
                        await before_finale()
                    if self.start_finale():
                        idle_rounds = 0
                        continue
                    self.phase = "the campaign has run its course"
                    return
                await asyncio.sleep(0.25)
                continue
            idle_rounds = 0
            target = min(candidates) if candidates else now
            if target > until:
                self.phase = "the campaign has run its course"
                return
            gap = (target - now).total_seconds()
            if in_flight or gap <= 0.3:
                self.phase = "sending" if in_flight else self.phase
                await asyncio.sleep(0.1)
                continue
            # Glide: sim time runs `speed` times faster, in small steps so the view moves.
            self.phase = "time passes…"
            step = min(gap - 0.2, self.speed * 0.05)
            self.clock.advance(timedelta(seconds=step))
            await asyncio.sleep(0.05)

    async def _perform(self, session: aiohttp.ClientSession, a: Action) -> None:
        if a.kind == "mail":
            await self._mail(a)
            return
        try:
            async with session.request(a.method, a.url, headers=a.headers, data=a.data,
                                       allow_redirects=False) as resp:
                await resp.read()
                if a.kind == "click" and resp.status != 302:
                    self.errors.append(f"{a.url} answered {resp.status}")
        except aiohttp.ClientError as e:
            self.errors.append(f"{a.kind} {a.url}: {e}")
        self.done += 1
        if a.kind == "click":
            self.phase = f"{a.email.split('@')[0]} opened the {a.link} link"


    async def _mail(self, a: Action) -> None:
        """A message comes back to nurture (as the pipe transport or the listener hands it on)."""
        from nurture.inbound import receive

        raw, rcpt, campaigns, now = a.data or b"", a.url, {self.campaign.id: self.campaign}, self.clock.now()
        result = await self.store.run(lambda s: receive(s, raw, settings=self.settings, campaigns=campaigns,
                                                        now=now, source="demo", envelope_recipients=(rcpt,)))
        self.done += 1
        who = a.link
        if result.kind == "reply":
            task = await self.store.call(Store.get_task, result.task_id) if result.task_id else None
            rep = next((r.name for r in self.settings.reps if task and r.id == task.rep_id), "a rep")
            line = f"{who} replied \u201c{result.new_text.splitlines()[0]}\u201d → call-now task for {rep}"
        elif result.kind == "auto_reply" and result.resume_at is not None:
            back = result.resume_at.astimezone(ZoneInfo("Asia/Tokyo")).strftime("%a %d %b")
            line = f"{who} is out of office until {back} → no task; the next mail waits"
        elif result.kind == "hard_bounce":
            line = f"{a.email} bounced after the relay accepted it ({result.status}) → suppressed"
        else:
            line = f"{who}: {result.kind} ({result.action})"
        self.inbound.append(line)
        self.phase = line


def _mail_back(rec: Received, m: Merchant, p: Persona, now: datetime) -> Action:
    """What the persona mails back about the first mail: a reply (to its Reply-To or From), an
    out-of-office (to the Return-Path, RFC 3834), or a DSN from their mail server (RFC 3464)."""
    from email.utils import format_datetime, make_msgid

    msg = rec.message
    name, addr = f"{m.first_name} {m.last_name}", m.email
    mid, subject = str(msg.get("Message-ID", "")), str(msg.get("Subject", ""))
    domain = addr.rpartition("@")[2]
    head = [f"Message-ID: {make_msgid(domain=domain)}", f"In-Reply-To: {mid}", f"References: {mid}"]
    if p.bounces_later:
        at = now + timedelta(minutes=20)
        text = (f"From: Mail Delivery System <MAILER-DAEMON@mx.{domain}>\nTo: {rec.mail_from}\n"
                f"Subject: Undelivered Mail Returned to Sender\nDate: {format_datetime(at)}\n"
                f"Message-ID: {make_msgid(domain='mx.' + domain)}\nAuto-Submitted: auto-replied\n"
                'MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary="dsn"\n\n'
                f"--dsn\nContent-Type: text/plain\n\nYour message could not be delivered to <{addr}>:\n"
                f"550 5.1.1 <{addr}>: Recipient address rejected: User unknown in virtual mailbox table\n\n"
                f"--dsn\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.{domain}\n\n"
                f"Final-Recipient: rfc822; {addr}\nAction: failed\nStatus: 5.1.1\n"
                f"Diagnostic-Code: smtp; 550 5.1.1 <{addr}>: Recipient address rejected: User unknown\n\n"
                f"--dsn\nContent-Type: text/rfc822-headers\n\nFrom: {msg.get('From')}\nTo: {addr}\n"
                f"Subject: {subject}\nMessage-ID: {mid}\n\n--dsn--\n")
        return Action(at, addr, "mail", rec.mail_from, link=name, data=text.encode())
    if p.out_of_office:
        at = now + timedelta(minutes=1)
        back = (now.astimezone(ZoneInfo(m.timezone or "Asia/Tokyo")) + timedelta(days=9)).date()
        body = (f"Thank you for your message. I'm away with limited access to email.\n"
                f"I'll be back on {back:%A}, {back.day} {back:%B} and will reply then.\n\n{m.first_name}\n")
        head = [*head, "Auto-Submitted: auto-replied", f"Subject: Out of office: {subject}"]
        to = rec.mail_from
    else:
        at = now + timedelta(hours=3)
        body = (f"Could you call me on Thursday?\n\n{m.first_name}\n\nOn {msg.get('Date')}, "
                f"{msg.get('From')} wrote:\n> {subject}\n")
        head = [*head, f"Subject: Re: {subject}"]
        to = str(msg.get("Reply-To") or msg.get("From"))
    text = (f"From: {name} <{addr}>\nTo: {to}\nDate: {format_datetime(at)}\n" + "\n".join(head)
            + '\nMIME-Version: 1.0\nContent-Type: text/plain; charset="UTF-8"\n\n' + body)
    return Action(at, addr, "mail", to, link=name, data=text.encode("utf-8"))


def _to_real_time(store: Store, clock: DemoClock) -> timedelta:
    """Move the workspace's stored times onto the real clock and switch ``clock`` to it, on
    the store's writer thread so no write lands between the two."""
    from nurture.store.timeshift import shift_times

    offset = clock.to_real_time()
    shift_times(store, seconds=-offset.total_seconds())
    return -offset


async def work_old_tasks(store: AsyncStore[Store], *, now: datetime, older_than: timedelta,
                         rng: random.Random) -> int:
    """Simulated reps: record an outcome on open tasks created before ``now - older_than``."""
    from nurture.outcomes import record_outcome

    def work(s: Store) -> int:
        n = 0
        for task in s.list_tasks(now=now, status="open", limit=1000):
            if task.created_at > now - older_than:
                continue
            outcome = rng.choice(("connected", "connected", "voicemail", "qualified", "not_interested"))
            record_outcome(s, task_id=task.id, outcome=outcome, now=now, rep_id=task.rep_id,
                           notes="(simulated call in the demo)")
            n += 1
        return n

    return await store.run(work)


async def play(
    *,
    base: Settings,
    workdir: Path,
    campaigns_dir: Path,
    speed: float = DEFAULT_SPEED,
    contacts: int = 60,
    start: datetime | None = None,
    keep_serving: bool = False,
    tracker_port: int | None = 8080,
    reps_port: int | None = 8081,
    on_update: Callable[[dict[str, Any]], None] | None = None,
    on_ready: Callable[[DemoResult], None] | None = None,
    stop: asyncio.Event | None = None,
) -> DemoResult:
    """Play the demo; return its figures. With ``keep_serving`` keep the servers up until
    ``stop`` is set (after ``on_ready`` has been told the URLs and tokens)."""
    from nurture.campaigns import find_campaign
    from nurture.contacts import import_contacts
    from nurture.parts import RUN, Context, Options, run_parts
    from nurture.repauth import issue_rep_token
    from nurture.scheduler import enroll
    from nurture.sender import SenderOptions
    from nurture.store import open_async_store

    # Before anything is started or the old workspace cleared: a taken port is an error.
    tracker_port = free_port(tracker_port, option="--tracker-port")
    reps_port = free_port(reps_port, option="--reps-port")
    stop = stop or asyncio.Event()
    # The campaign's own rate (its relay quota) would stretch the play; the sink has none.
    campaign = replace(find_campaign(campaigns_dir, CAMPAIGN), rate=None)
    if workdir.exists():
        for name in ("nurture.db", "nurture.db-wal", "nurture.db-shm", "merchants.csv", "config.yaml"):
            (workdir / name).unlink(missing_ok=True)
        shutil.rmtree(workdir / "mail", ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    people = list(merchants(contacts))
    bouncing = {m.email.lower() for i, m in enumerate(people) if persona(i).bounces}

    def fault(envelope: Any, attempt: int) -> str | None:
        if any(r.lower() in bouncing for r in envelope.rcpt_tos):
            return "550 5.1.1 mailbox unavailable: no such user"
        return None

    sink = Sink(folder=workdir / "mail", fault=fault)
    running_sink = await start_sink(sink)
    settings = demo_settings(base, workdir=workdir, smtp_port=running_sink.port,
                             tracker_port=tracker_port, reps_port=reps_port)
    write_config(settings, workdir / "config.yaml")
    start = start or default_start(utcnow())
    clock = DemoClock(start)
    store = open_async_store(settings.database)
    rng = random.Random(7)
    director = Director(clock=clock, store=store, campaign=campaign, people=people, settings=settings,
                        speed=speed, rng=rng)
    sink.on_message = director.on_message
    urls: dict[str, str] = {}
    services_stop = asyncio.Event()
    services: asyncio.Task[None] | None = None
    try:
        csv_path = write_csv(workdir / "merchants.csv", contacts)
        await store.run(lambda s: import_contacts(s, csv_path, now=clock.now()))
        await store.run(lambda s: enroll(s, campaign, now=clock.now(), all_contacts=True))
        services = asyncio.create_task(run_parts(RUN, Context(
            settings=settings, store=store, campaigns={campaign.id: campaign}, stop=services_stop,
            now=clock.now, ready=urls.__setitem__,
            options=Options(settle_every=0.3, sender=SenderOptions(idle=0.2)))))
        while len(urls) < 2:
            if services.done():
                services.result()
            await asyncio.sleep(0.02)
        tokens: dict[str, str] = {}
        for rep in settings.reps:
            tokens[rep.id] = await store.run(functools.partial(issue_rep_token, settings=settings, rep_id=rep.id,
                                                               now=clock.now()))
        tokens["manager"] = await store.run(
            lambda s: issue_rep_token(s, settings, rep_id="", now=clock.now(), manager=True))
        until = start + sum((s.wait for s in campaign.steps), timedelta()) + timedelta(days=10)

        async def report_loop() -> None:
            last_worked = clock.now()
            while True:
                act = await store.run(lambda s: s.activity())
                if on_update is not None:
                    on_update({"now": clock.now(), "phase": director.phase, "activity": act,
                               "delivered": director.delivered, "actions": director.done,
                               "inbound": list(director.inbound)})
                if clock.now() - last_worked > timedelta(hours=12):
                    last_worked = clock.now()
                    await work_old_tasks(store, now=clock.now(), older_than=timedelta(days=1), rng=rng)
                await asyncio.sleep(0.2)

        reporter = asyncio.create_task(report_loop())
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            await director.run(session, until=until, stop=stop, before_finale=lambda: work_old_tasks(
                store, now=clock.now(), older_than=timedelta(0), rng=rng))
        # Let the last clicks settle and the follow-up loop turn them into tasks.
        clock.advance(timedelta(seconds=settings.tracking.settle_seconds + 5))
        for _ in range(100):
            if await store.run(lambda s: s.click_work_at(settle_seconds=0)) is None:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)  # one more follow-up round
        reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporter
        # Onto the real clock: the reps' app and every command on the workspace then agree.
        shifted = await store.run(lambda s: _to_real_time(s, clock))
        result = DemoResult(
            settings=settings, workdir=workdir, tracker_url=urls["tracker"], reps_url=urls["reps"],
            tokens=tokens, activity=await store.run(lambda s: s.activity()),
            funnel=await store.run(lambda s: s.funnel(campaign.id)), actions_done=director.done,
            shifted=shifted, inbound=tuple(director.inbound))
        if director.errors:
            raise NurtureError("the demo's simulated recipients met errors: " + "; ".join(director.errors[:3]))
        if on_ready is not None:
            on_ready(result)
        if keep_serving:
            await stop.wait()
        return result
    finally:
        services_stop.set()
        if services is not None:
            with contextlib.suppress(Exception):
                await services
        await store.aclose()
        await running_sink.aclose()
