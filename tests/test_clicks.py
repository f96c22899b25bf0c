"""The click judge: pure functions, judged against the reference's scanner evidence."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from nurture.clicks import WEIGHTS, Scanners, chrome_release, immediate_verdict, judge, parse_scanners
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


HONEYPOT = 99


def mk(i: int, at: datetime, *, link: int | None = 1, ip: str = "198.51.100.20", ua: str | None = BROWSER,
       method: str = "GET", kind: str = "click") -> Click:
    return Click(id=i, send_id=1, link_id=None if kind != "click" else link, at=at, ip=ip, user_agent=ua,
                 method=method, kind=kind)


def run(click: Click, scanners: Scanners, *, delivered: datetime, others=(), now: datetime,
        honeypot_hit=False, ip_recipients=1, link_count=3, honeypot_link=False):
    return judge(click, delivered_at=delivered, other_clicks_of_send=others, honeypot_hit=honeypot_hit,
                 ip_recipients_count=ip_recipients, networks=scanners, now=now, settle=SETTLE,
                 link_count=link_count, honeypot_link=honeypot_link, honeypot_ids=(HONEYPOT,))


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
    assert parse_scanners("net 10.0.0.0/8 probable a 30m\n").networks[0].window == timedelta(minutes=30)
    with pytest.raises(ValueError, match="x.txt:1"):
        parse_scanners("net 10.0.0.0/8 probable a 30 minutes\n", source="x.txt")
    with pytest.raises(ValueError, match="x.txt:1: a window is only for probable"):
        parse_scanners("net 10.0.0.0/8 certain a 5m\n", source="x.txt")
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
    azure = run(mk(1, now, ip="40.94.16.7"), scanners, delivered=now - timedelta(minutes=11), now=now + SETTLE)
    assert azure.verdict == "human"
    later = run(mk(1, now, ip="40.94.16.7"), scanners, delivered=now - timedelta(hours=2), now=now + SETTLE)
    assert later.verdict == "human" and later.score == WEIGHTS["probable_late"]


@pytest.mark.parametrize("ip,label", [("170.10.129.4", "mimecast"), ("205.139.111.20", "mimecast"),
                                      ("67.231.150.9", "proofpoint"), ("148.163.140.2", "proofpoint"),
                                      ("209.222.81.7", "barracuda"), ("64.235.150.1", "barracuda")])
def test_mail_gateway_networks_are_probable(scanners, now, ip, label):
    net = scanners.network_of(ip)
    assert (net.label, net.certain) == (label, False)
    v = run(mk(1, now, ip=ip), scanners, delivered=now - timedelta(minutes=8), now=now + SETTLE)
    assert v.verdict == "scanner" and any(label in r for r in v.reasons)


def test_gateway_check_of_a_persons_click_outside_the_window(scanners, now):
    """40 minutes after delivery the person clicks from the office; Mimecast checks the link
    just before, and re-checks it three minutes later: both checks are the gateway's."""
    delivered = now - timedelta(minutes=40)
    check = mk(1, now - timedelta(seconds=0.6), ip="170.10.129.4")
    person = mk(2, now, ip="198.51.100.20")
    recheck = mk(3, now + timedelta(minutes=3), ip="207.211.30.9")
    everything = [check, person, recheck]
    at = recheck.at + SETTLE
    verdicts = {c.id: run(c, scanners, delivered=delivered, others=[o for o in everything if o is not c],
                          now=at, link_count=2) for c in everything}
    assert verdicts[2].verdict == "human" and verdicts[2].score == 0.0
    assert verdicts[1].verdict == verdicts[3].verdict == "scanner"
    assert any("gateway's check" in r for r in verdicts[3].reasons)
    # Alone (an isolation browser, or a re-scan nobody asked for): weak only.
    alone = run(recheck, scanners, delivered=delivered, now=at)
    assert alone.verdict == "human" and alone.score == WEIGHTS["probable_late"]


