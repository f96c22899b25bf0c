"""Who clicked: a person, or a mail-security scanner? Pure functions, no I/O.

Corporate mail gateways (Microsoft Defender Safe Links, Mimecast, Proofpoint, Barracuda …)
fetch the links of a message seconds to minutes after delivery. :func:`judge` scores one
click from the signals in ``docs/tracking.md`` and keeps readable reasons. A click is
``scanner`` as soon as a decisive signal is seen or its weak signals add up to
:data:`SCANNER_SCORE`, ``human`` only after the settle window passed without that, and
``pending`` until then. The message's other requests are evidence too: its other clicks,
its honeypot, its open pixel and its unsubscribe page (each a different URL).
"""

from __future__ import annotations

import bisect
import ipaddress
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from nurture.models import Click, ClickVerdict

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Weak signals add up; a click at or above this is a machine.
SCANNER_SCORE = 1.0
#: ≤ this long after delivery (or any time before it) is "instant" (published cut-offs 1.5–10 s).
INSTANT = timedelta(seconds=10)
#: Two different URLs of one message within this span from one address: a machine. A person's
#: double-click repeats one URL; a person opening a second link takes seconds (Marketo's
#: proximity rule: "under 1 second").
BURST_SPAN = timedelta(seconds=1)
#: This many different URLs of one message within BURST_SPAN from any addresses (a sweep
#: spread over a vendor's pool: Proofpoint comes "from different IPs", mautic#9798).
SPREAD_URLS = 3
#: Every visible link of a message (at least ALL_LINKS_MIN) from one address within this span.
ALL_LINKS_MIN = 2
ALL_LINKS_SPAN = timedelta(seconds=60)
#: The unsubscribe page fetched from the clicking address within this span of the click.
UNSUBSCRIBE_SPAN = timedelta(seconds=60)
#: A HEAD from the clicking address for this message within this span (link checkers send
#: HEAD, "perhaps followed by a GET"): the GET is the checker's too.
HEAD_SPAN = timedelta(seconds=60)
#: A hit on the honeypot marks the same address's requests of the message this close to it.
HONEYPOT_SPAN = timedelta(minutes=10)
#: "probable" scanner networks count as decisive this soon after delivery (a line of the
#: scanner list may set its own window).
PROBABLE_WINDOW = timedelta(minutes=10)
#: A probable network's click outside its window is still the gateway's when the message was
#: clicked from another address this close to it (click-time checks, re-checks).
GATEWAY_SPAN = timedelta(minutes=30)
#: Same IP clicking for this many different recipients (near in time) is a shared scanner.
IP_RECIPIENTS_SUSPECT = 3
IP_RECIPIENTS_SCANNER = 10
#: A Windows Chrome whose major version was released this long ago (see _CHROME_RELEASES).
STALE_CHROME = timedelta(days=270)

#: The weak signals and what each adds to the score (the table in docs/tracking.md).
WEIGHTS: dict[str, float] = {
    "instant": 0.6,           # ≤ 10 s after delivery
    "unsubscribe_page": 0.6,  # the unsubscribe page from the same address within 60 s
    "empty_ua": 0.6,          # no User-Agent at all
    "shared_ip": 0.5,         # the same IP clicked for 3–9 recipients within ±10 min
    "spread_pair": 0.5,       # two different URLs within 1 s, from different addresses
    "probable_late": 0.5,     # a probable scanner network outside its window
    "all_links": 0.4,         # every visible link (≥ 2) from one address within 60 s
    "stale_chrome": 0.4,      # Windows Chrome released more than 270 days ago
    "honeypot_late": 0.4,     # the same address hit the honeypot, but more than 10 min away
}

# Chrome stable release dates of some major versions (MDN browser-compat-data
# browsers/chrome.json up to 135; later ones from the Chromium release schedule: 150 on
# 2026-06-30, 151 on 2026-07-28, 152 on 2026-08-25; from 153 on 2026-09-08 a release every
# two weeks, as announced on the Chrome developer blog). Between anchors the date is
# interpolated; before the first, four weeks a version (older Chrome shipped more slowly, so
# this makes old versions look younger, never older); after the last, two weeks a version.
_CHROME_RELEASES: tuple[tuple[int, datetime], ...] = tuple(
    (v, datetime.fromisoformat(d).replace(tzinfo=UTC)) for v, d in (
        (103, "2022-06-21"), (110, "2023-02-07"), (120, "2023-12-05"), (125, "2024-05-14"),
        (131, "2024-11-12"), (132, "2025-01-14"), (135, "2025-04-01"), (143, "2025-12-02"),
        (150, "2026-06-30"), (151, "2026-07-28"), (152, "2026-08-25"), (153, "2026-09-08"),
    ))
