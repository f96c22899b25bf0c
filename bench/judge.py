"""Evaluation harness: the click judge against a scripted replay of scanner and human
behaviours, sent over real HTTP to a real ``nurture serve`` (client addresses through a trusted
proxy header), judged by its own settle pass. Prints per-behaviour verdicts, precision and recall.

    python bench/judge.py [--seed 1] [--scanners 60] [--humans 60] [--settle 90] [--json FILE]

Each recipient gets one delivered message (a step with two visible links or one with three,
plus the hidden honeypot link, the open pixel and the unsubscribe page) and a behaviour drawn
from the classes below, built from the public observations cited in docs/tracking.md. The
replay runs in real time: a recipient's events keep their spacing (bursts within a second,
a person's clicks seconds or minutes apart) and their lag after delivery, because the harness
writes each message's delivery time (``sends.sent_at``) that far before its first event.

A recipient counts as judged human when any of its clicks settled ``human``. Recall: people
whose own click was judged human, over people. Precision: those people, over every recipient
judged human. Scanner classes marked "limit" are the documented cases nothing here can tell
from a person; they are reported apart and left out of the "detectable" figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import aiohttp  # noqa: E402
from _net import free_port, wait_ready  # noqa: E402

from nurture.clicks import Scanners, parse_scanners  # noqa: E402
from nurture.config import read_scanner_list  # noqa: E402
from nurture.signing import Signer  # noqa: E402
from nurture.store import open_store  # noqa: E402

SECRET = "judge-bench-secret"
STEPS = {"two-links": ("pricing", "case-study"), "three-links": ("pricing", "docs", "webinar")}
SPAN = 150.0      # the longest real-time spread of one recipient's events, in seconds
STAGGER = 60.0    # recipients start spread over this many seconds
WARMUP = 4.0

# -- addresses ---------------------------------------------------------------------------------

PEOPLE_V4 = (24, 71, 73, 76, 81, 86, 92, 98, 109, 151, 188, 217)  # consumer / office ISPs
CLOUD_V4 = ((3, None), (13, None), (18, None), (20, None), (34, None), (35, None), (54, None),
            (52, None), (104, 196), (146, 148))                     # AWS, Azure, GCP pools
EOP = ("40.107", "104.47", "52.101", "40.92")
AZURE = ("40.94",)
PROOFPOINT = ("67.231.{144-159}", "148.163.{128-159}")
MIMECAST = ("205.139.{110-111}", "170.10.{128-133}", "207.211.30", "216.205.24", "63.128.21")
BARRACUDA_PROBABLE = ("209.222.{80-87}", "64.235.{144-159}")
BARRACUDA_CERTAIN = ("35.157.190.{224-255}", "209.222.82", "3.24.133.{128-255}", "18.185.115.{192-255}")


class Addresses:
    def __init__(self, rng: random.Random, scanners: Scanners) -> None:
        self.rng, self.scanners = rng, scanners

    def _octet(self, spec: str) -> str:
        if spec.startswith("{"):
            lo, hi = spec[1:-1].split("-")
            return str(self.rng.randint(int(lo), int(hi)))
        return spec

    def _from(self, prefixes: tuple[str, ...]) -> str:
        parts = [self._octet(p) for p in self.rng.choice(prefixes).split(".")]
        while len(parts) < 4:
            parts.append(str(self.rng.randint(1, 254)))
        return ".".join(parts)

    def person(self) -> str:
        while True:
            if self.rng.random() < 0.25:
                ip = f"2a02:c7c:{self._hex()}:{self._hex()}::{self.rng.randint(1, 0xfff):x}"
            else:
                ip = f"{self.rng.choice(PEOPLE_V4)}.{self._tail()}"
            if self.scanners.network_of(ip) is None:
                return ip

    def cloud(self) -> str:
        """An unknown cloud address: in no list the judge knows."""
        while True:
            a, b = self.rng.choice(CLOUD_V4)
            ip = f"{a}.{b}.{self._tail(2)}" if b is not None else f"{a}.{self._tail()}"
            if self.scanners.network_of(ip) is None:
                return ip

    def eop(self) -> str:
        if self.rng.random() < 0.9:
            return self._from(EOP)
        return f"2a01:111:f400:{self._hex()}::{self.rng.randint(1, 0xff):x}"

    def _hex(self) -> str:
        return f"{self.rng.randint(0, 0xffff):x}"

    def _tail(self, octets: int = 3) -> str:
        return ".".join([*(str(self.rng.randint(0, 255)) for _ in range(octets - 1)), str(self.rng.randint(1, 254))])

    def azure(self) -> str:
        return self._from(AZURE)

    def gateway(self) -> tuple[str, str]:
        vendor = self.rng.choice(("proofpoint", "mimecast", "barracuda"))
        pool = {"proofpoint": PROOFPOINT, "mimecast": MIMECAST, "barracuda": BARRACUDA_PROBABLE}[vendor]
        return vendor, self._from(pool)

    def proofpoint(self) -> str:
        return self._from(PROOFPOINT)

    def barracuda_certain(self) -> str:
        return self._from(BARRACUDA_CERTAIN)


# -- user agents -------------------------------------------------------------------------------

def browser(rng: random.Random) -> str:
    """A person's browser: current, or a few versions behind (Chrome ships every two weeks)."""
    chrome = rng.randint(146, 158)
    webkit = "AppleWebKit/537.36 (KHTML, like Gecko)"
    safari = "AppleWebKit/605.1.15 (KHTML, like Gecko)"
    return rng.choice([
        f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) {webkit} Chrome/{chrome}.0.0.0 Safari/537.36",
        f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) {webkit} Chrome/{chrome}.0.0.0 Safari/537.36 Edg/{chrome}.0.0.0",
        f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) {webkit} Chrome/{chrome}.0.0.0 Safari/537.36",
        f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) {safari} Version/26.1 Safari/605.1.15",
        f"Mozilla/5.0 (iPhone; CPU iPhone OS 18_6 like Mac OS X) {safari} Version/18.6 Mobile/15E148 Safari/604.1",
        f"Mozilla/5.0 (Linux; Android 14; Pixel 8) {webkit} Chrome/{chrome}.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:145.0) Gecko/20100101 Firefox/145.0",
    ])