def test_honeypot_link_and_same_ip_honeypot_hit(scanners, now):
    assert immediate_verdict(method="GET", ip="198.51.100.20", user_agent=BROWSER, honeypot=True,
                             scanners=scanners).verdict == "scanner"
    v = run(mk(1, now), scanners, delivered=now - timedelta(minutes=5), honeypot_hit=True, now=now + SETTLE)
    assert v.verdict == "scanner" and any("honeypot" in r for r in v.reasons)
    trap = mk(5, now - timedelta(minutes=3), link=HONEYPOT)
    near = run(mk(1, now), scanners, delivered=now - timedelta(minutes=5), others=[trap], honeypot_hit=True,
               now=now + SETTLE)
    assert near.verdict == "scanner"
    # An office that shares its address with an on-site scanner: the person clicks an hour later.
    late = run(mk(1, now + timedelta(hours=1)), scanners, delivered=now - timedelta(minutes=5), others=[trap],
               honeypot_hit=True, now=now + timedelta(hours=1) + SETTLE)
    assert late.verdict == "human" and late.score == WEIGHTS["honeypot_late"]


def test_scanner_user_agent(scanners, now):
    v = immediate_verdict(method="GET", ip="198.51.100.20", user_agent="python-requests/2.32.3",
                          honeypot=False, scanners=scanners)
    assert v.verdict == "scanner" and "python-requests" in v.reasons[0]
    assert immediate_verdict(method="GET", ip="198.51.100.20", user_agent=BROWSER, honeypot=False,
                             scanners=scanners) is None


@pytest.mark.parametrize("second", [
    dict(link=2), dict(kind="unsubscribe"), dict(kind="open"), dict(link=HONEYPOT)])
def test_two_different_urls_within_a_second_from_one_address(scanners, now, second):
    """Half an hour after delivery (no instant window), a two-link message: any second URL of
    the message (the other link, the unsubscribe page, the pixel, the honeypot) in the same
    second from the same address is a machine, whatever the number of links."""
    delivered = now - timedelta(minutes=30)
    first = mk(1, now)
    other = mk(2, now + timedelta(milliseconds=400), **second)
    v = run(first, scanners, delivered=delivered, others=[other], now=now + SETTLE, link_count=2)
    assert v.verdict == "scanner"
    assert any(r.startswith("burst: 2 different URLs") and "one address" in r for r in v.reasons)


def test_double_click_and_seconds_between_links_are_a_person(scanners, now):
    delivered = now - timedelta(minutes=30)
    double = [mk(1, now), mk(2, now + timedelta(milliseconds=150))]  # the same link twice
    v = run(double[0], scanners, delivered=delivered, others=double[1:], now=now + SETTLE, link_count=2)
    assert v.verdict == "human" and v.score == 0.0
    # Two links 1.5 s apart: a person opening two tabs.
    tabs = [mk(1, now), mk(2, now + timedelta(seconds=1.5), link=2)]
    v2 = run(tabs[0], scanners, delivered=delivered, others=tabs[1:], now=now + SETTLE, link_count=3)
    assert v2.verdict == "human"


def test_a_sweep_spread_over_several_addresses(scanners, now):
    """Proofpoint-style: every URL from a different address within one second."""
    delivered = now - timedelta(minutes=30)
    sweep = [mk(1, now, link=1, ip="203.0.113.1"), mk(2, now + timedelta(milliseconds=200), link=2, ip="203.0.113.2"),
             mk(3, now + timedelta(milliseconds=500), kind="open", ip="203.0.113.3")]
    v = run(sweep[0], scanners, delivered=delivered, others=sweep[1:], now=now + SETTLE, link_count=2)
    assert v.verdict == "scanner" and any("3 different URLs" in r and "3 addresses" in r for r in v.reasons)
    # Two different links from two addresses in one second is only weak.
    v2 = run(sweep[0], scanners, delivered=delivered, others=sweep[1:2], now=now + SETTLE, link_count=2)
    assert v2.verdict == "human" and v2.score == WEIGHTS["spread_pair"]


def test_a_get_after_a_head_from_the_same_address(scanners, now):
    delivered = now - timedelta(hours=2)
    head = mk(1, now, method="HEAD")
    get = mk(2, now + timedelta(seconds=2))
    v = run(get, scanners, delivered=delivered, others=[head], now=now + SETTLE)
    assert v.verdict == "scanner" and any("HEAD" in r for r in v.reasons)
    # A HEAD from the gateway's address says nothing about the person's own GET.
    v2 = run(get, scanners, delivered=delivered, others=[mk(1, now, method="HEAD", ip="170.10.129.4")],
             now=now + 2 * SETTLE)
    assert v2.verdict == "human"