_CHROME = re.compile(r"Chrome/(\d+)\.")


@dataclass(frozen=True, slots=True)
class ScannerNetwork:
    network: IPNetwork
    certain: bool
    label: str
    first: int = 0  # the range as integers: the tracker checks every click against the list
    last: int = 0
    window: timedelta | None = None  # probable only: its own window instead of PROBABLE_WINDOW

    @classmethod
    def of(cls, network: IPNetwork, certain: bool, label: str,
           window: timedelta | None = None) -> ScannerNetwork:
        return cls(network, certain, label, int(network.network_address), int(network.broadcast_address),
                   window)


@dataclass(frozen=True, slots=True)
class Scanners:
    """Known scanner networks and user-agent tokens (``nurture/data/scanners.txt``)."""

    networks: tuple[ScannerNetwork, ...] = ()
    ua_tokens: tuple[tuple[str, str], ...] = ()  # (lower-case token, label)

    def network_of(self, ip: str | None) -> ScannerNetwork | None:
        """The listed network ``ip`` falls in, certain ones first; None if none or not an IP."""
        addr = _address(ip)
        if addr is None:
            return None
        a, version = int(addr), addr.version
        found = [n for n in self.networks if n.first <= a <= n.last and n.network.version == version]
        found.sort(key=lambda n: (not n.certain, -n.network.prefixlen))
        return found[0] if found else None

    def ua_token(self, user_agent: str | None) -> tuple[str, str] | None:
        ua = (user_agent or "").lower()
        for token, label in self.ua_tokens:
            if token in ua:
                return token, label
        return None


@dataclass(frozen=True, slots=True)
class Verdict:
    """``verdict`` is ``human``, ``scanner`` or ``pending``; ``score`` 0 (person) … 1 (machine)."""

    verdict: ClickVerdict
    score: float
    reasons: tuple[str, ...] = field(default=())


