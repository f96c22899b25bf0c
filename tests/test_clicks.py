"""The click judge: pure functions, judged against the reference's scanner evidence."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from nurture.clicks import Scanners, immediate_verdict, judge, parse_scanners
from nurture.config import read_scanner_list
from nurture.models import Click
from nurture.settle import scanners_of

BROWSER = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/146.0.0.0 Safari/537.36")
SAFE_LINKS = ("Mozilla/5.0 (Windows NT 6.1) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/57.0.2987.133 Safari/537.36")
SETTLE = timedelta(seconds=90)


@pytest.fixture(scope="module")
def scanners() -> Scanners:
    return scanners_of(read_scanner_list(None))


def mk(i: int, at: datetime, *, link: int = 1, ip: str = "198.51.100.20", ua: str | None = BROWSER,
       method: str = "GET") -> Click:
    return Click(id=i, send_id=1, link_id=link, at=at, ip=ip, user_agent=ua, method=method)


def run(click: Click, scanners: Scanners, *, delivered: datetime, others=(), now: datetime,
        honeypot_hit=False, ip_recipients=1, link_count=3, honeypot_link=False):
    return judge(click, delivered_at=delivered, other_clicks_of_send=others, honeypot_hit=honeypot_hit,
                 ip_recipients_count=ip_recipients, networks=scanners, now=now, settle=SETTLE,
                 link_count=link_count, honeypot_link=honeypot_link)


def test_shipped_list_parses_with_microsoft_and_barracuda(scanners):
    assert scanners.network_of("40.107.218.12").label == "microsoft-eop"
    assert scanners.network_of("104.47.1.254").certain
    assert scanners.network_of("2a01:111:f400::1").label == "microsoft-eop"
    assert scanners.network_of("::ffff:40.107.1.1").label == "microsoft-eop"  # v4-mapped
    assert scanners.network_of("209.222.82.10").label == "barracuda"
    assert not scanners.network_of("40.94.16.3").certain  # Azure: probable only
    assert scanners.network_of("198.51.100.20") is None
    assert scanners.network_of("not an ip") is None
    assert scanners.ua_token("Barracuda Sentinel (EE)")[1] == "barracuda"
    assert scanners.ua_token(BROWSER) is None


def test_parse_rejects_bad_lines_with_line_number():
    with pytest.raises(ValueError, match="x.txt:2"):
        parse_scanners("net 10.0.0.0/8 certain a\nnet 10.0.0.0/33 certain b\n", source="x.txt")
    with pytest.raises(ValueError, match="x.txt:1"):
        parse_scanners("host example.com\n", source="x.txt")
    assert parse_scanners("# only comments\n\n").networks == ()


def test_head_is_never_a_click(scanners, now):
    v = immediate_verdict(method="HEAD", ip="198.51.100.20", user_agent=BROWSER, honeypot=False, scanners=scanners)
    assert v.verdict == "scanner" and "HEAD" in v.reasons[0]
    later = run(mk(1, now, method="HEAD"), scanners, delivered=now - timedelta(hours=2), now=now + timedelta(hours=1))
    assert later.verdict == "scanner"


def test_eop_network_is_machine_at_any_time(scanners, now):
    v = run(mk(1, now, ip="40.107.235.20"), scanners, delivered=now - timedelta(days=3), now=now + timedelta(hours=1))
    assert v.verdict == "scanner"
    assert any("40.107.0.0/16" in r for r in v.reasons)


def test_probable_network_only_soon_after_delivery(scanners, now):
    soon = run(mk(1, now, ip="40.94.16.7"), scanners, delivered=now - timedelta(minutes=2), now=now + SETTLE)
    assert soon.verdict == "scanner"
    later = run(mk(1, now, ip="40.94.16.7"), scanners, delivered=now - timedelta(hours=2), now=now + SETTLE)
    assert later.verdict == "human"


def test_honeypot_link_and_same_ip_honeypot_hit(scanners, now):
    assert immediate_verdict(method="GET", ip="198.51.100.20", user_agent=BROWSER, honeypot=True,
                             scanners=scanners).verdict == "scanner"
    v = run(mk(1, now), scanners, delivered=now - timedelta(minutes=5), honeypot_hit=True, now=now + SETTLE)
    assert v.verdict == "scanner" and any("honeypot" in r for r in v.reasons)


def test_scanner_user_agent(scanners, now):
    v = immediate_verdict(method="GET", ip="198.51.100.20", user_agent="python-requests/2.32.3",
                          honeypot=False, scanners=scanners)
    assert v.verdict == "scanner" and "python-requests" in v.reasons[0]
    assert immediate_verdict(method="GET", ip="198.51.100.20", user_agent=BROWSER, honeypot=False,
                             scanners=scanners) is None


def test_burst_of_three_within_a_second(scanners, now):
    delivered = now - timedelta(hours=1)
    clicks = [mk(i, now + timedelta(milliseconds=300 * i), link=1 + i % 2) for i in range(3)]
    v = run(clicks[0], scanners, delivered=delivered, others=clicks[1:], now=now + SETTLE)
    assert v.verdict == "scanner" and any("burst" in r for r in v.reasons)
    # Two clicks a second apart is a person opening two tabs.
    v2 = run(clicks[0], scanners, delivered=delivered, others=[mk(9, now + timedelta(seconds=1.5))], now=now + SETTLE)
    assert v2.verdict == "human"


def test_all_links_within_a_minute(scanners, now):
    delivered = now - timedelta(hours=1)
    clicks = [mk(i, now + timedelta(seconds=20 * i), link=i + 1) for i in range(3)]
    v = run(clicks[1], scanners, delivered=delivered, others=[clicks[0], clicks[2]], now=now + SETTLE)
    assert v.verdict == "scanner" and any("all 3 links" in r for r in v.reasons)
    # The same three links over half an hour: a person reading the email.
    slow = [mk(i, now + timedelta(minutes=15 * i), link=i + 1) for i in range(3)]
    v2 = run(slow[1], scanners, delivered=delivered, others=[slow[0], slow[2]], now=now + timedelta(hours=1))
    assert v2.verdict == "human"


def test_before_delivery_is_machine(scanners, now):
    v = run(mk(1, now), scanners, delivered=now + timedelta(seconds=2), now=now + SETTLE)
    assert v.verdict == "scanner" and "before delivery" in v.reasons[0]


def test_instant_click_waits_then_stays_suspect(scanners, now):
    click = mk(1, now + timedelta(seconds=4))
    assert run(click, scanners, delivered=now, now=now + timedelta(seconds=30)).verdict == "pending"
    v = run(click, scanners, delivered=now, now=now + timedelta(seconds=4) + SETTLE)
    assert v.verdict == "scanner" and any("suspect" in r for r in v.reasons)
    # Instant plus a corroborating weak signal is machine at once.
    v2 = run(mk(1, now + timedelta(seconds=4), ua=""), scanners, delivered=now, now=now + timedelta(seconds=5))
    assert v2.verdict == "scanner" and v2.score >= 1.0


def test_lone_quick_browser_click_is_pending_then_human(scanners, now):
    click = mk(1, now + timedelta(seconds=45))
    pending = run(click, scanners, delivered=now, now=now + timedelta(seconds=60))
    assert pending.verdict == "pending"
    v = run(click, scanners, delivered=now, now=now + timedelta(seconds=45) + SETTLE)
    assert v.verdict == "human" and v.score == 0.0 and v.reasons


def test_shared_ip_across_recipients(scanners, now):
    delivered = now - timedelta(hours=1)
    assert run(mk(1, now), scanners, delivered=delivered, ip_recipients=12, now=now).verdict == "scanner"
    weak = run(mk(1, now), scanners, delivered=delivered, ip_recipients=4, now=now + SETTLE)
    assert weak.verdict == "human" and weak.score == 0.5  # an office NAT: weak on its own


def test_stale_windows_chrome_only_raises_the_score(scanners, now):
    v = run(mk(1, now, ua=SAFE_LINKS), scanners, delivered=now - timedelta(hours=3), now=now + SETTLE)
    assert v.verdict == "human" and v.score == 0.4
    assert any("versions old" in r for r in v.reasons)


def test_scanner_sweep_then_person_gives_one_human(scanners, now):
    """All links within 3 s of delivery, HEAD first, Safe Links UA from 40.107.x.x; then the
    person's own click 20 minutes later from their office."""
    delivered = now
    sweep = [mk(1, now + timedelta(seconds=0.5), link=1, ip="40.107.218.12", ua=SAFE_LINKS, method="HEAD")]
    sweep += [mk(2 + i, now + timedelta(seconds=1 + i), link=1 + i, ip="40.107.218.12", ua=SAFE_LINKS)
              for i in range(3)]
    person = mk(10, now + timedelta(minutes=20), link=1)
    everything = [*sweep, person]
    settle_at = person.at + SETTLE
    verdicts = {c.id: run(c, scanners, delivered=delivered, others=[o for o in everything if o is not c],
                          now=settle_at).verdict for c in everything}
    assert [i for i, v in verdicts.items() if v == "human"] == [10]
    assert all(v == "scanner" for i, v in verdicts.items() if i != 10)
