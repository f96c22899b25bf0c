"""The manager's contact lookup and suppress form in the reps' app, over real HTTP."""

from __future__ import annotations

from test_reps_app import csrf_of, env, login  # noqa: F401 - env is the reps' app fixture


async def test_manager_looks_a_contact_up_and_suppresses_it(env):  # noqa: F811
    c = await env["client"]()
    await login(c, env["manager"])
    page = await (await c.get("/manager")).text()
    assert 'href="/manager/contacts"' in page
    page = await (await c.get("/manager/contacts", params={"email": "YUI@tea.example"})).text()
    assert "Yui Sato" in page and "ec-payments: active" in page and "call" in page
    assert "Suppress YUI@tea.example" in page
    r = await c.post("/manager/contacts/suppress", allow_redirects=False,
                     data={"csrf": csrf_of(page), "email": "yui@tea.example", "reason": "asked by phone"})
    assert r.status == 303 and r.headers["Location"].startswith("/manager/contacts?email=yui")
    page = await (await c.get(r.headers["Location"])).text()
    assert "suppressed</strong> (asked by phone)" in page and "ec-payments: exited" in page
    assert await env["store"].run(lambda s: s.is_suppressed("yui@tea.example"))
    # An address that is no contact yet can be suppressed too.
    page = await (await c.get("/manager/contacts", params={"email": "caller@else.example"})).text()
    assert "No contact with this address" in page
    r = await c.post("/manager/contacts/suppress", data={"csrf": csrf_of(page), "email": "caller@else.example"})
    assert r.status == 200 and await env["store"].run(lambda s: s.is_suppressed("caller@else.example"))
    # Without the CSRF token: refused.
    r = await c.post("/manager/contacts/suppress", data={"email": "x@y.example"})
    assert r.status == 403 and not await env["store"].run(lambda s: s.is_suppressed("x@y.example"))


async def test_reps_cannot_look_contacts_up(env):  # noqa: F811
    c = await env["client"]()
    await login(c, env["tokens"]["baker"])
    assert (await c.get("/manager/contacts", params={"email": "yui@tea.example"})).status == 403
    page = await (await c.get("/tasks")).text()
    r = await c.post("/manager/contacts/suppress", data={"csrf": csrf_of(page), "email": "yui@tea.example"})
    assert r.status == 403 and not await env["store"].run(lambda s: s.is_suppressed("yui@tea.example"))
