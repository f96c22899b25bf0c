"""Follow-up: human clicks → tasks (notes, dedupe, routing), SLA escalation, the loop."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from support import NOW, Clock, add_click, add_contact, add_link, add_send, make_campaign, seed_click

from nurture.followup import escalate_overdue, process_clicks
from nurture.models import Condition, FollowUpRule, ScoreRule, Scoring
from nurture.outcomes import record_outcome
from nurture.rules import live_text
from nurture.store import Store


def test_pricing_click_creates_call_now_task_with_note(store, campaigns, settings):
    store.conn.execute("SELECT 1")
    cid, click = seed_click(store, territory="GB")
    # two earlier human clicks this week make this the 3rd
    seed_click(store, "blog", at=NOW - timedelta(days=2), step="webinar")
    store.conn.execute("UPDATE clicks SET handled = 1 WHERE id != ?", (click,))
    ids = process_clicks(store, campaigns, settings, now=NOW)
    assert len(ids) == 1
    t = store.get_task(ids[0])
    assert (t.kind, t.priority, t.rep_id) == ("call_now", "high", "baker")
    assert t.due_at == NOW + timedelta(hours=1)
    assert live_text(t.reason, NOW) == ("Opened the pricing page from 'How  cut checkout drop-off', 4 min ago; "
                                        "2nd click this week")
    # Relative times are computed when the note is shown, not frozen at the click.
    assert "64 min ago" in live_text(t.reason, NOW + timedelta(hours=1))
    assert t.context["timeline"][0]["link"] == "pricing"
    assert store.query_one("SELECT handled FROM clicks WHERE id = ?", (click,))["handled"] == 1
    ev = store.events(kind="task.created")
    assert len(ev) == 1 and ev[0].payload["task_id"] == t.id
    assert "4 min ago" in ev[0].payload["reason"]
    # nothing left to do: a second pass creates nothing
    assert process_clicks(store, campaigns, settings, now=NOW) == []

def test_scanner_and_pending_clicks_make_no_task(store, campaigns, settings):
    seed_click(store, verdict="scanner")
    seed_click(store, "blog", verdict="pending")
    assert process_clicks(store, campaigns, settings, now=NOW) == []
    assert store.list_tasks(now=NOW) == []

def test_no_task_for_unsubscribed_or_suppressed(store, campaigns, settings):
    seed_click(store, email="gone@shop.example", status="unsubscribed")
    seed_click(store, email="supp@shop.example")
    store.conn.execute("INSERT INTO suppressions VALUES ('supp@shop.example', 'manual', 0)")
    assert process_clicks(store, campaigns, settings, now=NOW) == []
    assert store.query_one("SELECT count(*) AS n FROM clicks WHERE handled = 0")["n"] == 0

def test_dedupe_one_open_task_raises_priority_and_pulls_due(store, campaigns, settings):
    seed_click(store, "blog", territory="GB", at=NOW - timedelta(minutes=30))
    [tid] = process_clicks(store, campaigns, settings, now=NOW)
    t = store.get_task(tid)
    assert (t.kind, t.priority, t.due_at) == ("call", "normal", NOW + timedelta(days=2))
    later = NOW + timedelta(minutes=10)
    seed_click(store, "pricing", at=later)
    assert process_clicks(store, campaigns, settings, now=later) == [tid]
    t = store.get_task(tid)
    assert t.kind == "call_now"
    assert t.priority == "urgent"  # high from the rule, raised one level by the repeat
    assert t.due_at == later + timedelta(hours=1)
    assert [e["link"] for e in t.context["timeline"]] == ["blog", "pricing"]
    assert len(store.list_tasks(now=later)) == 1
    assert len(store.events(kind="task.created")) == 1

def test_new_task_after_the_previous_one_is_done(store, campaigns, settings):
    seed_click(store, territory="GB")
    [tid] = process_clicks(store, campaigns, settings, now=NOW)
    record_outcome(store, task_id=tid, outcome="connected", now=NOW)
    seed_click(store, territory="GB")
    [tid2] = process_clicks(store, campaigns, settings, now=NOW)
    assert tid2 != tid

def test_routing_by_owner_territory_and_round_robin(store, campaigns, settings):
    seed_click(store, email="o@x.example", owner="aoki", territory="GB")
    seed_click(store, email="t@x.example", territory="JP")
    seed_click(store, email="r1@x.example")
    seed_click(store, email="r2@x.example")
    ids = process_clicks(store, campaigns, settings, now=NOW)
    reps = [store.get_task(i).rep_id for i in ids]
    assert reps[:2] == ["aoki", "aoki"]
    # Aoki (Tokyo, 19:00) is off shift: call-now tasks wait for her shift (09:00 JST = 00:00 UTC).
    assert store.get_task(ids[0]).due_at == datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
    # nobody else is on shift but Baker (London): round robin has one candidate
    assert reps[2:] == ["baker", "baker"]

def test_capacity_counts_tasks_assigned_today(store, campaigns, make_settings):
    s = make_settings(reps=[
        {"id": "baker", "name": "B", "email": "b@x", "timezone": "Europe/London",
         "hours": "09:00-17:30", "capacity": 1},
        {"id": "clark", "name": "C", "email": "c@x", "timezone": "Europe/London",
         "hours": "09:00-17:30", "capacity": 1}])
    for i in range(3):
        seed_click(store, email=f"c{i}@x.example")
    ids = process_clicks(store, campaigns, s, now=NOW)
    reps = [store.get_task(i).rep_id for i in ids]
    assert reps[:2] == ["baker", "clark"]
    # both full: a call-now task waits for the soonest shift (tomorrow 09:00 London)
    assert store.get_task(ids[2]).due_at == datetime(2026, 11, 25, 10, 0, tzinfo=UTC)

def test_sla_escalation_on_a_fixed_clock(store, campaigns, settings):
    seed_click(store, territory="GB")
    [tid] = process_clicks(store, campaigns, settings, now=NOW)
    assert escalate_overdue(store, settings, now=NOW + timedelta(minutes=59)) == []
    later = NOW + timedelta(minutes=61)
    assert escalate_overdue(store, settings, now=later) == [tid]
    assert escalate_overdue(store, settings, now=later + timedelta(hours=1)) == []  # once
    t = store.get_task(tid)
    assert t.escalated_at == later
    ev = store.events(kind="task.overdue")
    assert len(ev) == 1 and ev[0].payload["overdue_minutes"] == 1
    # an overdue task sorts above a more urgent one that is not overdue
    seed_click(store, email="z@x.example", territory="GB")
    [t2] = process_clicks(store, campaigns, settings, now=later)
    store.set_task_priority(t2, "urgent", now=later)
    assert [t.id for t in store.list_tasks(now=later)] == [tid, t2]
    assert [t.id for t in store.list_tasks(now=later, status="overdue")] == [tid]

def test_hot_crossing_raises_open_task_one_level(store, settings):
    c = make_campaign(scoring=Scoring(rules=(ScoreRule(Condition("pricing"), 70),)),
                      follow_up=(FollowUpRule(when=Condition("any"), task="call", priority="low"),))
    seed_click(store, "blog", territory="GB")
    [tid] = process_clicks(store, {"ec-payments": c}, settings, now=NOW)
    assert store.get_task(tid).priority == "low"
    seed_click(store, "webinar-signup", territory="GB")
    process_clicks(store, {"ec-payments": c}, settings, now=NOW)
    assert store.get_task(tid).priority == "normal"  # repeat click: one level
    seed_click(store, "pricing")
    process_clicks(store, {"ec-payments": c}, settings, now=NOW)
    assert store.get_task(tid).priority == "urgent"  # repeat (+1) and hot (+1)

def test_a_bad_click_does_not_block_the_others(store, campaigns, settings):
    bad_campaign = make_campaign(id="broken", follow_up=(
        FollowUpRule(when=Condition("any"), task="call", priority="bogus"),))
    c = add_contact(store, "bad@x.example", territory="GB")
    add_click(store, add_send(store, c, "broken"), add_link(store, "pricing", "broken"))
    seed_click(store, email="good@x.example", territory="GB")
    ids = process_clicks(store, {**campaigns, "broken": bad_campaign}, settings, now=NOW)
    assert len(ids) == 1
    assert store.get_contact(store.get_task(ids[0]).contact_id).email == "good@x.example"
    assert store.contact_score(c)[0] == 0  # the bad click's partial work was rolled back
    assert store.query_one("SELECT count(*) AS n FROM clicks WHERE handled = 0")["n"] == 0

# -- end to end: a tracked link clicked through the real tracker -----------------------------------

BROWSER_UA = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/146.0.0.0 Safari/537.36")

SAFE_LINKS_UA = ("Mozilla/5.0 (Windows NT 6.1) AppleWebKit/537.36 (KHTML, like Gecko) "
                 "Chrome/57.0.2987.133 Safari/537.36")

async def test_end_to_end_tracked_click_creates_the_right_task(make_settings, root):
    import asyncio
    import time

    import aiohttp
    from aiohttp import web

    from nurture.campaigns import load_campaign
    from nurture.parts import Context, Options
    from nurture.parts import followup as followup_part
    from nurture.settle import settle_clicks
    from nurture.signing import Signer
    from nurture.store import open_async_store
    from nurture.web.tracker import create_tracker_app

    campaign = load_campaign(root / "campaigns" / "ec-payments.yaml")
    campaigns = {campaign.id: campaign}
    settings = make_settings(tracking={"trusted_proxies": ["127.0.0.1/32"]})
    astore = open_async_store(settings.database)

    def seed(s):
        ken = add_contact(s, "ken@shopco.example", first_name="Ken", last_name="Mori",
                          company="ShopCo", phone="+44 20 7946 0000", territory="GB")
        mia = add_contact(s, "mia@scanned.example", first_name="Mia", company="Scanned Ltd",
                          territory="GB")
        links = {n: add_link(s, n) for n in ("pricing", "case-study", "blog")}
        links["trap"] = add_link(s, "trap", honeypot=True)
        return add_send(s, ken), add_send(s, mia), links

    ken_send, mia_send, links = await astore.run(seed)
    signer = Signer.from_settings(settings.tracking)
    clock = Clock(NOW)
    app = create_tracker_app(settings=settings, store=astore, signer=signer, now=clock)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    stop = asyncio.Event()
    loop = None
    try:
        async with aiohttp.ClientSession() as http:
            # Mia's mail is swept by a link scanner: HEAD first, then every link at once, trap included.
            for name in ("pricing", "case-study", "blog", "trap"):
                url = f"{base}/c/{signer.sign('click', mia_send, links[name])}"
                hdr = {"User-Agent": SAFE_LINKS_UA, "X-Forwarded-For": "40.94.0.10"}
                async with http.head(url, headers=hdr, allow_redirects=False):
                    pass
                async with http.get(url, headers=hdr, allow_redirects=False) as r:
                    assert r.status == 302
            # Ken opens the pricing page from his browser, two hours after delivery.
            url = f"{base}/c/{signer.sign('click', ken_send, links['pricing'])}"
            async with http.get(url, headers={"User-Agent": BROWSER_UA, "X-Forwarded-For": "198.51.100.7"},
                                allow_redirects=False) as r:
                assert r.status == 302 and r.headers["Location"] == "https://acme.example/pricing"
        # Nothing is human yet (pending until the settle window passes): no task.
        assert await astore.run(lambda s: process_clicks(s, campaigns, settings, now=NOW)) == []
        clock.now = NOW + timedelta(seconds=settings.tracking.settle_seconds + 60)
        loop = asyncio.create_task(followup_part(Context(settings=settings, store=astore, campaigns=campaigns,
                                                         now=clock, stop=stop, options=Options(followup_every=0.1))))
        await astore.run(lambda s: settle_clicks(s, settings, now=clock.now))
        settled = time.monotonic()
        tasks = []
        while time.monotonic() - settled < 2 and not tasks:
            tasks = await astore.call(Store.list_tasks, now=clock.now)
            await asyncio.sleep(0.02)
        latency = time.monotonic() - settled
        assert latency < 1.0  # the task exists within a second of the human verdict
        verdicts = await astore.run(lambda s: s.query(
            "SELECT send_id, verdict FROM clicks WHERE kind = 'click' ORDER BY id"))
        assert {v["verdict"] for v in verdicts if v["send_id"] == mia_send} == {"scanner"}
        assert [v["verdict"] for v in verdicts if v["send_id"] == ken_send] == ["human"]
        [task] = tasks
        ken = await astore.call(Store.get_contact, task.contact_id)
        assert ken.email == "ken@shopco.example"
        assert (task.rep_id, task.kind, task.priority) == ("baker", "call_now", "high")
        assert task.due_at == clock.now + timedelta(hours=1)
        assert task.reason.startswith(
            'Opened the pricing page from "How a shop like yours cut checkout drop-off by 23%".')
        assert "Ask about monthly order volume" in task.reason
        score, _, hot = await astore.call(Store.contact_score, ken.id)
        assert score == 35 and not hot
    finally:
        stop.set()
        if loop is not None:
            await loop
        await runner.cleanup()
        await astore.aclose()


async def test_the_followup_part_wakes_up_at_once(settings, db_path, campaigns):
    import asyncio
    import time

    from nurture.parts import Context, Options, Wakes
    from nurture.parts import followup as followup_part
    from nurture.store import open_async_store

    astore = open_async_store(db_path)
    stop, wake = asyncio.Event(), asyncio.Event()
    loop = asyncio.create_task(followup_part(Context(settings=settings, store=astore, campaigns=campaigns,
                                                     now=lambda: NOW, stop=stop, wakes=Wakes(settled=wake),
                                                     options=Options(followup_every=30))))
    try:
        await asyncio.sleep(0.1)  # the first round ran; the next is 30 s away
        await astore.run(lambda s: seed_click(s, territory="GB"))
        t0 = time.monotonic()
        wake.set()
        while not await astore.call(Store.list_tasks, now=NOW):
            assert time.monotonic() - t0 < 1
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await asyncio.wait_for(loop, 2)  # stop ends the loop without waiting out the interval
        await astore.aclose()


async def test_the_followup_part_drains_a_backlog_in_small_batches(settings, db_path, campaigns):
    import asyncio

    from nurture.followup import BATCH
    from nurture.parts import Context, Options
    from nurture.parts import followup as followup_part
    from nurture.store import open_async_store

    astore = open_async_store(db_path)

    def seed(s):
        with s.transaction():
            for i in range(BATCH * 2 + 5):
                seed_click(s, email=f"b{i}@x.example", territory="GB")
    await astore.run(seed)
    stop = asyncio.Event()
    loop = asyncio.create_task(followup_part(Context(settings=settings, store=astore, campaigns=campaigns,
                                                     now=lambda: NOW, stop=stop, options=Options(followup_every=30))))
    try:
        for _ in range(200):
            if len(await astore.call(Store.list_tasks, now=NOW)) == BATCH * 2 + 5:
                break
            await asyncio.sleep(0.02)
        assert len(await astore.call(Store.list_tasks, now=NOW)) == BATCH * 2 + 5  # one round, not three
    finally:
        stop.set()
        await asyncio.wait_for(loop, 2)
        await astore.aclose()


def test_notes_see_defaults_and_bare_attributes(store, settings):
    from dataclasses import replace

    from support import make_campaign

    from nurture.models import Condition, FollowUpRule
    rule = FollowUpRule(when=Condition("pricing"), task="call_now", priority="high", due=timedelta(hours=1),
                        note="{{ contact.headcount }} staff ({{ headcount }}); {{ plan }} plan")
    campaigns = {"ec-payments": replace(make_campaign(), follow_up=(rule,),
                                        defaults={"headcount": "a few", "plan": "basic"})}
    seed_click(store, territory="GB")
    [tid] = process_clicks(store, campaigns, settings, now=NOW)
    assert store.get_task(tid).reason == "a few staff (a few); basic plan"
