"""The reps' app in headless Chromium (Debian's /usr/bin/chromium): log in, watch a new task
arrive without a reload, record an outcome. Never downloads a browser."""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta

import pytest
from aiohttp import web
from support import NOW, Clock, make_campaign, seed_click

from nurture.followup import process_clicks
from nurture.repauth import issue_rep_token
from nurture.store import Store, open_async_store
from nurture.web.reps import create_reps_app

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason=f"{CHROMIUM} is not installed (apt-get install chromium; .ci/run does)"),
]


async def test_login_new_task_arrives_and_outcome(settings, db_path):
    from playwright.async_api import async_playwright

    campaigns = {"ec-payments": make_campaign()}
    astore = open_async_store(db_path)

    def seed(s):
        seed_click(s, "blog", email="first@shop.example", territory="GB", first_name="Ada",
                   last_name="First", company="First Shop")
        process_clicks(s, campaigns, settings, now=NOW)
        return issue_rep_token(s, settings, rep_id="baker", now=NOW)

    token = await astore.run(seed)
    clock = Clock(NOW + timedelta(minutes=1))
    app = create_reps_app(settings=settings, store=astore, now=clock, campaigns=campaigns,
                          poll_seconds=0.3)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            try:
                page = await (await browser.new_context(viewport={"width": 390, "height": 844})).new_page()
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                await page.goto(f"{base}/tasks")
                assert page.url.endswith("/login")  # no session: the login page
                await page.fill("#token", token)
                await page.click("button[type=submit]")
                await page.wait_for_url(f"{base}/tasks")
                assert await page.locator("[data-task]").count() == 1
                assert "Ada First" in await page.inner_text("#task-list")

                # A pricing click becomes a call-now task: it appears without a reload, on top.
                await astore.run(lambda s: (seed_click(s, email="ken@shop.example", territory="GB"),
                                            process_clicks(s, campaigns, settings, now=clock.now)))
                fresh = page.locator("li.task.fresh", has_text="Ken Mori")
                await fresh.wait_for(timeout=5000)
                first = page.locator("li.task").first
                assert "Ken Mori" in await first.inner_text()
                assert "call now" in (await first.inner_text()).lower()

                # Open it: the contact card, BANT fields and outcome buttons.
                await first.locator("a.open").click()
                await page.wait_for_selector("a.phone")
                assert await page.get_attribute("a.phone", "href") == "tel:+81312345678"
                await page.fill("#budget", "¥2M a year")
                await page.fill("#need", "Konbini payments")
                await page.fill("#notes", "Demo on Thursday")
                await page.click("button[value=connected]")
                # "Then open the next call" is on: the next task's page, Ada's.
                await page.wait_for_url(f"{base}/tasks/*")
                assert "Ada First" in await page.inner_text("h1")
                await page.goto(f"{base}/tasks")
                assert "Ken Mori" not in await page.inner_text("#task-list")
                assert not errors, errors
            finally:
                await browser.close()
        done = await astore.call(Store.list_tasks, now=clock.now, status="done")
        assert [(t.outcome, t.notes) for t in done] == [("connected", "Demo on Thursday")]
        assert (await astore.call(Store.task_bant, done[0].id))["budget"] == "¥2M a year"
    finally:
        await runner.cleanup()
        await astore.aclose()


class Served:
    """The reps' app on a real port with a logged-in Chromium page (390 px wide by default)."""

    def __init__(self, settings, db_path, *, poll_seconds=60.0, width=390):
        self.settings, self.db_path, self.poll, self.width = settings, db_path, poll_seconds, width
        self.campaigns = {"ec-payments": make_campaign()}
        self.clock = Clock(NOW + timedelta(minutes=1))

    async def __aenter__(self):
        from playwright.async_api import async_playwright

        self.store = open_async_store(self.db_path)
        self.tokens = await self.store.run(lambda s: {
            "baker": issue_rep_token(s, self.settings, rep_id="baker", now=NOW),
            "manager": issue_rep_token(s, self.settings, rep_id="", now=NOW, manager=True)})
        app = create_reps_app(settings=self.settings, store=self.store, now=self.clock,
                              campaigns=self.campaigns, poll_seconds=self.poll, stream_every=0.05)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.base = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        self.pw = await async_playwright().start()
        self.browser = await self.pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        self.context = await self.browser.new_context(viewport={"width": self.width, "height": 844})
        self.page = await self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        return self

    async def login(self, who="baker"):
        await self.page.goto(f"{self.base}/login")
        await self.page.fill("#token", self.tokens[who])
        await self.page.click("button[type=submit]")
        await self.page.wait_for_url(f"{self.base}/{'manager' if who == 'manager' else 'tasks'}")

    async def click(self, link="pricing", **contact):
        return await self.store.run(lambda s: (seed_click(s, link, **{"territory": "GB", **contact}),
                                               process_clicks(s, self.campaigns, self.settings,
                                                              now=self.clock.now))[1])

    async def __aexit__(self, *exc):
        await self.browser.close()
        await self.pw.stop()
        await self.runner.cleanup()
        await self.store.aclose()