def test_all_links_within_a_minute_is_weak_and_adds_up_with_the_unsubscribe_page(scanners, now):
    delivered = now - timedelta(hours=1)
    clicks = [mk(i, now + timedelta(seconds=20 * i), link=i + 1) for i in range(3)]
    v = run(clicks[1], scanners, delivered=delivered, others=[clicks[0], clicks[2]], now=now + 2 * SETTLE)
    # An eager reader opens every link in a minute too: weak on its own.
    assert v.verdict == "human" and v.score == WEIGHTS["all_links"]
    assert any("all 3 links" in r for r in v.reasons)
    # With the unsubscribe page fetched from the same address in that minute: a machine.
    unsub = mk(7, now + timedelta(seconds=50), kind="unsubscribe")
    v2 = run(clicks[1], scanners, delivered=delivered, others=[clicks[0], clicks[2], unsub], now=now + SETTLE)
    assert v2.verdict == "scanner" and any("unsubscribe page" in r for r in v2.reasons)
    # The same three links over half an hour: a person reading the email.
    slow = [mk(i, now + timedelta(minutes=15 * i), link=i + 1) for i in range(3)]
    v3 = run(slow[1], scanners, delivered=delivered, others=[slow[0], slow[2]], now=now + timedelta(hours=1))
    assert v3.verdict == "human" and v3.score == 0.0


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
    assert v.verdict == "human" and v.score == WEIGHTS["stale_chrome"]
    assert any("Windows Chrome released" in r for r in v.reasons)


def windows_chrome(major: int) -> str:
    return (f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            f"Chrome/{major}.0.0.0 Safari/537.36")


def test_chrome_ages_follow_the_published_schedule(now):
    assert chrome_release(windows_chrome(131)).date().isoformat() == "2024-11-12"
    assert chrome_release(windows_chrome(153)).date().isoformat() == "2026-09-08"
    # Two weeks a version from 153 on (the 2026 schedule), four weeks before 2022's anchor.
    assert chrome_release(windows_chrome(157)).date().isoformat() == "2026-11-03"
    assert chrome_release(windows_chrome(102)).date().isoformat() == "2022-05-24"
    assert chrome_release("Mozilla/5.0 (Macintosh) Safari/605.1.15") is None


def test_a_person_a_few_versions_behind_is_not_penalised(scanners, now):
    # 2026-11-24: ten versions behind the two-week cadence is still months, not years.
    for major in (158, 150, 148):
        v = run(mk(1, now, ua=windows_chrome(major)), scanners, delivered=now - timedelta(hours=3), now=now + SETTLE)
        assert (v.verdict, v.score) == ("human", 0.0), major
    old = run(mk(1, now, ua=windows_chrome(125)), scanners, delivered=now - timedelta(hours=3), now=now + SETTLE)
    assert old.score == WEIGHTS["stale_chrome"]


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


def test_swept_first_then_an_eager_reader(scanners, now):
    """A cloud scanner with a normal browser fetches both links and the unsubscribe page in
    one second, 40 s after delivery; the person clicks one link from home 25 s later."""
    delivered = now
    t = now + timedelta(seconds=40)
    sweep = [mk(1, t, link=1, ip="34.120.7.7"), mk(2, t + timedelta(milliseconds=300), link=2, ip="34.120.7.7"),
             mk(3, t + timedelta(milliseconds=600), kind="unsubscribe", ip="34.120.7.7")]
    person = mk(4, t + timedelta(seconds=25), link=1)
    everything = [*sweep, person]
    verdicts = {c.id: run(c, scanners, delivered=delivered, others=[o for o in everything if o is not c],
                          now=person.at + SETTLE, link_count=2).verdict for c in everything if c.kind == "click"}
    assert verdicts == {1: "scanner", 2: "scanner", 4: "human"}


def test_a_vendor_sweep_spread_over_seconds_outside_the_window(scanners, now):
    """A Proofpoint rescan twelve hours later: each URL from another Proofpoint address, seconds
    apart (no burst); together they are a sweep, alone each would be weak."""
    delivered = now - timedelta(hours=12)
    sweep = [mk(1, now, link=1, ip="67.231.150.9"), mk(2, now + timedelta(seconds=4), link=2, ip="67.231.151.3")]
    v = run(sweep[0], scanners, delivered=delivered, others=sweep[1:], now=now + SETTLE, link_count=3)
    assert v.verdict == "scanner" and any("(a sweep)" in r for r in v.reasons)
