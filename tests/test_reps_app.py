"""The reps' app over real HTTP: login, sessions, CSRF, per-rep isolation, outcomes, API, manager."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer
from support import NOW, Clock, make_campaign, seed_click

from nurture.followup import process_clicks
from nurture.repauth import issue_rep_token
from nurture.store import Store, open_async_store
from nurture.web import keys
from nurture.web.reps import create_reps_app


@pytest.fixture
async def env(settings, db_path):
    astore = open_async_store(db_path)
    campaigns = {"ec-payments": make_campaign()}

    def seed(s):
        seed_click(s, email="ken@shop.example", territory="GB")            # → baker
        seed_click(s, "blog", email="yui@tea.example", territory="JP",     # → aoki
                   first_name="Yui", last_name="Sato", company="Kumo Tea")
        ids = process_clicks(s, campaigns, settings, now=NOW)
        return ids, {r: issue_rep_token(s, settings, rep_id=r, now=NOW) for r in ("baker", "aoki")}, \
            issue_rep_token(s, settings, rep_id="", now=NOW, manager=True)

    (baker_task, aoki_task), tokens, manager = await astore.run(seed)
    clock = Clock(NOW)
    app = create_reps_app(settings=settings, store=astore, now=clock, campaigns=campaigns)
    clients = []

    async def client():
        c = TestClient(TestServer(app, host="127.0.0.1", port=0))
        await c.start_server()
        clients.append(c)
        return c

    yield {"client": client, "tokens": tokens, "manager": manager, "baker_task": baker_task,
           "aoki_task": aoki_task, "store": astore, "clock": clock, "app": app}
    for c in clients:
        await c.close()
    await astore.aclose()


async def login(client, token):
    page = await client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', await page.text()).group(1)
    return await client.post("/login", data={"csrf": csrf, "token": token}, allow_redirects=False)


def csrf_of(html):
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


async def test_no_credentials_no_data(env):
    c = await env["client"]()
    for path in ("/tasks", f"/tasks/{env['baker_task']}", "/manager", "/tasks/fragment"):
        r = await c.get(path, allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/login", path
    r = await c.get("/api/tasks")
    assert r.status == 401 and "Ken" not in await r.text()
    r = await c.get("/api/tasks", headers={"Authorization": "Bearer nrt_wrong"})
    assert r.status == 401
    r = await c.post(f"/api/tasks/{env['baker_task']}/done", json={"outcome": "connected"})
    assert r.status == 401
    r = await login(c, "nrt_not-a-token")
    assert r.status == 401 and "not valid" in await r.text()
    assert "nurture_session" not in {k for k in c.session.cookie_jar.filter_cookies(c.make_url("/"))}


async def test_login_sets_strict_httponly_cookie_and_lists_own_tasks(env):
    c = await env["client"]()
    r = await login(c, env["tokens"]["baker"])
    assert r.status == 303 and r.headers["Location"] == "/tasks"
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    # the cookie value is not what the database stores
    sid = re.search(r"nurture_session=([^;]+)", cookie).group(1)
    rows = await env["store"].run(lambda s: s.query("SELECT session_hash FROM rep_sessions"))
    assert rows and all(sid not in r["session_hash"] for r in rows)
    page = await (await c.get("/tasks")).text()
    assert "Ken Mori" in page and "ShopCo" in page and "Kumo Tea" not in page
    assert "Opened the pricing page" in page
    # Every answer carries the security headers, the login redirect as well as the pages.
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    r = await c.get("/tasks")
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]


async def test_tokens_are_stored_hashed(env):
    rows = await env["store"].run(lambda s: s.query("SELECT token_hash, rep_id FROM rep_tokens"))
    assert env["tokens"]["baker"] not in {r["token_hash"] for r in rows}
    assert {r["rep_id"] for r in rows} == {"baker", "aoki", "*manager*"}


async def test_rep_a_cannot_read_or_close_rep_b_task(env):
    c = await env["client"]()
    await login(c, env["tokens"]["aoki"])
    r = await c.get(f"/tasks/{env['baker_task']}")
    assert r.status == 404 and "Ken" not in await r.text()
    page = await (await c.get(f"/tasks/{env['aoki_task']}")).text()
    r = await c.post(f"/tasks/{env['baker_task']}",
                     data={"csrf": csrf_of(page), "outcome": "not_interested"}, allow_redirects=False)
    assert r.status == 404
    api = {"Authorization": f"Bearer {env['tokens']['aoki']}"}
    r = await c.post(f"/api/tasks/{env['baker_task']}/done", json={"outcome": "connected"}, headers=api)
    assert r.status == 404
    body = await (await c.get("/api/tasks", headers=api)).json()
    assert [t["id"] for t in body["tasks"]] == [env["aoki_task"]]
    task = await env["store"].call(Store.get_task, env["baker_task"])
    assert task.status == "open"


async def test_post_without_csrf_fails(env):
    c = await env["client"]()
    await login(c, env["tokens"]["baker"])
    tid = env["baker_task"]
    r = await c.post(f"/tasks/{tid}", data={"outcome": "connected"}, allow_redirects=False)
    assert r.status == 403
    r = await c.post(f"/tasks/{tid}", data={"outcome": "connected", "csrf": "forged"},
                     allow_redirects=False)
    assert r.status == 403
    assert (await env["store"].call(Store.get_task, tid)).status == "open"
    # the login form is protected too (double-submit cookie)
    c2 = await env["client"]()
    r = await c2.post("/login", data={"token": env["tokens"]["baker"]}, allow_redirects=False)
    assert r.status == 403


async def test_task_page_and_outcome_with_bant(env):
    c = await env["client"]()
    await login(c, env["tokens"]["baker"])
    tid = env["baker_task"]
    page = await (await c.get(f"/tasks/{tid}")).text()
    assert 'href="tel:+81312345678"' in page
    assert "Budget" in page and "Authority" in page and "Need" in page and "Timeline" in page
    assert "pricing" in page  # what was clicked
    assert "How  cut checkout drop-off" in page  # mail history by subject
    assert "Their time" in page
    r = await c.post(f"/tasks/{tid}", data={
        "csrf": csrf_of(page), "budget": "¥2M/yr", "authority": "CFO", "need": "konbini",
        "timeline": "Q1", "notes": "Send the deck", "outcome": "qualified"}, allow_redirects=False)
    assert r.status == 303
    t = await env["store"].call(Store.get_task, tid)
    assert (t.status, t.outcome, t.notes) == ("done", "qualified", "Send the deck")
    assert (await env["store"].call(Store.task_bant, tid))["authority"] == "CFO"
    enr = await env["store"].run(lambda s: s.query_one(
        "SELECT state FROM enrollments WHERE contact_id = ?", (t.contact_id,)))
    assert enr["state"] == "exited"
    assert len(await env["store"].call(Store.events, kind="contact.qualified")) == 1
    page = await (await c.get("/tasks")).text()
    assert "No calls waiting" in page


async def test_snooze_from_the_form_uses_the_reps_time_zone(env):
    c = await env["client"]()
    await login(c, env["tokens"]["baker"])
    tid = env["baker_task"]
    page = await (await c.get(f"/tasks/{tid}")).text()
    r = await c.post(f"/tasks/{tid}", data={"csrf": csrf_of(page), "outcome": "snoozed",
                                            "snooze_until": "2026-11-25T09:30"}, allow_redirects=False)
    assert r.status == 303
    t = await env["store"].call(Store.get_task, tid)
    assert t.snooze_until.isoformat() == "2026-11-25T09:30:00+00:00"  # London is UTC in November
    assert "Ken" not in await (await c.get("/tasks")).text()
    page = await (await c.get(f"/tasks/{tid}")).text()
    r = await c.post(f"/tasks/{tid}", data={"csrf": csrf_of(page), "outcome": "snoozed",
                                            "snooze_until": "2020-01-01T00:00"})
    assert r.status == 400


async def test_api_lists_and_closes_with_bearer_token(env):
    c = await env["client"]()
    api = {"Authorization": f"Bearer {env['tokens']['baker']}"}
    body = await (await c.get("/api/tasks", headers=api)).json()
    [t] = body["tasks"]
    assert t["contact"]["phone"] == "+81 3 1234 5678" and t["priority"] == "high"
    assert t["timeline"][0]["link"] == "pricing" and t["score"] == 35
    r = await c.post(f"/api/tasks/{t['id']}/done", json={"outcome": "bogus"}, headers=api)
    assert r.status == 400
    r = await c.post(f"/api/tasks/{t['id']}/done", json={"outcome": "voicemail", "note": "left msg"},
                     headers=api)
    assert r.status == 200 and (await r.json())["task"]["outcome"] == "voicemail"
    assert (await (await c.get("/api/tasks", headers=api)).json())["tasks"] == []


async def test_overdue_sorted_first_and_manager_counts(env):
    c = await env["client"]()
    env["clock"].now = NOW + timedelta(days=3)  # both tasks overdue
    r = await login(c, env["manager"])
    assert r.headers["Location"] == "/manager"
    page = await (await c.get("/manager")).text()
    assert "Team queues" in page and "Ken Mori" in page and "Yui Sato" in page
    row = re.search(r'data-rep="baker">(.*?)</tr>', page, re.S).group(1)
    assert re.search(r'class="overdue-count">1<', row)
    # a task of a rep no longer in config.yaml still shows, as unassigned
    await env["store"].run(lambda s: s.conn.execute(
        "UPDATE tasks SET rep_id = 'gone' WHERE id = ?", (env["aoki_task"],)))
    page = await (await c.get("/manager")).text()
    assert "<h2>Unassigned</h2>" in page and "Yui Sato" in page.split("<h2>Unassigned</h2>")[1]
    # a manager can look but not touch
    page = await (await c.get(f"/tasks/{env['baker_task']}")).text()
    assert "<fieldset disabled>" in page
    r = await c.post(f"/tasks/{env['baker_task']}", data={"csrf": csrf_of(page), "outcome": "connected"})
    assert r.status == 403
    # a rep cannot open the manager view
    c2 = await env["client"]()
    await login(c2, env["tokens"]["baker"])
    assert (await c2.get("/manager")).status == 403


async def test_logout_ends_the_session(env):
    c = await env["client"]()
    await login(c, env["tokens"]["baker"])
    page = await (await c.get("/tasks")).text()
    r = await c.post("/logout", data={"csrf": csrf_of(page)}, allow_redirects=False)
    assert r.status == 303
    assert await env["store"].run(lambda s: s.query("SELECT * FROM rep_sessions")) == []
    assert (await c.get("/tasks", allow_redirects=False)).status == 303


async def test_a_rep_removed_from_the_config_loses_tokens_and_sessions(env, settings):
    import dataclasses

    c = await env["client"]()
    assert (await login(c, env["tokens"]["baker"])).status == 303
    assert (await c.get("/tasks", allow_redirects=False)).status == 200
    bearer = {"Authorization": f"Bearer {env['tokens']['baker']}"}
    assert (await c.get("/api/tasks", headers=bearer)).status == 200
    # The same database, the config reloaded without baker (as after an edit and a restart).
    without = dataclasses.replace(settings, reps=tuple(r for r in settings.reps if r.id != "baker"))
    app = create_reps_app(settings=without, store=env["store"], now=env["clock"], campaigns={})
    other = TestClient(TestServer(app, host="127.0.0.1", port=0), cookie_jar=c.session.cookie_jar)
    await other.start_server()
    try:
        r = await other.get("/tasks", allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/login"  # the old session no longer counts
        assert (await other.get("/api/tasks", headers=bearer)).status == 401
        r = await login(other, env["tokens"]["baker"])
        assert r.status == 401 and "nurture_session" not in r.headers.get("Set-Cookie", "")
        assert (await login(other, env["tokens"]["aoki"])).status == 303  # the others still work
    finally:
        await other.close()


async def test_a_login_link_becomes_a_session_and_a_clean_url(env):
    c = await env["client"]()
    r = await c.get(f"/login?token={env['tokens']['aoki']}", allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/tasks" and "nurture_session=" in r.headers["Set-Cookie"]
    assert "Kumo Tea" in await (await c.get("/tasks")).text()
    r = await c.get("/login?token=nrt_wrong", allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/login?error=invalid"
    page = await (await c.get(r.headers["Location"])).text()
    assert "not valid" in page and "nrt_wrong" not in page


async def test_failed_logins_back_off_per_address_and_per_rep(env):
    c = await env["client"]()
    statuses = [(await login(c, f"nrt_wrong{i}")).status for i in range(8)]
    assert statuses[:5] == [401] * 5 and statuses[5] == 401 and statuses[6:] == [429, 429]
    r = await login(c, env["tokens"]["baker"])  # even a good token waits while the address does
    assert r.status == 429 and int(r.headers["Retry-After"]) >= 1 and "Too many" in await r.text()
    env["clock"].now += timedelta(seconds=5)
    assert (await login(c, env["tokens"]["baker"])).status == 303  # the wait is over; success clears it
    assert (await login(c, "nrt_wrong")).status == 401
    # A revoked token names its rep: replaying it backs off that rep, from any address.
    await env["store"].run(lambda s: s.revoke_rep_tokens("aoki", now=NOW))
    guard = env["app"][__import__("nurture.web.keys", fromlist=["LOGIN_GUARD"]).LOGIN_GUARD]
    t = env["clock"]().timestamp()
    guard.succeeded(["ip:127.0.0.1"])
    for _ in range(6):
        assert (await login(c, env["tokens"]["aoki"])).status == 401
        guard.succeeded(["ip:127.0.0.1"])  # as if each came from another address
    assert guard.wait(["rep:aoki"], now=t) > 0 and guard.wait(["rep:baker"], now=t) == 0


async def test_failed_snooze_keeps_the_typed_notes_and_presets_work(env):
    c = await env["client"]()
    await login(c, env["tokens"]["baker"])
    tid = env["baker_task"]
    page = await (await c.get(f"/tasks/{tid}")).text()
    assert 'href="tel:+81312345678"' in await (await c.get("/tasks")).text()  # one tap to dial
    r = await c.post(f"/tasks/{tid}", data={"csrf": csrf_of(page), "outcome": "snoozed", "snooze_until": "",
                                            "notes": "Call after the board meeting", "budget": "2M"})
    assert r.status == 400
    body = await r.text()
    assert "snooze needs a time" in body and "Call after the board meeting</textarea>" in body
    assert 'value="2M"' in body
    r = await c.post(f"/tasks/{tid}", data={"csrf": csrf_of(body), "outcome": "snooze:tomorrow",
                                            "notes": "Call after the board meeting"}, allow_redirects=False)
    assert r.status == 303
    t = await env["store"].call(Store.get_task, tid)
    # Tomorrow 09:00 the contact's time (Tokyo, the campaign's zone) is 00:00 UTC.
    assert t.snooze_until.isoformat() == "2026-11-25T00:00:00+00:00"
    assert t.notes == "Call after the board meeting"


async def test_next_task_after_an_outcome(env):
    c = await env["client"]()
    await login(c, env["tokens"]["baker"])
    other = await env["store"].run(lambda s: (seed_click(s, "blog", email="ada@shop.example", territory="GB",
                                                         first_name="Ada"),
                                              process_clicks(s, env["app"][keys.REPS_CAMPAIGNS],
                                                             env["app"][keys.SETTINGS], now=NOW))[1][0])
    page = await (await c.get(f"/tasks/{env['baker_task']}")).text()
    assert 'name="next"' in page
    r = await c.post(f"/tasks/{env['baker_task']}", data={"csrf": csrf_of(page), "outcome": "connected",
                                                          "next": "1"}, allow_redirects=False)
    assert r.headers["Location"] == f"/tasks/{other}"
    r = await c.post(f"/tasks/{other}", data={"csrf": csrf_of(page), "outcome": "connected", "next": "1"},
                     allow_redirects=False)
    assert r.headers["Location"] == "/tasks"  # nothing left


async def test_manager_reassigns_and_sees_load_against_capacity(env):
    c = await env["client"]()
    await login(c, env["manager"])
    page = await (await c.get("/manager")).text()
    row = re.search(r'data-rep="baker">(.*?)</tr>', page, re.S).group(1)
    assert re.search(r'class="load">1 / 16', row)
    r = await c.post(f"/manager/tasks/{env['baker_task']}/reassign",
                     data={"csrf": csrf_of(page), "rep": "aoki"}, allow_redirects=False)
    assert r.status == 303
    assert (await env["store"].call(Store.get_task, env["baker_task"])).rep_id == "aoki"
    changes = await env["store"].run(lambda s: s.query(
        "SELECT rep_id FROM task_changes WHERE task_id = ? ORDER BY id DESC LIMIT 2", (env["baker_task"],)))
    assert {r["rep_id"] for r in changes} == {"baker", "aoki"}  # both lists hear of it
    r = await c.post(f"/manager/tasks/{env['baker_task']}/reassign", data={"csrf": csrf_of(page), "rep": "nobody"})
    assert r.status == 404
    c2 = await env["client"]()
    await login(c2, env["tokens"]["baker"])
    p2 = await (await c2.get("/tasks")).text()
    r = await c2.post(f"/manager/tasks/{env['aoki_task']}/reassign", data={"csrf": csrf_of(p2), "rep": "baker"})
    assert r.status == 403


async def test_report_page_shows_rendered_subjects(env, settings):
    from dataclasses import replace
    campaign = replace(make_campaign(), samples=({"email": "s@x.example", "similar_company": "Tsuki Mart"},))
    app = create_reps_app(settings=settings, store=env["store"], now=env["clock"],
                          campaigns={"ec-payments": campaign})
    c = TestClient(TestServer(app, host="127.0.0.1", port=0))
    await c.start_server()
    try:
        await login(c, env["manager"])
        page = await (await c.get("/report/ec-payments")).text()
        assert "How Tsuki Mart cut checkout drop-off" in page and "{{" not in page
    finally:
        await c.close()


async def test_the_day_plan_queues_the_overflow_for_the_next_working_day_by_priority(env):
    from support import add_contact

    def overload(s):
        ids = []
        for i in range(17):  # with the seeded one: 18 calls due today for a capacity of 16
            cid = add_contact(s, f"extra{i}@x.example", first_name=f"Extra{i}")
            ids.append(s.insert_task(contact_id=cid, campaign_id="ec-payments", rep_id="baker", kind="call",
                                     priority="low" if i < 2 else "high", due_at=NOW - timedelta(hours=1),
                                     reason="r", context={}, now=NOW))
        s.record_pacing("ec-payments", held=1520, released=480, free_slots=0, expect=0.14, now=NOW)
        return ids

    ids = await env["store"].run(overload)
    c = await env["client"]()
    await login(c, env["tokens"]["baker"])
    page = await (await c.get("/tasks")).text()
    assert re.search(r'class="plan-count">16 / 16<', page)
    assert "2 queued for Wed 25 Nov" in page
    queued = re.findall(r'class="task p-low queued" data-task="(\d+)"', page)
    assert sorted(int(q) for q in queued) == sorted(ids[:2])  # the low ones wait, not marked overdue
    assert page.index(f'data-task="{ids[2]}"') < page.index(f'data-task="{ids[0]}"')  # today's plan first
    fragment = await (await c.get("/tasks/fragment")).text()
    assert fragment.count("queued for Wed 25 Nov") == 2
    m = await env["client"]()
    await login(m, env["manager"])
    manager = await (await m.get("/manager")).text()
    row = re.search(r'data-rep="baker">(.*?)</tr>', manager, re.S).group(1)
    assert re.search(r'class="load late">16 / 16', row) and "2 for Wed 25" in row
    pacing = re.search(r'data-campaign="ec-payments">(.*?)</tr>', manager, re.S).group(1)
    assert "1520" in pacing and "480" in pacing and "14.0 %" in pacing