def safelinks_ua(rng: random.Random) -> str:
    """Safe Links-style: Windows plus an old Chrome, changing per request (gophish#973, #2446,
    opencollective#3656, fleetdm#26976)."""
    nt = rng.choice(("6.1", "10.0"))
    build = rng.choice(("57.0.2987.133", "64.0.3282.140", "72.0.3626.109", "79.0.3945.136",
                        "80.0.3987.132", "96.0.4664.110", "97.0.4692.99", "125.0.6422.142"))
    return f"Mozilla/5.0 (Windows NT {nt}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{build} Safari/537.36"


BOT_UAS = ("python-requests/2.32.3", "Barracuda Sentinel (EE)", "Mozilla/5.0 (compatible; BingPreview/1.0b)",
           "Go-http-client/1.1", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 HeadlessChrome/140.0.0.0")


# -- behaviours ----------------------------------------------------------------------------------

@dataclass
class Event:
    lag: float                 # seconds after delivery (negative: before it)
    target: str                # a link name, "honeypot", "unsubscribe" or "open"
    ip: str
    ua: str | None
    method: str = "GET"
    person: bool = False       # the recipient's own request


@dataclass
class Recipient:
    behaviour: str
    kind: str                  # scanner | human
    limit: bool                # a documented limit: nothing tells it from a person
    step: str
    events: list[Event]
    send_id: int = 0
    start: float = 0.0         # real-time offset of the first event into the replay
    rows: list[dict[str, object]] = field(default_factory=list)


Gen = Callable[[random.Random, Addresses, tuple[str, ...]], list[Event]]


def _sweep(t: float, targets: list[str], ip: Callable[[], str], ua: Callable[[], str | None],
           rng: random.Random, within: float = 0.9) -> list[Event]:
    gaps = sorted(rng.uniform(0, within) for _ in targets)
    return [Event(t + g, tg, ip(), ua()) for g, tg in zip(gaps, targets, strict=True)]


def s_safelinks_eop(rng: random.Random, a: Addresses, links: tuple[str, ...]) -> list[Event]:
    """Defender Safe Links from EOP at delivery or before it (scan-then-deliver): HEAD first,
    then every link, one address, an old Windows Chrome changing per request."""
    t, ip = rng.uniform(-3, 4), a.eop()
    ev = [Event(t, links[0], ip, safelinks_ua(rng), "HEAD")]
    return ev + [Event(t + 0.4 + i * rng.uniform(0.3, 0.9), link, ip, safelinks_ua(rng))
                 for i, link in enumerate(links)]


def s_safelinks_azure(rng: random.Random, a: Addresses, links: tuple[str, ...]) -> list[Event]:
    """Safe Links detonation from Azure outside the EOP ranges (40.94.x), within minutes."""
    t, ip = rng.uniform(3, 240), a.azure()
    return [Event(t + i * rng.uniform(1.5, 20), link, ip, safelinks_ua(rng))
            for i, link in enumerate(rng.sample(links, rng.randint(1, 2)))]


def s_proofpoint_sweep(rng: random.Random, a: Addresses, links: tuple[str, ...]) -> list[Event]:
    """Proofpoint follows every link, the pixel and the unsubscribe link, each request from a
    different address with a different user agent (mautic#9798)."""
    return _sweep(rng.uniform(2, 600), [*links, "open", "unsubscribe"], a.proofpoint, lambda: browser(rng), rng)


def s_gateway_fetch(rng: random.Random, a: Addresses, links: tuple[str, ...]) -> list[Event]:
    """A Mimecast, Proofpoint or Barracuda fetch of one link from the vendor's network with an
    ordinary browser, within ten minutes of delivery (delivery-time or rescan)."""
    _, ip = a.gateway()
    return [Event(rng.uniform(15, 540), rng.choice(links), ip, browser(rng))]


def s_cloud_burst(rng: random.Random, a: Addresses, links: tuple[str, ...]) -> list[Event]:
    """A cloud scanner with an ordinary browser: every visible link and the unsubscribe page
    within a second, from one address, starting any time after the instant window."""
    ip, ua = a.cloud(), browser(rng)
    targets = [*links, "unsubscribe"] + (["open"] if rng.random() < 0.5 else [])
    return _sweep(rng.uniform(11, 3600), targets, lambda: ip, lambda: ua, rng)


def s_cloud_pair(rng: random.Random, a: Addresses, links: tuple[str, ...]) -> list[Event]:
    """One link and one other URL of the message (unsubscribe page or pixel) in one second."""
    ip, ua = a.cloud(), browser(rng)
    return _sweep(rng.uniform(11, 7200), [rng.choice(links), rng.choice(("unsubscribe", "open"))],
                  lambda: ip, lambda: ua, rng, within=0.8)


def s_link_checker(rng: random.Random, a: Addresses, links: tuple[str, ...]) -> list[Event]:
    """HEAD, then a GET of the same link (FusionAuth PR #2922, laravel-passwordless-login#79)."""
    t, ip, link = rng.uniform(30, 7200), a.cloud(), rng.choice(links)
    ua = rng.choice((browser(rng), None))
    return [Event(t, link, ip, ua, "HEAD"), Event(t + rng.uniform(0.2, 3), link, ip, ua)]


def s_honest_bot(rng: random.Random, a: Addresses, links: tuple[str, ...]) -> list[Event]:
    return [Event(rng.uniform(1, 86400), rng.choice(links), a.cloud(), rng.choice(BOT_UAS))]


def s_instant(rng: random.Random, a: Addresses, links: tuple[str, ...]) -> list[Event]:
    """One link a few seconds after delivery (gophish#2115: "always a few seconds after")."""
    return [Event(rng.uniform(0.5, 9), rng.choice(links), a.cloud(), rng.choice((browser(rng), safelinks_ua(rng), "")))]


def s_rescan(rng: random.Random, a: Addresses, links: tuple[str, ...]) -> list[Event]:
    """A rescan 5 min, 12 h or 24 h after delivery (Cloudflare Area 1), every link in a second."""
    ip, ua = a.cloud(), browser(rng)
    return _sweep(rng.choice((300, 43200, 86400)) + rng.uniform(0, 30), list(links), lambda: ip, lambda: ua, rng)


def s_certain_network(rng: random.Random, a: Addresses, links: tuple[str, ...]) -> list[Event]:
    """One fetch from EOP or Barracuda's filtering tier, any time later."""
    ip = a.eop() if rng.random() < 0.5 else a.barracuda_certain()
    return [Event(rng.uniform(60, 86400), rng.choice(links), ip, browser(rng))]


def s_honeypot_renderer(rng: random.Random, a: Addresses, links: tuple[str, ...]) -> list[Event]:
    """A scanner that follows the hidden link too, and a visible one seconds later."""
    t, ip, ua = rng.uniform(11, 600), a.cloud(), browser(rng)
    return [Event(t, "honeypot", ip, ua), Event(t + rng.uniform(1.5, 5), rng.choice(links), ip, ua)]


def s_limit_one_link(rng: random.Random, a: Addresses, links: tuple[str, ...]) -> list[Event]:
    """LIMIT: one link, an ordinary browser, an unknown cloud address, 40–90 s after delivery."""
    return [Event(rng.uniform(40, 90), rng.choice(links), a.cloud(), browser(rng))]


def h_single(rng: random.Random, a: Addresses, links: tuple[str, ...]) -> list[Event]:
    return [Event(rng.uniform(120, 259200), rng.choice(links), a.person(), browser(rng), person=True)]


def h_two_links(rng: random.Random, a: Addresses, links: tuple[str, ...]) -> list[Event]:
    t, ip, ua = rng.uniform(60, 86400), a.person(), browser(rng)
    first, second = rng.sample(links, 2)
    return [Event(t, first, ip, ua, person=True), Event(t + rng.uniform(3, 90), second, ip, ua, person=True)]


def h_double_click(rng: random.Random, a: Addresses, links: tuple[str, ...]) -> list[Event]:
    t, ip, ua, link = rng.uniform(60, 86400), a.person(), browser(rng), rng.choice(links)
    return [Event(t, link, ip, ua, person=True), Event(t + rng.uniform(0.08, 0.3), link, ip, ua, person=True)]


def h_eager(rng: random.Random, a: Addresses, links: tuple[str, ...]) -> list[Event]:
    """Opens it (pixel) soon after delivery and opens every link, seconds apart."""
    t, ip, ua = rng.uniform(12, 40), a.person(), browser(rng)
    ev = [Event(t, "open", ip, ua, person=True)]
    t += rng.uniform(3, 15)
    for link in rng.sample(links, len(links)):
        ev.append(Event(t, link, ip, ua, person=True))
        t += rng.uniform(2, 8)
    return ev


def h_open_then_click(rng: random.Random, a: Addresses, links: tuple[str, ...]) -> list[Event]:
    t, ip, ua = rng.uniform(30, 86400), a.person(), browser(rng)
    return [Event(t, "open", ip, ua, person=True),
            Event(t + rng.uniform(4, 100), rng.choice(links), ip, ua, person=True)]


def h_swept_first(rng: random.Random, a: Addresses, links: tuple[str, ...]) -> list[Event]:
    """The message was swept at delivery (Safe Links, Proofpoint or a cloud scanner), then the
    person clicks from their own address within the next minutes."""
    sweep = rng.choice((s_safelinks_eop, s_proofpoint_sweep, s_cloud_burst))(rng, a, links)
    start = min(e.lag for e in sweep)
    sweep = [Event(e.lag - start + rng.uniform(0, 5), e.target, e.ip, e.ua, e.method) for e in sweep]
    ip, ua = a.person(), browser(rng)
    t = rng.uniform(25, SPAN - 20)
    ev = [Event(t, rng.choice(links), ip, ua, person=True)]
    if rng.random() < 0.4:
        ev.append(Event(t + rng.uniform(3, 15), rng.choice(links), ip, ua, person=True))
    return sweep + ev


def h_behind_gateway(rng: random.Random, a: Addresses, links: tuple[str, ...]) -> list[Event]:
    """A person behind Mimecast, Proofpoint or Barracuda: the gateway checks the link at click
    time just before the person's request, and sometimes re-checks it minutes later."""
    t, ip, ua, link = rng.uniform(60, 7200), a.person(), browser(rng), rng.choice(links)
    _, gw = a.gateway()
    ev = [Event(t - rng.uniform(0.2, 1.5), link, gw, browser(rng)), Event(t, link, ip, ua, person=True)]
    if rng.random() < 0.5:
        ev.append(Event(t + rng.uniform(30, SPAN - 5), link, a.gateway()[1], browser(rng)))
    return ev


SCANNERS: dict[str, tuple[Gen, int]] = {  # behaviour: (generator, share of the detectable scanners)
    "safelinks-eop": (s_safelinks_eop, 5), "safelinks-azure": (s_safelinks_azure, 4),
    "proofpoint-sweep": (s_proofpoint_sweep, 4), "gateway-fetch": (s_gateway_fetch, 6),
    "cloud-burst": (s_cloud_burst, 8), "cloud-pair": (s_cloud_pair, 5), "link-checker": (s_link_checker, 3),
    "honest-bot": (s_honest_bot, 3), "instant": (s_instant, 4), "rescan": (s_rescan, 3),
    "certain-network": (s_certain_network, 3), "honeypot-renderer": (s_honeypot_renderer, 2),
}
HUMANS: dict[str, tuple[Gen, int]] = {
    "single-click": (h_single, 10), "two-links": (h_two_links, 8), "double-click": (h_double_click, 6),
    "eager-reader": (h_eager, 8), "open-then-click": (h_open_then_click, 6), "swept-first": (h_swept_first, 8),
    "behind-gateway": (h_behind_gateway, 8),
}
COLLEAGUES = 6   # people behind one office address (three offices of two to four people)


def _spread(total: int, shares: dict[str, tuple[Gen, int]]) -> list[str]:
    weight = sum(s for _, s in shares.values())
    names = [n for n, (_, s) in shares.items() for _ in range(round(total * s / weight))]
    while len(names) > total:
        names.pop()
    names += list(shares)[: total - len(names)]
    return names


def script(rng: random.Random, a: Addresses, *, scanners: int, humans: int, limit: int) -> list[Recipient]:
    out: list[Recipient] = []

    def add(behaviour: str, kind: str, gen: Gen, is_limit: bool = False) -> None:
        step = rng.choice(("two-links", "two-links", "three-links"))
        out.append(Recipient(behaviour, kind, is_limit, step, gen(rng, a, STEPS[step])))

    for name in _spread(scanners - limit, SCANNERS):
        add(name, "scanner", SCANNERS[name][0])
    for _ in range(limit):
        add("LIMIT one-link-cloud", "scanner", s_limit_one_link, True)
    for name in _spread(humans - COLLEAGUES, HUMANS):
        add(name, "human", HUMANS[name][0])
    offices = [2, 2, 2] if COLLEAGUES == 6 else [COLLEAGUES]
    for size in offices:  # colleagues: one office address, one click each, minutes apart
        office = a.person()
        for _ in range(size):
            step = rng.choice(tuple(STEPS))
            ev = [Event(rng.uniform(300, 86400), rng.choice(STEPS[step]), office, browser(rng), person=True)]
            out.append(Recipient("colleagues-one-office", "human", False, step, ev))
    rng.shuffle(out)
    for r in out:
        r.start = rng.uniform(0, STAGGER)
        if r.behaviour == "colleagues-one-office":
            r.start = rng.uniform(0, min(STAGGER, 30))
    return out


# -- replay against a real server ---------------------------------------------------------------

def seed_db(db: str, recipients: list[Recipient], t0: float) -> dict[tuple[str, str], int]:
    store = open_store(db)
    now = time.time()
    links: dict[tuple[str, str], int] = {}
    with store.transaction() as tx:
        d: Any = tx  # sqlite-utils tables, untyped
        for step, names in STEPS.items():
            for name in (*names, "honeypot"):
                links[(step, name)] = d["links"].insert({
                    "campaign_id": "bench", "step_id": step, "name": name, "honeypot": int(name == "honeypot"),
                    "url": f"https://acme.example/{name}"}).last_pk
        for i, r in enumerate(recipients):
            cid = d["contacts"].insert({"email": f"r{i}@bench.example", "email_key": f"r{i}@bench.example",
                                        "created_at": now, "updated_at": now}).last_pk
            eid = d["enrollments"].insert({"campaign_id": "bench", "contact_id": cid, "enrolled_at": now,
                                           "updated_at": now, "state": "completed"}).last_pk
            first = min(e.lag for e in r.events)
            r.send_id = d["sends"].insert({
                "enrollment_id": eid, "campaign_id": "bench", "step_id": r.step, "contact_id": cid,
                "status": "sent", "next_attempt_at": now, "queued_at": now,
                "sent_at": t0 + r.start - first}).last_pk
    store.close()
    return links


def url_of(base: str, signer: Signer, r: Recipient, e: Event, links: dict[tuple[str, str], int]) -> str:
    if e.target == "open":
        return f"{base}/o/{signer.sign('open', r.send_id)}.gif"
    if e.target == "unsubscribe":
        return f"{base}/u/{signer.sign('unsubscribe', r.send_id)}"
    return f"{base}/c/{signer.sign('click', r.send_id, links[(r.step, e.target)])}"


async def replay(base: str, signer: Signer, recipients: list[Recipient], links: dict[tuple[str, str], int],
                 t0: float) -> tuple[int, float]:
    """Send every event at its time; returns (errors, worst lateness in seconds)."""
    plan = sorted(((t0 + r.start + e.lag - min(x.lag for x in r.events), r, e) for r in recipients for e in r.events),
                  key=lambda p: p[0])
    errors, late = 0, 0.0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:
        async def one(at: float, r: Recipient, e: Event) -> None:
            nonlocal errors, late
            await asyncio.sleep(max(0.0, at - time.time()))
            late = max(late, time.time() - at)
            headers = {"X-Forwarded-For": e.ip}
            if e.ua is not None:
                headers["User-Agent"] = e.ua
            else:
                headers["User-Agent"] = ""
            try:
                async with http.request(e.method, url_of(base, signer, r, e, links), headers=headers,
                                        allow_redirects=False) as resp:
                    await resp.read()
                    if resp.status not in (200, 302):
                        errors += 1
            except aiohttp.ClientError:
                errors += 1
        await asyncio.gather(*(one(at, r, e) for at, r, e in plan))
    return errors, late


def start_server(tmp: Path, db: str, settle: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cfg = tmp / "config.yaml"
    cfg.write_text(f"database: {db}\ntracking:\n  listen: 127.0.0.1:{port}\n  base_url: http://127.0.0.1:{port}\n"
                   f"  trusted_proxies: [127.0.0.1/32]\n  settle: {settle}s\n")
    env = {**os.environ, "NURTURE_SECRET": SECRET, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "nurture", "--config", str(cfg), "serve", "--no-reps-app"],
                            env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "serve.log", "wb"), cwd=ROOT)
    wait_ready(port)
    return proc, f"http://127.0.0.1:{port}"


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def wait_settled(db: str, deadline: float) -> int:
    while True:
        with sqlite3.connect(db) as conn:
            (n,) = conn.execute("SELECT count(*) FROM clicks WHERE kind = 'click' AND verdict = 'pending'").fetchone()
        if n == 0 or time.time() > deadline:
            return int(n)
        time.sleep(2)


