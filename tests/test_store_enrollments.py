"""EnrollmentsMixin on a real SQLite file: versions, remapping, enrollment batches, exits, stats."""

from __future__ import annotations

from datetime import timedelta

import pytest

from nurture.errors import NotFound
from nurture.models import Campaign, Step
from nurture.scheduler import tick
from nurture.store import Store, open_async_store
from nurture.store.contacts import ContactRow
from nurture.store.enrollments import Advance, remap_step


def camp(*ids: str, name: str = "C") -> Campaign:
    return Campaign(id="c", name=name, path="campaigns/c.yaml", timezone="UTC",
                    steps=tuple(Step(id=i, subject=i, template="t.html", wait=timedelta(days=1)) for i in ids))


def contacts(store, now, n: int, **fields: str) -> list[int]:
    store.upsert_contacts([ContactRow(f"p{i}@x.example", dict(fields), {"tier": "gold" if i % 2 else "free"})
                           for i in range(n)], now=now)
    return [r["id"] for r in store.query("SELECT id FROM contacts ORDER BY id")]


@pytest.mark.parametrize(("step", "old", "new", "expected"), [
    ("b", "abc", "abc", "b"),          # unchanged
    ("b", "abc", "ac", "c"),           # removed: the step after the last surviving earlier step
    ("b", "abc", "axc", "x"),          # replaced in place
    ("c", "abc", "ab", None),          # removed at the end: nothing left
    ("a", "abc", "bc", "b"),           # the first step removed
    ("b", "abc", "ca", None),          # reordered and removed: after a comes nothing in the new order
    ("b", "abc", "", None),
    ("q", "abc", "abc", None),         # unknown to both: nothing sensible to send
])
def test_remap_step(step, old, new, expected):
    assert remap_step(step, list(old), list(new)) == expected


def test_save_campaign_versions_by_content(store, now):
    assert store.get_stored_campaign("c") is None
    assert store.save_campaign(camp("a", "b"), source="yaml v1", now=now) == 1
    assert store.save_campaign(camp("a", "b"), now=now) == 1
    assert store.save_campaign(camp("a", "b", name="Renamed"), now=now) == 2
    stored = store.get_stored_campaign("c")
    assert (stored.version, stored.name, stored.steps, stored.updated_at) == (2, "Renamed", ("a", "b"), now)
    assert store.stored_campaign_ids() == ["c"]


def test_enroll_in_batches_is_idempotent_and_filters(store, now):
    ids = contacts(store, now, 7, industry="Apparel")
    store.save_campaign(camp("a"), now=now)
    common = dict(campaign_id="c", first_step="a", first_at=now, version=1, now=now, batch_size=2)
    r = store.enroll_contacts(where=("tier", "GOLD"), **common)
    assert (r.enrolled, r.already, r.suppressed) == (3, 0, 0)
    r = store.enroll_contacts(where=("industry", "apparel"), **common)
    assert (r.enrolled, r.already) == (4, 3)
    r = store.enroll_contacts(all_contacts=True, **common)
    assert (r.enrolled, r.already) == (0, 7)
    assert store.enroll_contacts(email_keys=[], **common).enrolled == 0
    e = store.get_enrollment("c", ids[0])
    assert (e.state, e.next_step, e.next_at) == ("active", "a", now)
    with pytest.raises(NotFound):
        store.get_enrollment("c", 10_000)
    with pytest.raises(ValueError):
        store.enroll_contacts(**common)
    with pytest.raises(NotFound):
        store.enroll_contacts(where=('x") OR 1=1 --', "y"), **common)