async def test_a_click_reaches_the_open_page_by_the_stream_within_a_second(settings, db_path):
    async with Served(settings, db_path, poll_seconds=60.0) as s:  # polling cannot explain it
        await s.login()
        await s.page.wait_for_function("document.body.dataset.alerts === '0'")
        await asyncio.sleep(0.3)  # the EventSource is open
        t0 = asyncio.get_running_loop().time()
        await s.click(email="ken@shop.example")
        await s.page.locator("li.task.fresh", has_text="Ken Mori").wait_for(timeout=3000)
        elapsed = asyncio.get_running_loop().time() - t0
        assert elapsed < 1.0, elapsed
        # A high-priority arrival: the count in the title, an alert recorded.
        assert (await s.page.title()).startswith("(1) ")
        assert await s.page.evaluate("document.body.dataset.alerts") == "1"
        # Sound is opt-in and remembered.
        await s.page.click("#sound-toggle")
        assert await s.page.get_attribute("#sound-toggle", "aria-pressed") == "true"
        await s.page.reload()
        assert await s.page.get_attribute("#sound-toggle", "aria-pressed") == "true"
        assert not s.errors, s.errors


async def test_voicemail_leaves_the_task_open_with_attempt_2_of_3(settings, db_path):
    async with Served(settings, db_path) as s:
        [tid] = await s.click(email="ken@shop.example")
        await s.login()
        await s.page.click(f"[data-task='{tid}'] a.open")
        await s.page.fill("#notes", "Left a voicemail")
        await s.page.click("button[value=voicemail]")
        await s.page.wait_for_url(f"{s.base}/tasks")
        t = await s.store.call(Store.get_task, tid)
        assert (t.status, t.attempts) == ("open", 1)
        assert t.due_at == s.clock.now + timedelta(hours=2)  # Baker is on shift at 12:01 London
        await s.page.goto(f"{s.base}/tasks/{tid}")
        assert "Attempt 2 of 3" in await s.page.inner_text(".attempt-of")
        assert "Left a voicemail" in await s.page.inner_text("ol.attempts")
        assert not s.errors, s.errors


async def test_shortcuts_search_and_next_call(settings, db_path):
    async with Served(settings, db_path, width=1200) as s:
        await s.click("blog", email="ada@shop.example", first_name="Ada", last_name="First", company="First Shop")
        [ken] = await s.click(email="ken@shop.example")
        await s.login()
        await s.page.keyboard.press("?")
        assert await s.page.is_visible("#keys-help")
        await s.page.keyboard.press("Escape")
        assert not await s.page.is_visible("#keys-help")
        await s.page.keyboard.press("/")
        await s.page.keyboard.type("first shop")
        assert await s.page.locator("li.task:not(.filtered)").count() == 1
        await s.page.keyboard.press("Escape")
        await s.page.fill("#search", "")
        await s.page.dispatch_event("#search", "input")
        assert await s.page.locator("li.task:not(.filtered)").count() == 2
        await s.page.keyboard.press("Escape")  # leave the search box: keys are shortcuts again
        await s.page.keyboard.press("j")  # the first (Ken, call now), then open it
        assert await s.page.get_attribute("li.task.current", "data-task") == str(ken)
        await s.page.keyboard.press("Enter")
        await s.page.wait_for_url(f"{s.base}/tasks/{ken}")
        await s.page.keyboard.press("1")  # connected → the next call, Ada's
        await s.page.wait_for_function(f"location.pathname !== '/tasks/{ken}'")
        assert "Ada First" in await s.page.inner_text("h1")
        assert (await s.store.call(Store.get_task, ken)).outcome == "connected"
        assert not s.errors, s.errors


async def test_phone_width_pages_do_not_scroll_sideways(settings, db_path):
    async with Served(settings, db_path, width=390) as s:
        await s.click(email="ken@shop.example")
        await s.login("manager")
        for path in ("/manager", "/report/ec-payments", "/tasks/1"):
            await s.page.goto(f"{s.base}{path}")
            width = await s.page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, (path, width)
        assert not s.errors, s.errors
