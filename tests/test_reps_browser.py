"""The reps' app in headless Chromium (Debian's /usr/bin/chromium): log in, watch a new task
arrive without a reload, record an outcome. Never downloads a browser."""

from __future__ import annotations

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
                await first.locator("a").click()
                await page.wait_for_selector("a.phone")
                assert await page.get_attribute("a.phone", "href") == "tel:+81312345678"
                await page.fill("#budget", "¥2M a year")
                await page.fill("#need", "Konbini payments")
                await page.fill("#notes", "Demo on Thursday")
                await page.click("button[value=connected]")
                await page.wait_for_url(f"{base}/tasks")
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
