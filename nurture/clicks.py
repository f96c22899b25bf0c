"""Who clicked: a person, or a mail-security scanner? Pure functions, no I/O.

Corporate mail gateways (Microsoft Defender Safe Links, Mimecast, Proofpoint, Barracuda …)
fetch every link of a message seconds to minutes after delivery. :func:`judge` scores one
click from the signals in ``docs/tracking.md`` (each backed by the reference on mail
scanners) and keeps readable reasons. A click is ``scanner`` as soon as a decisive signal is
seen, ``human`` only after the settle window passed with none, and ``pending`` until then.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from nurture.models import Click

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Scores add up; a click at or above this is a machine.
SCANNER_SCORE = 1.0
#: ≤ this long after delivery (or any time before it) is "instant" (reference rule 3: 10 s).
INSTANT = timedelta(seconds=10)
#: Burst: this many clicks of one message within BURST_SPAN (reference rule 4, Marketo).
BURST_CLICKS = 3
BURST_SPAN = timedelta(seconds=1)
#: Every link of a message (at least ALL_LINKS_MIN of them) clicked within this span.
ALL_LINKS_MIN = 3
ALL_LINKS_SPAN = timedelta(seconds=60)
#: "probable" scanner networks count only this soon after delivery (reference rule 5).
PROBABLE_WINDOW = timedelta(minutes=5)
#: Same IP clicking for this many different recipients (near in time) is a shared scanner.
IP_RECIPIENTS_SUSPECT = 3
IP_RECIPIENTS_SCANNER = 10
#: Windows Chrome this many major versions behind the current one (reference rule 7).
STALE_CHROME_VERSIONS = 8

# Chrome ships a major version every four weeks; 131 was released on 2024-11-12.
_CHROME_ANCHOR = (131, datetime(2024, 11, 12, tzinfo=UTC))
_CHROME = re.compile(r"Chrome/(\d+)\.")


@dataclass(frozen=True, slots=True)
class ScannerNetwork:
    network: IPNetwork
    certain: bool
    label: str
    first: int = 0  # the range as integers: the tracker checks every click against the list
    last: int = 0

    @classmethod
    def of(cls, network: IPNetwork, certain: bool, label: str) -> ScannerNetwork:
        return cls(network, certain, label, int(network.network_address), int(network.broadcast_address))


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

    verdict: str
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
            if parts[0] == "net" and len(parts) >= 3 and parts[2] in ("certain", "probable"):
                label = parts[3] if len(parts) > 3 else "scanner network"
                networks.append(ScannerNetwork.of(ipaddress.ip_network(parts[1], strict=False),
                                                  parts[2] == "certain", label))
                continue
            if parts[0] == "ua" and len(parts) >= 2:
                tokens.append((parts[1].lower(), parts[2] if len(parts) > 2 else "scanner"))
                continue
        except ValueError as e:
            raise ValueError(f"{source}:{number}: {e}") from None
        raise ValueError(f'{source}:{number}: expected "net <cidr> certain|probable <label>" '
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
) -> Verdict:
    """Judge one click.

    ``delivered_at`` is the SMTP accept time of its message; ``other_clicks_of_send`` every
    other click of the same message (any verdict); ``honeypot_hit`` whether this click's IP
    requested the message's hidden link; ``ip_recipients_count`` how many different recipients
    clicked from this IP around this time (this one included); ``link_count`` the message's
    visible tracked links; ``honeypot_link`` whether this click *is* the hidden link.
    """
    reasons = _decisive(method=click.method, ip=click.ip, user_agent=click.user_agent,
                        honeypot=honeypot_link, scanners=networks)
    if honeypot_hit and not honeypot_link:
        reasons.append("same IP requested the message's hidden honeypot link")
    soft: list[tuple[float, str]] = []
    instant = False

    if delivered_at is not None:
        lag = click.at - delivered_at
        if lag < timedelta(0):
            reasons.append(f"{_secs(-lag)} before delivery (scan-then-deliver)")
        elif lag <= INSTANT:
            instant = True
            soft.append((0.6, f"{_secs(lag)} after delivery (instant window ≤ {_secs(INSTANT)})"))
        net = networks.network_of(click.ip)
        if net is not None and not net.certain and lag <= PROBABLE_WINDOW:
            reasons.append(f"from {net.network} ({net.label}) {_secs(lag)} after delivery")

    clicks = [c for c in other_clicks_of_send if c.id != click.id and c.method != "HEAD"]
    near = [c for c in clicks if abs(c.at - click.at) <= BURST_SPAN]
    if _max_in_span([click, *near], BURST_SPAN) >= BURST_CLICKS:
        reasons.append(f"burst: {len(near) + 1} clicks of this message within {_secs(BURST_SPAN)}")
    if link_count >= ALL_LINKS_MIN and not honeypot_link:
        span = [c for c in clicks if abs(c.at - click.at) <= ALL_LINKS_SPAN and c.link_id is not None]
        links = {c.link_id for c in span} | {click.link_id}
        if len(links) >= link_count:
            reasons.append(f"all {link_count} links of the message clicked within {_secs(ALL_LINKS_SPAN)}")

    if ip_recipients_count >= IP_RECIPIENTS_SCANNER:
        reasons.append(f"same IP clicked for {ip_recipients_count} recipients")
    elif ip_recipients_count >= IP_RECIPIENTS_SUSPECT:
        soft.append((0.5, f"same IP clicked for {ip_recipients_count} recipients"))
    ua = click.user_agent or ""
    if not ua.strip():
        soft.append((0.4, "empty user agent"))
    else:
        behind = _chrome_behind(ua, now)
        if behind is not None and behind >= STALE_CHROME_VERSIONS and "Windows" in ua:
            soft.append((0.4, f"Windows Chrome {behind} versions old (Safe Links-style)"))

    score = min(1.0, (1.0 if reasons else 0.0) + sum(w for w, _ in soft))
    all_reasons = tuple(reasons + [r for _, r in soft])
    if reasons or score >= SCANNER_SCORE:
        return Verdict("scanner", round(score, 2), all_reasons)
    if now - click.at < settle:
        return Verdict("pending", round(score, 2), all_reasons)
    if instant:
        # Reference rule 3: an instant click on its own is "suspect" and fires no automation.
        return Verdict("scanner", round(score, 2),
                       (*all_reasons, "suspect: instant click, no later activity proves a person"))
    return Verdict("human", round(score, 2),
                   all_reasons or (f"no scanner signal within {_secs(settle)}",))


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


def _max_in_span(clicks: Sequence[Click], span: timedelta) -> int:
    times = sorted(c.at for c in clicks)
    best = 0
    start = 0
    for end, t in enumerate(times):
        while t - times[start] > span:
            start += 1
        best = max(best, end - start + 1)
    return best


def _chrome_behind(user_agent: str, now: datetime) -> int | None:
    m = _CHROME.search(user_agent)
    if not m or ("Edg/" in user_agent and "OneOutlook" in user_agent):
        return None  # the new Outlook client (next-auth#1840): its age says nothing
    version, anchor = _CHROME_ANCHOR
    current = version + int((now - anchor) / timedelta(weeks=4))
    return current - int(m.group(1))


def _secs(delta: timedelta) -> str:
    s = delta.total_seconds()
    return f"{s:.0f} s" if s >= 10 or s == int(s) else f"{s:.1f} s"