def test_due_enrollments_oldest_first_with_limit_and_exit_facts(store, now):
    ids = contacts(store, now, 4, timezone="Asia/Tokyo")
    store.save_campaign(camp("a"), now=now)
    store.enroll_contacts(campaign_id="c", first_step="a", first_at=now, version=1, now=now, all_contacts=True)
    for i, cid in enumerate(ids):
        store.conn.execute("UPDATE enrollments SET next_at = ? WHERE contact_id = ?",
                           (now.timestamp() - 100 * (i + 1), cid))
    store.conn.execute("UPDATE enrollments SET next_at = ? WHERE contact_id = ?", (now.timestamp() + 1, ids[0]))
    store.suppress("p1@x.example", "manual", now=now)
    store.conn.execute("INSERT INTO tasks (contact_id, campaign_id, kind, priority, due_at, created_at, updated_at,"
                       " outcome) VALUES (?, 'c', 'call', 2, 0, 0, 0, 'qualified')", (ids[2],))
    due = store.due_enrollments(campaign_ids=["c"], now=now, limit=2)
    assert [d.contact_id for d in due] == [ids[3], ids[2]]
    assert due[1].outcomes == {"qualified"} and due[0].outcomes == frozenset()
    assert due[0].timezone == "Asia/Tokyo"
    everything = store.due_enrollments(campaign_ids=["c"], now=now, limit=10)
    assert len(everything) == 3 and next(d for d in everything if d.contact_id == ids[1]).suppressed
    assert store.due_enrollments(campaign_ids=["other"], now=now, limit=10) == []
    assert store.due_enrollments(campaign_ids=[], now=now, limit=10) == []


def test_human_clicks_ignore_honeypots_scanners_and_opens(store, now):
    ids = contacts(store, now, 1)
    store.save_campaign(camp("a", "b"), now=now)
    store.enroll_contacts(campaign_id="c", first_step="a", first_at=now, version=1, now=now, all_contacts=True)
    tick(store, {"c": camp("a", "b")}, now=now)
    send = store.enrollment_sends(store.get_enrollment("c", ids[0]).id)[0]
    store.click_simulated(send.id, link="pricing", at=now)
    store.click_simulated(send.id, link="trap", at=now)
    store.conn.execute("UPDATE links SET honeypot = 1 WHERE name = 'trap'")
    store.click_simulated(send.id, link="blog", at=now)
    store.conn.execute("UPDATE clicks SET verdict = 'scanner'"
                       " WHERE link_id = (SELECT id FROM links WHERE name = 'blog')")
    store.conn.execute("INSERT INTO clicks (send_id, kind, at, method, verdict) VALUES (?, 'open', 0, 'GET', 'human')",
                       (send.id,))
    eid = send.enrollment_id
    assert store.human_clicks([eid]) == {eid: [("a", "pricing")]}


def test_apply_advances_rejects_unknown_actions_and_writes_nothing(store, now):
    with pytest.raises(ValueError):
        store.apply_advances([Advance("queue", 1, "c", 1, step_id="a"), Advance("teleport", 1, "c", 1)], now=now)
    assert store.query_one("SELECT count(*) AS n FROM sends")["n"] == 0


def test_exit_scopes_and_stats(store, now):
    ids = contacts(store, now, 2)
    for cid in ("c", "d"):
        c = Campaign(id=cid, name=cid, path="x", timezone="UTC",
                     steps=(Step(id="a", subject="a", template="t", wait=timedelta(0)),
                            Step(id="b", subject="b", template="t", wait=timedelta(days=1))))
        store.save_campaign(c, now=now)
        store.enroll_contacts(campaign_id=cid, first_step="a", first_at=now, version=1, now=now, all_contacts=True)
        tick(store, {cid: c}, now=now)
    assert store.exit_enrollments(ids[0], campaign_id="c", reason="outcome: qualified", now=now) == 1
    assert store.get_enrollment("d", ids[0]).state == "active"
    assert store.exit_enrollments(ids[0], reason="replied", now=now) == 1
    stats = {(s.campaign_id, s.step_id): s for s in store.send_stats()}
    assert (stats["c", "a"].queued, stats["c", "a"].skipped) == (1, 1)
    assert [s.campaign_id for s in store.send_stats("d")] == ["d"]
    assert store.enrollment_counts() == {"c": {"active": 1, "exited": 1}, "d": {"active": 1, "exited": 1}}
    assert store.step_positions("c") == [("b", True, 1)]


