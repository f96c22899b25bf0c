"""Regenerate the README's screenshots from the real pages, in Debian's headless Chromium.

    python docs/screenshots.py

Plays the demo (fast), logs in as a rep and as the manager, and saves PNGs in docs/img/.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from playwright.async_api import async_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nurture.config import load_settings  # noqa: E402
from nurture.demo import play  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


async def shoot(result, out: Path) -> None:
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        for who, path, name, size in (("aoki", "/tasks", "tasks", (1100, 760)),
                                      ("aoki", None, "task", (1100, 1000)),
                                      ("manager", "/report/ec-payments", "report", (1100, 900)),
                                      ("aoki", "/tasks", "tasks-phone", (390, 800))):
            ctx = await browser.new_context(viewport={"width": size[0], "height": size[1]})
            page = await ctx.new_page()
            await page.goto(f"{result.reps_url}/login?token={result.tokens[who]}")
            await page.click("button.primary")
            await page.wait_for_load_state()
            if path:
                await page.goto(result.reps_url + path)
            else:  # the first task's page
                await page.click("main a[href^='/tasks/']")
                await page.wait_for_load_state()
            await page.screenshot(path=str(out / f"{name}.png"), full_page=name == "report")
            await ctx.close()
        await browser.close()


async def main() -> None:
    out = ROOT / "docs" / "img"
    out.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    shots: list[asyncio.Task] = []

    def ready(result) -> None:
        async def go() -> None:
            try:
                await shoot(result, out)
            finally:
                stop.set()
        shots.append(asyncio.create_task(go()))

    with tempfile.TemporaryDirectory() as tmp:
        await play(base=load_settings(ROOT / "config.yaml"), workdir=Path(tmp), campaigns_dir=ROOT / "campaigns",
                   speed=1_000_000, tracker_port=None, reps_port=None, keep_serving=True,
                   on_ready=ready, stop=stop)
    await asyncio.gather(*shots)
    print("saved", ", ".join(sorted(p.name for p in out.glob("*.png"))))


if __name__ == "__main__":
    asyncio.run(main())
