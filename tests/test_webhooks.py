"""Webhooks: signed JSON POSTs to a real local aiohttp receiver, retries, and a restart."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import aiohttp
import pytest
from aiohttp import web

from nurture.parts import Context, Options
from nurture.parts import webhooks as webhooks_part
from nurture.periodic import periodic
from nurture.store import Store, open_async_store
from nurture.timeutil import utcnow
from nurture.webhooks import deliver_once, summary, verify

SECRET = b"hook-secret"


class Receiver:
    """A real HTTP receiver: answers 500 to the first ``fail_first`` requests, can stall one."""

    def __init__(self, *, fail_first: int = 0, stall_request: int | None = None) -> None:
        self.fail_first = fail_first
        self.stall_request = stall_request
        self.requests: list[dict] = []
        self.accepted: list[dict] = []
        self.stalled = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        n = len(self.requests) + 1
        entry = {"n": n, "body": json.loads(body), "headers": dict(request.headers),
                 "signed": verify(body, SECRET, request.headers.get("X-Nurture-Signature", ""))}
        self.requests.append(entry)
        if n <= self.fail_first:
            return web.Response(status=500, text="try later")
        if n == self.stall_request:
            self.stalled.set()
            await asyncio.sleep(5)  # the sender is killed while waiting for this answer
            return web.Response(status=504)
        self.accepted.append(entry)
        return web.Response(status=204)


@pytest.fixture
async def receiver_at():
    runners = []

    async def start(rcv: Receiver) -> str:
        app = web.Application()
        app.router.add_post("/hook", rcv.handle)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}/hook"

    yield start
    for r in runners:
        await r.cleanup()


def hook_settings(make_settings, url, events=None):
    hook = {"url": url, "secret_env": "HOOK_SECRET"}
    if events:
        hook["events"] = events
    return make_settings(webhooks=[hook], env={"HOOK_SECRET": SECRET.decode()})


def fast_retry(n: int) -> timedelta:
    return timedelta(milliseconds=20)


async def add_events(astore, kinds):
    def go(s):
        return [s.append_event(k, {"task_id": i, "name": "Ken Mori", "company": "ShopCo",
                                   "phone": "+81 3 1234", "kind": "call_now", "rep_id": "aoki",
                                   "reason": "Opened pricing", "outcome": "connected"}, now=utcnow())
                for i, k in enumerate(kinds)]
    return await astore.run(go)


async def test_signed_post_with_slack_text_and_event_filter(receiver_at, make_settings, db_path):
    rcv = Receiver()
    url = await receiver_at(rcv)
    settings = hook_settings(make_settings, url, events=["task.created", "contact.hot"])
    astore = open_async_store(db_path)
    try:
        ids = await add_events(astore, ["task.created", "task.done", "contact.hot"])
        async with aiohttp.ClientSession() as session:
            ok = await deliver_once(store=astore, settings=settings, session=session, now=utcnow)
            assert ok == 2
            # nothing new: a second round sends nothing
            assert await deliver_once(store=astore, settings=settings, session=session, now=utcnow) == 0
        got = {r["body"]["id"]: r for r in rcv.requests}
        assert set(got) == {ids[0], ids[2]}
        created = got[ids[0]]
        assert created["signed"]
        assert created["headers"]["X-Nurture-Event"] == "task.created"
        assert created["body"]["event"] == "task.created"
        assert created["body"]["data"]["task_id"] == 0
        assert "Call now: Ken Mori (ShopCo)" in created["body"]["text"]
        assert created["body"]["at"].endswith("+00:00")
    finally:
        await astore.aclose()


async def delivery_loop(astore, settings, session, stop) -> None:
    """The webhooks part's loop, with quick retries."""
    async def step() -> bool:
        await deliver_once(store=astore, settings=settings, session=session, now=utcnow, retry=fast_retry)
        return False

    await periodic(stop, 0.02, step=step, name="webhooks")


