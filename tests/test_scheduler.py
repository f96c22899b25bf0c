"""The scheduler on a fixed clock, against a real SQLite file."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from nurture.models import Campaign, Condition, Contact, Exit, FollowUpRule, Step
from nurture.scheduler import STALE_RETRY, parse_click, plan_change, simulate, tick
from nurture.scheduler import enroll as enroll_contacts
from nurture.store import Store, open_store
from nurture.store.contacts import ContactRow
from nurture.store.enrollments import DUE_SQL
from nurture.timeutil import Window, parse_hours, parse_weekdays

WEEKDAYS = Window(days=parse_weekdays(["mon", "tue", "wed", "thu", "fri"]), hours=parse_hours("09:00-18:00"))


def campaign(**overrides) -> Campaign:
    steps = (
        Step(id="case-study", subject="How Kissa cut drop-off", template="t.html", wait=timedelta(0)),
        Step(id="service-page", subject="One checkout", template="t.html", wait=timedelta(days=7),
             unless=Condition(clicked="pricing")),
        Step(id="webinar", subject="Webinar", template="t.html", wait=timedelta(days=7)),
    )
    data = dict(id="ec", name="EC payments", path="campaigns/ec.yaml", timezone="Asia/Tokyo", steps=steps,
                send_window=WEEKDAYS,
                exits=(Exit("unsubscribed"), Exit("bounced"), Exit("outcome", "qualified")),
                follow_up=(FollowUpRule(when=Condition(clicked="pricing"), task="call_now", priority="high",
                                        due=timedelta(hours=1)),
                           FollowUpRule(when=Condition(clicked="any"), task="call", due=timedelta(days=2))))
    data.update(overrides)
    return Campaign(**data)


def add(store: Store, email: str, now: datetime, **fields: str) -> int:
    store.upsert_contacts([ContactRow(email, fields)], now=now)
    return store.get_contact_by_email(email).id


def enrolled(store: Store, c: Campaign, now: datetime, *emails: str):
    return enroll_contacts(store, c, now=now, email_keys=[e.lower() for e in emails])


def send_of(store: Store, c: Campaign, contact_id: int, step: str):
    e = store.get_enrollment(c.id, contact_id)
    return next((s for s in store.enrollment_sends(e.id) if s.step_id == step), None)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_first_step_waits_for_the_window_in_the_campaign_time_zone(store, now):
    c = campaign()
    cid = add(store, "a@shop.example", now)  # no time zone: Asia/Tokyo, where it is 19:00 now
    enrolled(store, c, now, "a@shop.example")
    r = tick(store, {c.id: c}, now=now)
    assert (r.queued, r.deferred) == (0, 1)
    e = store.get_enrollment(c.id, cid)
    assert e.next_at == utc(2026, 11, 25, 0, 0)  # Wednesday 09:00 JST
    assert tick(store, {c.id: c}, now=utc(2026, 11, 24, 23, 59)).queued == 0
    r = tick(store, {c.id: c}, now=utc(2026, 11, 25, 0, 0))
    assert r.queued == 1
    s = send_of(store, c, cid, "case-study")
    assert s.status == "queued" and s.next_attempt_at == utc(2026, 11, 25, 0, 0)
    e = store.get_enrollment(c.id, cid)
    assert (e.state, e.next_step, e.next_at) == ("active", "service-page", None)
    row = store.query_one("SELECT next_wait FROM enrollments WHERE id = ?", (e.id,))
    assert row["next_wait"] == 7 * 86400


def test_wait_counts_from_delivery_and_a_repeated_tick_never_doubles(store, now):
    c = campaign()
    cid = add(store, "b@shop.example", now, timezone="Europe/London")  # 10:00 in London now
    enrolled(store, c, now, "b@shop.example")
    assert tick(store, {c.id: c}, now=now).queued == 1
    assert tick(store, {c.id: c}, now=now).queued == 0
    sent_at = now + timedelta(minutes=3)
    store.deliver_simulated(send_of(store, c, cid, "case-study").id, now=sent_at)
    assert store.get_enrollment(c.id, cid).next_at == sent_at + timedelta(days=7)
    assert tick(store, {c.id: c}, now=sent_at + timedelta(days=7, seconds=-1)).queued == 0
    r = tick(store, {c.id: c}, now=sent_at + timedelta(days=7))
    assert r.queued == 1
    again = tick(store, {c.id: c}, now=sent_at + timedelta(days=7))
    assert again.queued == 0
    n = store.query_one("SELECT count(*) AS n FROM sends WHERE contact_id = ?", (cid,))["n"]
    assert n == 2


def test_weekend_moves_to_monday_nine_local(store, now):
    c = campaign()
    ldn = add(store, "ldn@shop.example", now, timezone="Europe/London")
    ny = add(store, "ny@shop.example", now, timezone="America/New_York")
    enrolled(store, c, now, "ldn@shop.example", "ny@shop.example")
    saturday = utc(2026, 11, 28, 12, 0)
    r = tick(store, {c.id: c}, now=saturday)
    assert r.deferred == 2
    assert store.get_enrollment(c.id, ldn).next_at == utc(2026, 11, 30, 9, 0)   # GMT
    assert store.get_enrollment(c.id, ny).next_at == utc(2026, 11, 30, 14, 0)   # EST
    r = tick(store, {c.id: c}, now=utc(2026, 11, 30, 9, 0))
    assert r.queued == 1 and send_of(store, c, ldn, "case-study") is not None
    assert send_of(store, c, ny, "case-study") is None


@pytest.mark.parametrize(("tz", "saturday", "monday_open"), [
    # US clocks go forward on Sunday 8 March 2026: Monday 09:00 is EDT (UTC-4), not EST.
    ("America/New_York", utc(2026, 3, 7, 15, 0), utc(2026, 3, 9, 13, 0)),
    # UK clocks go forward on Sunday 29 March 2026: Monday 09:00 is BST (UTC+1).
    ("Europe/London", utc(2026, 3, 28, 10, 0), utc(2026, 3, 30, 8, 0)),
    # And back on Sunday 25 October 2026.
    ("Europe/London", utc(2026, 10, 24, 10, 0), utc(2026, 10, 26, 9, 0)),
])
def test_send_window_across_dst(store, tz, saturday, monday_open):
    c = campaign()
    cid = add(store, "dst@shop.example", saturday, timezone=tz)
    enrolled(store, c, saturday, "dst@shop.example")
    assert tick(store, {c.id: c}, now=saturday).deferred == 1
    assert store.get_enrollment(c.id, cid).next_at == monday_open
    assert tick(store, {c.id: c}, now=monday_open - timedelta(seconds=1)).queued == 0
    assert tick(store, {c.id: c}, now=monday_open).queued == 1


def _to_second_step(store, c, now, email, **fields):
    cid = add(store, email, now, timezone="Europe/London", **fields)
    enrolled(store, c, now, email)
    assert tick(store, {c.id: c}, now=now).queued >= 1
    first = send_of(store, c, cid, "case-study")
    store.deliver_simulated(first.id, now=now)
    return cid, first


def test_unless_clicked_pricing_skips_the_service_step(store, now):
    c = campaign()
    clicker, first = _to_second_step(store, c, now, "clicker@shop.example")
    other, _ = _to_second_step(store, c, now, "quiet@shop.example")
    store.click_simulated(first.id, link="pricing", at=now + timedelta(hours=2))
    later = now + timedelta(days=7)
    r = tick(store, {c.id: c}, now=later)
    assert (r.queued, r.skipped) == (1, 1)
    skipped = send_of(store, c, clicker, "service-page")
    assert skipped.status == "skipped" and "pricing" in skipped.last_error
    assert send_of(store, c, other, "service-page").status == "queued"
    e = store.get_enrollment(c.id, clicker)
    assert (e.next_step, e.next_at) == ("webinar", later + timedelta(days=7))


def test_only_human_clicks_count(store, now):
    c = campaign()
    cid, first = _to_second_step(store, c, now, "scanned@shop.example")
    store.click_simulated(first.id, link="pricing", at=now)
    store.conn.execute("UPDATE clicks SET verdict = 'scanner'")
    r = tick(store, {c.id: c}, now=now + timedelta(days=7))
    assert (r.queued, r.skipped) == (1, 0)


def test_only_if_and_step_restricted_conditions(store, now):
    steps = list(campaign().steps)
    steps[1] = replace(steps[1], unless=None, only_if=Condition(clicked="any", step="case-study"))
    steps[2] = replace(steps[2], unless=Condition(clicked="pricing", step="service-page"))
    c = campaign(steps=tuple(steps))
    a, first = _to_second_step(store, c, now, "a@shop.example")
    b, _ = _to_second_step(store, c, now, "b@shop.example")
    store.click_simulated(first.id, link="pricing", at=now)  # a clicked in case-study, not in service-page
    t = now + timedelta(days=7)
    r = tick(store, {c.id: c}, now=t)
    assert (r.queued, r.skipped) == (1, 1)
    assert send_of(store, c, a, "service-page").status == "queued"
    assert send_of(store, c, b, "service-page").status == "skipped"
    store.deliver_simulated(send_of(store, c, a, "service-page").id, now=t)
    r = tick(store, {c.id: c}, now=t + timedelta(days=7))
    assert r.queued == 2  # a: pricing click was in case-study, so the webinar still goes out; b too
    assert r.completed == 2


def test_exits_unsubscribed_suppressed_and_qualified(store, now):
    c = campaign()
    u, _ = _to_second_step(store, c, now, "unsub@shop.example")
    s, _ = _to_second_step(store, c, now, "supp@shop.example")
    q, _ = _to_second_step(store, c, now, "qual@shop.example")
    n, _ = _to_second_step(store, c, now, "noint@shop.example")
    store.set_contact_status(u, "unsubscribed", now=now)
    store.suppress("SUPP@shop.example", "complaint", now=now)
    for cid, outcome in ((q, "qualified"), (n, "not_interested")):
        store.conn.execute(
            "INSERT INTO tasks (contact_id, campaign_id, kind, priority, status, due_at, created_at, updated_at,"
            " outcome) VALUES (?, 'ec', 'call_now', 1, 'done', 0, 0, 0, ?)", (cid, outcome))
    r = tick(store, {c.id: c}, now=now + timedelta(days=7))
    assert (r.exited, r.queued) == (3, 1)  # not_interested is not in this campaign's exit list
    reasons = {cid: store.get_enrollment(c.id, cid) for cid in (u, s, q, n)}
    assert reasons[u].exit_reason == "unsubscribed" and reasons[u].state == "exited"
    assert reasons[s].exit_reason == "suppressed"
    assert reasons[q].exit_reason == "outcome: qualified"
    assert reasons[n].state == "active"


def test_exit_enrollments_stops_queued_mail(store, now):
    c = campaign()
    cid = add(store, "x@shop.example", now, timezone="Europe/London")
    enrolled(store, c, now, "x@shop.example")
    tick(store, {c.id: c}, now=now)
    assert store.exit_enrollments(cid, campaign_id="ec", reason="replied", now=now) == 1
    assert store.exit_enrollments(cid, reason="replied", now=now) == 0
    assert send_of(store, c, cid, "case-study").status == "skipped"
    assert store.get_enrollment(c.id, cid).state == "exited"


def test_last_step_completes_the_enrollment(store, now):
    c = campaign(steps=campaign().steps[:1])
    cid = add(store, "one@shop.example", now, timezone="Europe/London")
    enrolled(store, c, now, "one@shop.example")
    r = tick(store, {c.id: c}, now=now)
    assert (r.queued, r.completed) == (1, 1)
    assert store.get_enrollment(c.id, cid).state == "completed"


def test_campaign_edit_continues_by_step_id_and_plan_says_so_first(store, now):
    c = campaign()
    at_service, _ = _to_second_step(store, c, now, "s@shop.example")       # waiting for service-page
    at_webinar, _ = _to_second_step(store, c, now, "w@shop.example")
    t = now + timedelta(days=7)
    tick(store, {c.id: c}, now=t)
    store.deliver_simulated(send_of(store, c, at_webinar, "service-page").id, now=t)
    store.exit_enrollments(at_service, reason="x", now=t)  # keep one of each below
    waiting, _ = _to_second_step(store, c, t, "s2@shop.example")
    assert store.get_stored_campaign("ec").version == 1

    steps = campaign().steps
    edited = campaign(steps=(steps[0], replace(steps[2], subject="New webinar"),
                             Step(id="ebook", subject="E-book", template="t.html", wait=timedelta(days=3))))
    plan = plan_change(store, edited)
    assert plan.changed and plan.removed == ("service-page",) and plan.added == ("ebook",)
    moves = {ch.step: ch for ch in plan.changes}
    assert moves["webinar"].target == "webinar" and not moves["webinar"].removed
    assert moves["service-page"].target == "webinar" and moves["service-page"].removed
    assert store.get_enrollment("ec", waiting).next_step == "service-page"  # plan applies nothing

    tick(store, {edited.id: edited}, now=t)
    assert store.get_stored_campaign("ec").version == 2
    assert store.get_stored_campaign("ec").steps == ("case-study", "webinar", "ebook")
    assert store.get_enrollment("ec", waiting).next_step == "webinar"
    assert store.get_enrollment("ec", at_webinar).next_step == "webinar"
    assert not plan_change(store, edited).changed
    assert store.save_campaign(edited, now=t) == 2  # same content: same version


def test_enroll_is_idempotent_and_skips_suppressed(store, now):
    c = campaign()
    for i in range(5):
        add(store, f"c{i}@shop.example", now, industry="apparel" if i % 2 else "beauty")
    store.suppress("c0@shop.example", "unsubscribed", now=now)
    r = enroll_contacts(store, c, now=now, all_contacts=True)
    assert (r.enrolled, r.already, r.suppressed) == (4, 0, 1)
    r = enroll_contacts(store, c, now=now, all_contacts=True)
    assert (r.enrolled, r.already, r.suppressed) == (0, 4, 1)


@pytest.mark.sqlite_only("EXPLAIN QUERY PLAN is SQLite's")
def test_due_query_uses_the_index(store, now):
    plan = store.conn.execute("EXPLAIN QUERY PLAN " + DUE_SQL.format(marks="?"), (0, "ec", 10)).fetchall()
    text = " | ".join(r[-1] for r in plan)
    assert "SEARCH e USING INDEX enrollments_due (state=? AND next_at<?)" in text, text
    assert "SCAN" not in text, text  # no full scan of any table, subqueries included
    assert "TEMP B-TREE" not in text, text  # rows come out in next_at order straight from the index


def test_tick_is_fast_with_many_enrollments(tmp_path, now):
    store = open_store(str(tmp_path / "big.db"))
    c = campaign(send_window=Window())
    n, due = 100_000, 5_000
    rows = [(f"u{i}@big.example", f"u{i}@big.example") for i in range(n)]
    with store.transaction():
        store.conn.executemany("INSERT INTO contacts (email, email_key, created_at, updated_at) VALUES (?, ?, 0, 0)",
                               rows)
    enroll_contacts(store, c, now=now + timedelta(days=30), all_contacts=True)
    store.conn.execute("UPDATE enrollments SET next_at = ? WHERE id <= ?", (now.timestamp() - 60, due))
    started = time.perf_counter()
    r = tick(store, {c.id: c}, now=now)
    elapsed = time.perf_counter() - started
    assert r.queued == due
    assert elapsed < 5.0, elapsed  # generous (shared CI machines): a guard against per-row work, not a benchmark
    store.close()


def test_simulate_prints_a_timeline_with_skips_and_tasks(now):
    c = campaign()
    contact = Contact(id=0, email="sim@shop.example", first_name="Yui", timezone="Asia/Tokyo")
    tl = simulate(c, contact=contact, now=now, clicks=[parse_click("case-study:pricing@+2h")])
    kinds = [(e.kind, e.step) for e in tl.entries]
    assert kinds[0] == ("deferred", "case-study")
    assert ("sent", "case-study") in kinds and ("skipped", "service-page") in kinds
    assert ("sent", "webinar") in kinds and kinds[-1] == ("completed", None)
    sent = {e.step: e.at for e in tl.entries if e.kind == "sent"}
    assert sent["case-study"] == utc(2026, 11, 25, 0, 0)  # Wed 09:00 JST
    task = next(e for e in tl.entries if e.kind == "task")
    assert "call_now" in task.text and "high" in task.text
    assert task.due == sent["case-study"] + timedelta(hours=3)
    plain = simulate(c, contact=contact, now=now)
    assert [e.step for e in plain.entries if e.kind == "sent"] == ["case-study", "service-page", "webinar"]


def test_parse_click():
    assert parse_click("case-study:pricing@+2h").after == timedelta(hours=2)
    assert parse_click("webinar:any").after == timedelta(hours=1)
    with pytest.raises(ValueError):
        parse_click("nonsense")


def test_follow_up_rule_most_specific_wins_like_followup():
    from nurture.rules import match_rule
    from nurture.scheduler import follow_up_rule

    rules = (FollowUpRule(when=Condition(clicked="any"), task="call"),
             FollowUpRule(when=Condition(clicked="any", step="webinar"), task="email"),
             FollowUpRule(when=Condition(clicked="pricing"), task="call_now"),
             FollowUpRule(when=Condition(clicked="pricing", step="webinar"), task="call_now", priority="urgent"))
    c = campaign(follow_up=rules)
    for step, link, expected in (("case-study", "blog", rules[0]), ("webinar", "blog", rules[1]),
                                 ("case-study", "pricing", rules[2]), ("webinar", "pricing", rules[3])):
        assert follow_up_rule(c, step=step, link=link) is expected
        assert match_rule(c, link=link, step=step) is expected
    assert follow_up_rule(campaign(follow_up=()), step="webinar", link="x") is None


def test_a_process_with_an_old_copy_never_rolls_an_edit_back(store, now):
    v1 = campaign(content_hash="v1")
    steps = v1.steps
    v2 = campaign(steps=(steps[0], Step(id="ebook", subject="E-book", template="t.html", wait=timedelta(days=2)),
                         steps[2]), content_hash="v2")
    cid, _ = _to_second_step(store, v1, now, "old@shop.example")
    enrolled(store, v2, now, "old@shop.example")  # `nurture enroll` with the edited YAML applies v2
    assert store.get_enrollment("ec", cid).next_step == "ebook"
    # A long-running sender still holding v1 ticks: v1 is not applied again, the unknown step waits.
    later = now + timedelta(days=7)  # the wait computed when case-study was delivered
    r = tick(store, {"ec": v1}, now=later)
    assert r.deferred == 1 and store.get_stored_campaign("ec").version == 2
    assert store.get_enrollment("ec", cid).next_step == "ebook"
    assert tick(store, {"ec": v2}, now=later + STALE_RETRY).queued == 1
    # Rolling back on purpose (enroll with the old YAML) is a new version with the old content.
    enrolled(store, v1, now, "old@shop.example")
    assert [v for v, _, _ in store.campaign_versions("ec")] == [1, 2, 3]
    assert store.get_stored_campaign("ec").content_hash == "v1"


def test_simulate_an_unsubscribed_contact_shows_the_exit(now):
    contact = Contact(id=7, email="gone@shop.example", timezone="Europe/London", status="unsubscribed")
    tl = simulate(campaign(), contact=contact, now=now)
    assert [(e.kind, e.text) for e in tl.entries] == [("exited", "unsubscribed")]


# -- business calendars -------------------------------------------------------------------------

def test_a_send_due_on_coming_of_age_day_in_tokyo_moves_to_the_next_working_day(store):
    monday = utc(2027, 1, 11, 0, 30)  # 09:30 in Tokyo on 成人の日, a Monday inside the window
    c = campaign()
    cid = add(store, "a@shop.example", monday, timezone="Asia/Tokyo")
    enrolled(store, c, monday, "a@shop.example")
    r = tick(store, {c.id: c}, now=monday, explain=True)
    assert (r.queued, r.deferred) == (0, 1)
    assert r.decisions[0].reason == "holiday: Coming of Age Day (JP)"
    assert store.get_enrollment(c.id, cid).next_at == utc(2027, 1, 12, 0, 0)  # Tuesday 09:00 JST
    assert tick(store, {c.id: c}, now=utc(2027, 1, 12, 0, 0)).queued == 1


def test_the_contacts_own_country_decides_and_calendar_none_switches_holidays_off(store):
    monday = utc(2027, 1, 11, 15, 0)  # 10:00 in New York, 00:00 Tuesday in Tokyo
    c = replace(campaign(), send_window=Window(days=WEEKDAYS.days))  # any hour on weekdays
    us = add(store, "us@shop.example", monday, timezone="America/New_York")
    jp = add(store, "jp@shop.example", monday, timezone="America/New_York", country="Japan")
    enrolled(store, c, monday, "us@shop.example", "jp@shop.example")
    tick(store, {c.id: c}, now=monday)
    assert send_of(store, c, us, "case-study") is not None  # no US holiday on 11 January
    assert send_of(store, c, jp, "case-study") is None      # Japan's, although in New York
    off = replace(c, id="ec2", calendar="none")
    enrolled(store, off, monday, "jp@shop.example")
    tick(store, {off.id: off}, now=monday)
    assert send_of(store, off, jp, "case-study") is not None


def test_closures_of_config_and_campaign_hold_mail(store):
    from nurture.calendars import parse_closures

    day = utc(2026, 12, 29, 1, 0)  # Tuesday 10:00 in Tokyo
    c = replace(campaign(), closures=parse_closures(["2027-08-13..2027-08-16"]))
    cid = add(store, "a@shop.example", day, timezone="Asia/Tokyo")
    enrolled(store, c, day, "a@shop.example")
    r = tick(store, {c.id: c}, now=day, explain=True, closures=parse_closures(["2026-12-29..2027-01-03"]))
    assert r.decisions[0].reason == "holiday: closure 2026-12-29..2027-01-03"
    assert store.get_enrollment(c.id, cid).next_at == utc(2027, 1, 4, 0, 0)  # Monday 4 January, 09:00
    august = utc(2027, 8, 13, 1, 0)
    store.exit_enrollments(cid, campaign_id=c.id, reason="test", now=august)
    c2 = replace(c, id="ec-aug")
    enrolled(store, c2, august, "a@shop.example")
    r = tick(store, {c2.id: c2}, now=august, explain=True)
    assert r.decisions[0].reason == "holiday: closure 2027-08-13..2027-08-16"


def test_simulate_shows_the_skipped_holiday():
    c = campaign()
    tl = simulate(c, contact=Contact(id=0, email="a@shop.example", timezone="Asia/Tokyo"),
                  now=utc(2027, 1, 11, 0, 30))
    first = tl.entries[0]
    assert first.kind == "deferred" and "Coming of Age Day (JP)" in first.text
    assert next(e for e in tl.entries if e.kind == "sent").at == utc(2027, 1, 12, 0, 0)
