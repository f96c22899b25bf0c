"""The settle pass: pending clicks, once their window has passed, judged human or scanner.

The judge itself is pure (:mod:`nurture.clicks`); this module feeds it what the store knows
about each click's send and stores the verdicts. It runs on the store's writer thread.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta

from nurture.clicks import Scanners, judge, parse_scanners
from nurture.config import ScannerList, Settings
from nurture.errors import ConfigError
from nurture.store import Store
from nurture.store.tracking import SettledVerdict


@dataclass(frozen=True, slots=True)
class SettleResult:
    """How many clicks one pass judged, by verdict (``pending``: still in their window)."""

    human: int = 0
    scanner: int = 0
    pending: int = 0


@functools.lru_cache(maxsize=8)
def scanners_of(scanner_list: ScannerList) -> Scanners:
    """The parsed scanner list (``settings.tracking.scanner_list``); ConfigError on a bad line."""
    try:
        return parse_scanners(scanner_list.text, source=scanner_list.source)
    except ValueError as e:
        raise ConfigError(str(e), field="tracking.scanner_networks") from None


def settle_clicks(store: Store, settings: Settings, *, now: datetime, limit: int = 2000) -> SettleResult:
    """Judge pending clicks whose window has passed and store their verdicts. Synchronous: runs
    on the store thread (``await astore.run(lambda s: settle_clicks(s, settings, now=now))``)."""
    scanners = scanners_of(settings.tracking.scanner_list)
    settle = timedelta(seconds=settings.tracking.settle_seconds)
    verdicts: list[SettledVerdict] = []
    counts = {"human": 0, "scanner": 0, "pending": 0}
    # Only clicks whose window has passed: each is decided once, none is re-read every pass.
    for item in store.pending_clicks(before=now - settle, limit=limit):
        v = judge(item.click, delivered_at=item.delivered_at, other_clicks_of_send=item.other_clicks,
                  honeypot_hit=item.honeypot_hit, ip_recipients_count=item.ip_recipients,
                  networks=scanners, now=now, settle=settle, link_count=item.link_count,
                  honeypot_link=item.honeypot_link, honeypot_ids=item.honeypot_ids)
        counts[v.verdict] += 1
        verdicts.append(SettledVerdict(item.click.id, v.verdict, v.score, v.reasons))
    if verdicts:
        store.save_verdicts(verdicts, now=now)
    return SettleResult(**counts)