def parse_scanners(text: str, *, source: str = "scanners.txt") -> Scanners:
    """Parse the scanner list format (see the shipped file). Raises ValueError with the line."""
    networks: list[ScannerNetwork] = []
    tokens: list[tuple[str, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        try:
            if parts[0] == "net" and 3 <= len(parts) <= 5 and parts[2] in ("certain", "probable"):
                label = parts[3] if len(parts) > 3 else "scanner network"
                window = _window(parts[4]) if len(parts) > 4 else None
                if window is not None and parts[2] == "certain":
                    raise ValueError("a window is only for probable networks")
                networks.append(ScannerNetwork.of(ipaddress.ip_network(parts[1], strict=False),
                                                  parts[2] == "certain", label, window))
                continue
            if parts[0] == "ua" and len(parts) >= 2:
                tokens.append((parts[1].lower(), parts[2] if len(parts) > 2 else "scanner"))
                continue
        except ValueError as e:
            raise ValueError(f"{source}:{number}: {e}") from None
        raise ValueError(f'{source}:{number}: expected "net <cidr> certain|probable <label> [window]" '
                         f'or "ua <token> <label>", got "{line}"')
    return Scanners(networks=tuple(networks), ua_tokens=tuple(tokens))


def immediate_verdict(*, method: str, ip: str | None, user_agent: str | None,
                      honeypot: bool, scanners: Scanners) -> Verdict | None:
    """What the tracker can decide at request time without history: HEAD, a certain scanner
    network, a scanner user agent or the honeypot link mean ``scanner`` now. None otherwise."""
    reasons = _decisive(method=method, ip=ip, user_agent=user_agent, honeypot=honeypot,
                        scanners=scanners)
    return Verdict("scanner", 1.0, tuple(reasons)) if reasons else None


def judge(
    click: Click,
    *,
    delivered_at: datetime | None,
    other_clicks_of_send: Sequence[Click],
    honeypot_hit: bool,
    ip_recipients_count: int,
    networks: Scanners,
    now: datetime,
    settle: timedelta = timedelta(seconds=90),
    link_count: int = 0,
    honeypot_link: bool = False,
    honeypot_ids: Collection[int] = (),
) -> Verdict:
    """Judge one click.

    ``delivered_at`` is the SMTP accept time of its message; ``other_clicks_of_send`` every
    other request of the same message: clicks (any verdict, the honeypot's too), opens and
    unsubscribe-page fetches (``Click.kind``); ``honeypot_ids`` the message's hidden link ids;
    ``honeypot_hit`` whether this click's IP requested the hidden link (decided here from the
    honeypot's rows when they are among the others); ``ip_recipients_count`` how many different
    recipients clicked from this IP around this time (this one included); ``link_count`` the
    message's visible tracked links; ``honeypot_link`` whether this click *is* the hidden link.
    """
    reasons = _decisive(method=click.method, ip=click.ip, user_agent=click.user_agent,
                        honeypot=honeypot_link, scanners=networks)
    soft: list[tuple[float, str]] = []
    instant = False
    others = [c for c in other_clicks_of_send if c.id != click.id]
    hidden = frozenset(honeypot_ids)
    same = [c for c in others if click.ip and c.ip == click.ip]

    if honeypot_hit and not honeypot_link:
        traps = [c for c in same if c.kind == "click" and c.link_id in hidden]
        if not traps or any(abs(c.at - click.at) <= HONEYPOT_SPAN for c in traps):
            reasons.append("same IP requested the message's hidden honeypot link")
        else:
            soft.append((WEIGHTS["honeypot_late"],
                         f"same IP requested the hidden honeypot link, more than {_secs(HONEYPOT_SPAN)} away"))

    lag = click.at - delivered_at if delivered_at is not None else None
    net = networks.network_of(click.ip)
    if lag is not None:
        if lag < timedelta(0):
            reasons.append(f"{_secs(-lag)} before delivery (scan-then-deliver)")
        elif lag <= INSTANT:
            instant = True
            soft.append((WEIGHTS["instant"], f"{_secs(lag)} after delivery (instant window ≤ {_secs(INSTANT)})"))
    if net is not None and not net.certain:
        window = net.window or PROBABLE_WINDOW
        elsewhere = [c for c in others if c.kind == "click" and c.method != "HEAD" and c.ip
                     and c.ip != click.ip and c.link_id not in hidden and networks.network_of(c.ip) is None
                     and abs(c.at - click.at) <= GATEWAY_SPAN]
        swept = {_url(c, hidden) for c in others if c.ip != click.ip and networks.network_of(c.ip) is not None
                 and abs(c.at - click.at) <= ALL_LINKS_SPAN} - {_url(click, hidden)}
        if lag is not None and timedelta(0) <= lag <= window:
            reasons.append(f"from {net.network} ({net.label}) {_secs(lag)} after delivery "
                           f"(probable window {_secs(window)})")
        elif swept:
            reasons.append(f"from {net.network} ({net.label}) while other URLs of the message were fetched "
                           f"from scanner networks within {_secs(ALL_LINKS_SPAN)} (a sweep)")
        elif elsewhere:
            reasons.append(f"from {net.network} ({net.label}) while the message was clicked from "
                           f"{elsewhere[0].ip}: the gateway's check of a person's click")
        elif lag is None or lag > window:
            soft.append((WEIGHTS["probable_late"], f"from {net.network} ({net.label}), outside its window"))

    # Bursts: different URLs of this message within about a second.
    near_same = [c for c in same if abs(c.at - click.at) <= BURST_SPAN]
    urls = {_url(c, hidden) for c in near_same} | {_url(click, hidden)}
    if len(urls) >= 2:
        reasons.append(f"burst: {len(urls)} different URLs of this message ({', '.join(sorted(urls))}) "
                       f"within {_secs(BURST_SPAN)} from one address")
    else:
        near_any = [c for c in others if abs(c.at - click.at) <= BURST_SPAN]
        spread = {_url(c, hidden) for c in near_any} | {_url(click, hidden)}
        addresses = {c.ip for c in near_any} | {click.ip}
        if len(spread) >= SPREAD_URLS:
            reasons.append(f"burst: {len(spread)} different URLs of this message within {_secs(BURST_SPAN)} "
                           f"from {len(addresses)} addresses")
        elif len(spread - {"open pixel"}) >= 2:
            soft.append((WEIGHTS["spread_pair"], f"another URL of this message within {_secs(BURST_SPAN)} "
                                                 "from another address"))

    heads = [c for c in same if c.method.upper() == "HEAD" and abs(c.at - click.at) <= HEAD_SPAN]
    if heads and click.method.upper() != "HEAD":
        reasons.append(f"the same address sent HEAD for this message {_secs(abs(heads[0].at - click.at))} "
                       "away (a link checker)")

    unsub = [c for c in same if c.kind == "unsubscribe" and abs(c.at - click.at) <= UNSUBSCRIBE_SPAN]
    if unsub and not any(abs(c.at - click.at) <= BURST_SPAN for c in unsub):
        soft.append((WEIGHTS["unsubscribe_page"],
                     f"the unsubscribe page fetched from the same address within {_secs(UNSUBSCRIBE_SPAN)}"))
    if link_count >= ALL_LINKS_MIN and not honeypot_link and click.link_id not in hidden:
        span = {c.link_id for c in same if c.kind == "click" and c.link_id is not None
                and c.link_id not in hidden and abs(c.at - click.at) <= ALL_LINKS_SPAN}
        if len(span | {click.link_id}) >= link_count:
            soft.append((WEIGHTS["all_links"], f"all {link_count} links of the message from one address "
                                               f"within {_secs(ALL_LINKS_SPAN)}"))

    if ip_recipients_count >= IP_RECIPIENTS_SCANNER:
        reasons.append(f"same IP clicked for {ip_recipients_count} recipients")
    elif ip_recipients_count >= IP_RECIPIENTS_SUSPECT:
        soft.append((WEIGHTS["shared_ip"], f"same IP clicked for {ip_recipients_count} recipients"))
    ua = click.user_agent or ""
    if not ua.strip():
        soft.append((WEIGHTS["empty_ua"], "empty user agent"))
    elif "Windows" in ua:
        released = chrome_release(ua)
        if released is not None and now - released >= STALE_CHROME:
            soft.append((WEIGHTS["stale_chrome"], f"Windows Chrome released {(now - released).days} days ago "
                                                  "(Safe Links-style)"))

    score = min(1.0, (1.0 if reasons else 0.0) + sum(w for w, _ in soft))
    all_reasons = tuple(reasons + [r for _, r in soft])
    if reasons or score >= SCANNER_SCORE - 1e-9:
        return Verdict("scanner", round(score, 2), all_reasons)
    if now - click.at < settle:
        return Verdict("pending", round(score, 2), all_reasons)
    if instant:
        # An instant click on its own is "suspect" and fires no automation.
        return Verdict("scanner", round(score, 2),
                       (*all_reasons, "suspect: instant click, no later activity proves a person"))
    return Verdict("human", round(score, 2),
                   all_reasons or (f"no scanner signal within {_secs(settle)}",))


def chrome_release(user_agent: str) -> datetime | None:
    """When the Chrome major version in ``user_agent`` reached the stable channel (from the
    published schedule, see ``_CHROME_RELEASES``); None for no Chrome, or for the new Outlook
    client (its Edge/Chrome version says nothing about a scanner, next-auth#1840)."""
    m = _CHROME.search(user_agent)
    if not m or ("Edg/" in user_agent and "OneOutlook" in user_agent):
        return None
    version = int(m.group(1))
    majors = [v for v, _ in _CHROME_RELEASES]
    i = bisect.bisect_right(majors, version)
    if i == 0:
        v0, d0 = _CHROME_RELEASES[0]
        return d0 - (v0 - version) * timedelta(weeks=4)
    v0, d0 = _CHROME_RELEASES[i - 1]
    if i == len(_CHROME_RELEASES):
        return d0 + (version - v0) * timedelta(weeks=2)
    v1, d1 = _CHROME_RELEASES[i]
    return d0 + (d1 - d0) * (version - v0) / (v1 - v0)


def _url(c: Click, hidden: frozenset[int]) -> str:
    """Which URL of the message a request fetched, for the burst rules."""
    if c.kind == "open":
        return "open pixel"
    if c.kind == "unsubscribe":
        return "unsubscribe page"
    if c.link_id in hidden:
        return "hidden link"
    return f"link {c.link_id}"


def _window(text: str) -> timedelta:
    m = re.fullmatch(r"(\d+)([smhd])", text)
    if not m:
        raise ValueError(f'a window is a number and s, m, h or d, got "{text}"')
    return timedelta(seconds=int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)])


def _decisive(*, method: str, ip: str | None, user_agent: str | None, honeypot: bool,
              scanners: Scanners) -> list[str]:
    reasons: list[str] = []
    if method.upper() == "HEAD":
        reasons.append("HEAD request (link checkers; never a click)")
    if honeypot:
        reasons.append("hidden honeypot link (no person can see it)")
    net = scanners.network_of(ip)
    if net is not None and net.certain:
        reasons.append(f"from {net.network} ({net.label}, a mail-filtering network)")
    tok = scanners.ua_token(user_agent)
    if tok is not None:
        reasons.append(f'user agent names a scanner ("{tok[0]}": {tok[1]})')
    return reasons


def _address(ip: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not ip:
        return None
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _secs(delta: timedelta) -> str:
    s = delta.total_seconds()
    if s >= 3600 and s % 3600 == 0:
        return f"{s / 3600:.0f} h"
    if s >= 120 and s % 60 == 0:
        return f"{s / 60:.0f} min"
    return f"{s:.0f} s" if s >= 10 or s == int(s) else f"{s:.1f} s"