async def test_tick_runs_on_the_async_store_thread(db_path, now):
    astore = open_async_store(db_path)
    try:
        await astore.call(Store.upsert_contacts, [ContactRow("async@x.example")], now=now)
        c = camp("a", "b")
        await astore.run(lambda s: s.save_campaign(c, now=now))
        await astore.call(Store.enroll_contacts, campaign_id="c", first_step="a", first_at=now, version=1, now=now,
                                     all_contacts=True)
        result = await astore.run(lambda s: tick(s, {"c": c}, now=now))
        assert result.queued == 1
    finally:
        await astore.aclose()


@pytest.mark.sqlite_only("traces statements and reads EXPLAIN QUERY PLAN, both SQLite's")
def test_click_and_exit_queries_start_from_the_enrollment(store, now):
    """Issue 7's guard: these run per tick and per bounce / unsubscribe, so they must not visit
    every human click or every queued send (the planner would pick clicks_verdict/sends_claim)."""
    ids = contacts(store, now, 3)
    store.save_campaign(camp("a", "b"), now=now)
    store.enroll_contacts(campaign_id="c", first_step="a", first_at=now, version=1, now=now, all_contacts=True)
    tick(store, {"c": camp("a", "b")}, now=now)
    seen: list[str] = []
    store.conn.set_trace_callback(seen.append)
    try:
        store.human_clicks([1, 2])
        store.exit_enrollments(ids[0], reason="replied", now=now)
    finally:
        store.conn.set_trace_callback(None)
    statements = [q for q in seen if q.lstrip().upper().startswith(("SELECT S.ENROLLMENT_ID", "UPDATE SENDS"))]
    assert len(statements) == 2, seen
    for sql in statements:
        plan = " | ".join(r[-1] for r in store.conn.execute("EXPLAIN QUERY PLAN " + sql))
        assert "SCAN" not in plan and "clicks_verdict" not in plan and "sends_claim" not in plan, (sql, plan)


@pytest.mark.parametrize("field", [
    "tier') OR 1=1 OR lower('",                               # breaks out of the JSON path literal
    "x' || (SELECT group_concat(email) FROM contacts) || '",  # a subquery in the path
    "nosuchattribute", "tier\x00", "ti\\er",
])
def test_enroll_where_field_is_checked_never_spliced(store, now, field):
    contacts(store, now, 4, industry="Apparel")
    store.save_campaign(camp("a"), now=now)
    common = dict(campaign_id="c", first_step="a", first_at=now, version=1, now=now)
    with pytest.raises(NotFound, match="no contact field or attribute named"):
        store.enroll_contacts(where=(field, "gold"), **common)
    assert store.query_one("SELECT count(*) AS n FROM enrollments")["n"] == 0


def test_enroll_where_value_is_bound_and_attribute_names_may_hold_dots(store, now):
    ids = contacts(store, now, 3, industry="Apparel")
    attrs = '{"plan.v2": "it\'s \'gold\'"}'
    store.conn.execute("UPDATE contacts SET attributes = ? WHERE id = ?", (attrs, ids[0]))
    store.save_campaign(camp("a"), now=now)
    common = dict(campaign_id="c", first_step="a", first_at=now, version=1, now=now)
    assert store.enroll_contacts(where=("industry", "x' OR '1'='1"), **common).enrolled == 0
    assert store.enroll_contacts(where=("plan.v2", "IT'S 'GOLD'"), **common).enrolled == 1
    assert [c.id for c in store.list_contacts(where=("plan.v2", "it's 'gold'"))] == [ids[0]]
    with pytest.raises(NotFound):
        store.list_contacts(where=("plan') OR ('1'='1", "x"))