# -- report ----------------------------------------------------------------------------------------

@dataclass
class Row:
    """One behaviour's line of the report."""

    kind: str
    n: int = 0
    judged_human: int = 0
    pending: int = 0
    misses: list[list[str]] = field(default_factory=list)


@dataclass
class Result:
    behaviours: dict[str, Row]
    people: int
    found: int
    own_scanner: int
    detectable: int
    alarms_detectable: int
    alarms: int

    @property
    def recall(self) -> float:
        return self.found / self.people if self.people else 0.0

    def precision(self, alarms: int) -> float:
        return self.found / (self.found + alarms) if self.found + alarms else 0.0

    def figures(self) -> dict[str, float | int]:
        return {"people": self.people, "people found": self.found,
                "people with an own click judged scanner": self.own_scanner, "recall": self.recall,
                "detectable scanners": self.detectable, "false alarms (detectable)": self.alarms_detectable,
                "false alarms (all scanners)": self.alarms,
                "precision (detectable)": self.precision(self.alarms_detectable),
                "precision (all)": self.precision(self.alarms)}


def evaluate(recipients: list[Recipient], db: str) -> Result:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        rows = [dict(r) for r in conn.execute("SELECT * FROM clicks WHERE kind = 'click' ORDER BY at")]
    by_send: dict[int, list[dict[str, object]]] = {}
    for row in rows:
        by_send.setdefault(int(str(row["send_id"])), []).append(row)
    table: dict[str, Row] = {}
    people = found = own_scanner = alarms = alarms_detectable = detectable = 0
    for r in recipients:
        r.rows = by_send.get(r.send_id, [])
        person_ips = {e.ip for e in r.events if e.person}
        human_rows = [x for x in r.rows if x["verdict"] == "human"]
        t = table.setdefault(r.behaviour, Row(r.kind + (" (limit)" if r.limit else "")))
        t.n += 1
        t.pending += sum(x["verdict"] == "pending" for x in r.rows)
        t.judged_human += bool(human_rows)
        if r.kind == "human":
            people += 1
            own = [x for x in r.rows if x["ip"] in person_ips]
            if any(x["verdict"] == "human" for x in own):
                found += 1
            else:
                t.misses.append(json.loads(str(own[0]["reasons"])) if own else ["no click recorded"])
            own_scanner += any(x["verdict"] == "scanner" for x in own)
        else:
            detectable += not r.limit
            if human_rows:
                alarms += 1
                alarms_detectable += not r.limit
                if not r.limit:
                    t.misses.append(json.loads(str(human_rows[0]["reasons"])))
    return Result(table, people, found, own_scanner, detectable, alarms_detectable, alarms)