async def test_retries_and_restart_lose_nothing(receiver_at, make_settings, db_path):
    rcv = Receiver(fail_first=3, stall_request=5)
    url = await receiver_at(rcv)
    settings = hook_settings(make_settings, url)
    astore = open_async_store(db_path)
    session = aiohttp.ClientSession()
    ids = await add_events(astore, ["task.created", "task.overdue", "contact.hot"])
    stop = asyncio.Event()
    loop = asyncio.create_task(delivery_loop(astore, settings, session, stop))
    await asyncio.wait_for(rcv.stalled.wait(), 5)
    for _ in range(100):  # the two answered deliveries are recorded; the third hangs
        if sum(r["status"] == "delivered" for r in await astore.call(Store.deliveries)) == 2:
            break
        await asyncio.sleep(0.01)
    # crash: the delivery loop dies mid-request, the store closes without a goodbye
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop
    await session.close()
    await astore.aclose()
    assert len(rcv.accepted) == 2

    astore = open_async_store(db_path)
    more = await add_events(astore, ["task.done"])  # an event that arrived during the outage
    stop = asyncio.Event()
    async with aiohttp.ClientSession() as session:
        loop = asyncio.create_task(delivery_loop(astore, settings, session, stop))
        for _ in range(200):
            if {r["body"]["id"] for r in rcv.accepted} >= set(ids + more):
                break
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(loop, 5)
    assert sorted(r["body"]["id"] for r in rcv.accepted) == sorted(ids + more)  # each once
    assert all(r["signed"] for r in rcv.requests)
    rows = await astore.call(Store.deliveries)
    assert {r["status"] for r in rows} == {"delivered"}
    assert max(r["attempts"] for r in rows) >= 2
    await astore.aclose()


async def test_gives_up_after_max_attempts(receiver_at, make_settings, db_path):
    rcv = Receiver(fail_first=100)
    url = await receiver_at(rcv)
    settings = hook_settings(make_settings, url)
    astore = open_async_store(db_path)
    try:
        await add_events(astore, ["task.created"])
        async with aiohttp.ClientSession() as session:
            for _ in range(3):
                await deliver_once(store=astore, settings=settings, session=session, now=utcnow,
                                   max_attempts=3, retry=lambda n: timedelta(0))
        [row] = await astore.call(Store.deliveries)
        assert (row["status"], row["attempts"], row["last_error"]) == ("failed", 3, "HTTP 500")
    finally:
        await astore.aclose()


def test_summary_texts():
    assert summary("contact.hot", {"name": "Ken", "company": "ShopCo", "score": 72.5}) == \
        ":fire: Ken (ShopCo) is hot: lead score 72.5"
    assert "Overdue by 12 min" in summary("task.overdue", {"name": "Ken", "overdue_minutes": 12})
    assert summary("contact.unsubscribed", {"email": "k@x"}) == ":no_bell: k@x unsubscribed"


async def test_the_webhooks_part_owns_its_session(receiver_at, make_settings, db_path, settings):
    rcv = Receiver()
    url = await receiver_at(rcv)
    astore = open_async_store(db_path)
    try:
        stop = asyncio.Event()
        # No webhook configured: the part returns at once.
        await asyncio.wait_for(webhooks_part(Context(settings=settings, store=astore, campaigns={}, stop=stop)), 1)
        await add_events(astore, ["contact.hot"])
        task = asyncio.create_task(webhooks_part(Context(
            settings=hook_settings(make_settings, url), store=astore, campaigns={}, stop=stop,
            options=Options(webhooks_every=0.02))))
        for _ in range(100):
            if rcv.accepted:
                break
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, 2)
        assert [r["body"]["event"] for r in rcv.accepted] == ["contact.hot"]
    finally:
        await astore.aclose()


def test_summary_escapes_slack_markup_from_contact_fields():
    text = summary("task.created", {"kind": "call_now", "name": "<!channel> Ken", "company": "<https://evil.example|Invoice>",
                                    "phone": "@here", "reason": "clicked A & B\n<@U123>", "rep_id": "baker"})
    assert "<" not in text and ">" not in text.replace("→", "")
    assert "&lt;!channel&gt; Ken (&lt;https://evil.example|Invoice&gt;)" in text
    assert "@\u2060here" in text and "A &amp; B &lt;@U123&gt;" in text and "\n" not in text
    assert text.startswith(":telephone_receiver: Call now:")