def report(result: Result, *, seed: int, settle: int, errors: int, late: float, verbose: bool) -> None:
    print(f"\nseed {seed}, settle window {settle} s, {errors} request errors, worst lateness {late * 1000:.0f} ms\n")
    print(f"{'behaviour':26} {'kind':17} {'n':>3} {'judged human':>13} {'pending':>8}")
    table = result.behaviours
    for name in sorted(table, key=lambda k: (table[k].kind, k)):
        t = table[name]
        print(f"{name:26} {t.kind:17} {t.n:>3} {t.judged_human:>13} {t.pending:>8}")
        if verbose:
            for reasons in t.misses:
                print(f"{'':28}miss: {'; '.join(reasons)}")
    print()
    for key, value in result.figures().items():
        print(f"{key:42} {value:.3f}" if isinstance(value, float) else f"{key:42} {value}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--scanners", type=int, default=60, help="scanner recipients (limit ones included)")
    ap.add_argument("--limit", type=int, default=10, help="of them, the documented limit class")
    ap.add_argument("--humans", type=int, default=60)
    ap.add_argument("--settle", type=int, default=90, help="tracking.settle of the server, seconds")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the reasons behind each miss")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    scanners = parse_scanners(read_scanner_list(None).text)
    recipients = script(rng, Addresses(rng, scanners), scanners=args.scanners, humans=args.humans, limit=args.limit)
    signer = Signer({"k1": SECRET.encode()}, current="k1")
    with tempfile.TemporaryDirectory(prefix="nurture-judge-") as tmpdir:
        tmp = Path(tmpdir)
        db = str(tmp / "judge.db")
        open_store(db).close()
        proc, base = start_server(tmp, db, args.settle)
        try:
            t0 = time.time() + WARMUP
            links = seed_db(db, recipients, t0)
            span = max(r.start + max(e.lag for e in r.events) - min(e.lag for e in r.events) for r in recipients)
            print(f"{len(recipients)} recipients, {sum(len(r.events) for r in recipients)} requests over "
                  f"{span:.0f} s, then the {args.settle} s settle window", flush=True)
            errors, late = asyncio.run(replay(base, signer, recipients, links, t0))
            left = wait_settled(db, time.time() + args.settle + 60)
            if left:
                print(f"warning: {left} clicks still pending")
            result = evaluate(recipients, db)
        finally:
            stop(proc)
    report(result, seed=args.seed, settle=args.settle, errors=errors, late=late, verbose=args.verbose)
    if args.json:
        behaviours = {k: {"kind": v.kind, "n": v.n, "judged human": v.judged_human, "pending": v.pending}
                      for k, v in result.behaviours.items()}
        Path(args.json).write_text(json.dumps({"seed": args.seed, "settle": args.settle, **result.figures(),
                                               "behaviours": behaviours}, indent=2))


if __name__ == "__main__":
    main()
