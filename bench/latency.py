"""Benchmark: a person's click → a task a rep can see, through the real servers.

    python bench/latency.py [--clicks 1000] [--settle 0] [--concurrency 1] [--poll-ms 5]
    python bench/latency.py --browser [--clicks 200]

The server is the real ``nurture run`` (scheduler, sender, tracker, settle loop, follow-up
loop and reps' app in one process on one SQLite file), started as a subprocess. Behind a
trusted proxy (``X-Forwarded-For``), each click comes from its own address, with a current
browser's user agent, an hour after delivery, on a distinct contact's mail, so every one is a
new human click and a new task. The client times from sending
``GET /c/<token>`` to the first ``GET /api/tasks`` (rep token, polled every ``--poll-ms``)
that lists the contact's task; then marks it done through the API so the list stays short.
With ``--browser`` the end is the browser instead: a headless Chromium (Debian's
/usr/bin/chromium) logged in to the reps' page, timed to the ``task`` event the page's
EventSource receives from ``GET /api/stream`` (what makes the list update and the alert sound).

The human verdict normally waits the settle window (``tracking.settle``, 90 s) for scanner
signals; ``--settle 0`` (the default here) measures the pipeline itself: click committed →
verdict → follow-up rule → task → API. Target: p95 < 200 ms. ``--settle 90 --clicks 20
--concurrency 20`` shows the real end-to-end figure with the default window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _net import free_port, wait_ready  # noqa: E402

CAMPAIGN = "industry-news"
SECRET = "bench-secret"
REP = "aoki"
#: A current Safari: the judge's stale-Chrome rule does not apply, whatever today's date.
UA = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
      "Version/17.5 Safari/605.1.15")


def click_headers(i: int) -> dict[str, str]:
    """A person's click: a browser's User-Agent, from an address of its own behind the proxy."""
    return {"User-Agent": UA, "X-Forwarded-For": f"10.{i // 62500 % 250}.{i // 250 % 250}.{i % 250 + 1}"}


def write_config(d: Path, *, settle: float) -> Path:
    track, reps = free_port(), free_port()
    cfg = d / "config.yaml"
    cfg.write_text(json.dumps({
        "database": str(d / "latency.db"),
        "campaigns_dir": str(ROOT / "campaigns"), "templates_dir": str(ROOT / "templates"),
        "sender": {"from": "Acme Payments <hello@acme.example>", "postal_address": "1-2-3 Marunouchi, Tokyo"},
        "tracking": {"base_url": f"http://127.0.0.1:{track}", "listen": f"127.0.0.1:{track}",
                     "secret_env": "NURTURE_SECRET", "settle": f"{settle:g}s",
                     "trusted_proxies": ["127.0.0.1/32"]},
        "reps_app": {"listen": f"127.0.0.1:{reps}", "base_url": f"http://127.0.0.1:{reps}"},
        # On shift around the clock with room for every task, so routing never delays one.
        "reps": [{"id": REP, "name": "Aoki Yui", "email": "aoki@acme.example", "timezone": "UTC",
                  "hours": "00:00-23:59", "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                  "capacity": 1_000_000}],
    }))  # JSON is YAML
    return cfg


def seed(cfg: Path, n: int) -> tuple[list[tuple[int, str]], str]:
    """``n`` contacts, each with one delivered mail an hour ago; (contact id, click token) each,
    and a rep token for the API."""
    from nurture.campaigns import find_campaign
    from nurture.config import load_settings
    from nurture.repauth import issue_rep_token
    from nurture.scheduler import enroll, tick
    from nurture.signing import Signer
    from nurture.store import open_store
    from nurture.store.contacts import ContactRow

    settings = load_settings(cfg, env={"NURTURE_SECRET": SECRET})
    campaign = find_campaign(ROOT / "campaigns", CAMPAIGN)
    store = open_store(settings.database)
    real = datetime.now(UTC)
    # A Tuesday 10:00 UTC in the past: inside the campaign's London send window.
    clock = real.replace(hour=10, minute=0, second=0, microsecond=0) - timedelta(days=7)
    clock -= timedelta(days=(clock.weekday() - 1) % 7)
    store.upsert_contacts([ContactRow(f"reader{i}@shop{i}.example", {"first_name": f"Kim{i}", "company": f"Shop {i}"})
                           for i in range(n)], now=clock)
    enroll(store, campaign, now=clock, all_contacts=True)
    result = tick(store, {campaign.id: campaign}, now=clock, limit=n + 10)
    assert result.queued == n, result
    signer = Signer.from_settings(settings.tracking)
    link = store.link_id(campaign.id, campaign.steps[0].id, "latest-issue", "https://acme.example/news", False)
    out: list[tuple[int, str]] = []
    delivered = real - timedelta(hours=1)
    for send in store.claim_sends(owner="bench", now=real, lease=timedelta(minutes=5), limit=n + 10):
        store.mark_sent(send.id, now=delivered)
        out.append((send.contact_id, signer.sign("click", send.id, link)))
    token = issue_rep_token(store, settings, rep_id=REP, now=real)
    store.close()
    return out, token


# -- the client ---------------------------------------------------------------------------------

async def measure(*, tracker: str, reps: str, token: str, targets: list[tuple[int, str]], concurrency: int,
                  poll: float, timeout: float) -> tuple[list[float], int]:
    import aiohttp

    waiting: dict[int, asyncio.Future[float]] = {}
    done_posts: set[asyncio.Task[Any]] = set()
    auth = {"Authorization": f"Bearer {token}"}
    missed = 0

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency + 4)) as http:
        stop = asyncio.Event()

        async def poller() -> None:
            while not stop.is_set():
                async with http.get(f"{reps}/api/tasks", headers=auth) as r:
                    body = await r.json()
                seen = time.perf_counter()
                for task in body["tasks"]:
                    fut = waiting.pop(task["contact"]["id"], None)
                    if fut is not None and not fut.done():
                        fut.set_result(seen)
                        t = asyncio.create_task(_done(http, reps, auth, task["id"]))
                        done_posts.add(t)
                        t.add_done_callback(done_posts.discard)
                await asyncio.sleep(poll)

        async def clicker(k: int, queue: asyncio.Queue[tuple[int, int, str]]) -> None:
            nonlocal missed
            while True:
                try:
                    i, contact_id, click_token = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
                waiting[contact_id] = fut
                headers = click_headers(i)
                t0 = time.perf_counter()
                async with http.get(f"{tracker}/c/{click_token}", headers=headers, allow_redirects=False) as r:
                    await r.read()
                    assert r.status == 302, r.status
                try:
                    seen = await asyncio.wait_for(fut, timeout)
                except TimeoutError:
                    waiting.pop(contact_id, None)
                    missed += 1
                    continue
                latencies.append((seen - t0) * 1000)

        latencies: list[float] = []
        queue: asyncio.Queue[tuple[int, int, str]] = asyncio.Queue()
        for i, (cid, tok) in enumerate(targets):
            queue.put_nowait((i, cid, tok))
        poll_task = asyncio.create_task(poller())
        await asyncio.gather(*(clicker(k, queue) for k in range(concurrency)))
        stop.set()
        await poll_task
        await asyncio.gather(*done_posts, return_exceptions=True)
    return latencies, missed


async def measure_browser(*, tracker: str, reps: str, token: str, targets: list[tuple[int, str]],
                          timeout: float) -> tuple[list[float], int]:
    """Click → the ``task`` event in a logged-in Chromium page, one click at a time."""
    import aiohttp
    from playwright.async_api import async_playwright

    waiting: dict[int, asyncio.Future[float]] = {}
    auth = {"Authorization": f"Bearer {token}"}
    latencies: list[float] = []
    missed = 0

    def seen(contact_id: int, at_ms: float) -> None:
        # The page's own clock at the event (same machine): the binding's round trip back to
        # this process is not part of what a rep sees.
        fut = waiting.pop(int(contact_id), None)
        if fut is not None and not fut.done():
            fut.set_result(at_ms / 1000)

    async with async_playwright() as pw, aiohttp.ClientSession() as http:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = await (await browser.new_context()).new_page()
        await page.expose_function("nurtureSeen", seen)
        await page.goto(f"{reps}/login")
        await page.fill("#token", token)
        await page.click("button[type=submit]")
        await page.wait_for_url(f"{reps}/tasks")
        await page.evaluate("""document.addEventListener("nurture:task", function (e) {
            if (e.detail.status === "open" && !e.detail.snoozed)
              window.nurtureSeen(e.detail.contact.id, performance.timeOrigin + performance.now()); })""")
        await asyncio.sleep(0.5)  # the EventSource is connected
        for i, (contact_id, click_token) in enumerate(targets):
            fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
            waiting[contact_id] = fut
            headers = click_headers(i)
            t0 = time.time()
            async with http.get(f"{tracker}/c/{click_token}", headers=headers, allow_redirects=False) as r:
                await r.read()
            try:
                latencies.append((await asyncio.wait_for(fut, timeout) - t0) * 1000)
            except TimeoutError:
                waiting.pop(contact_id, None)
                missed += 1
        await browser.close()
        # Close the tasks afterwards so the page's list stayed as a rep's would be.
        async with http.get(f"{reps}/api/tasks", headers=auth) as r:
            body = await r.json()
        await asyncio.gather(*(_done(http, reps, auth, t["id"]) for t in body["tasks"]))
    return latencies, missed


async def _done(http: Any, reps: str, auth: dict[str, str], task_id: int) -> None:
    async with http.post(f"{reps}/api/tasks/{task_id}/done", headers=auth, json={"outcome": "connected"}) as r:
        await r.read()


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(p / 100 * len(s))) - 1))]


def stages(db: str) -> dict[str, float]:
    """Server-side medians from the database: click → verdict, verdict → task (ms)."""
    conn = sqlite3.connect(db)
    rows = conn.execute(
        """SELECT c.at, c.settled_at, t.created_at FROM clicks c JOIN sends s ON s.id = c.send_id
           JOIN tasks t ON t.contact_id = s.contact_id WHERE c.verdict = 'human'""").fetchall()
    conn.close()
    if not rows:
        return {}
    return {"click→verdict": statistics.median((r[1] - r[0]) * 1000 for r in rows),
            "verdict→task": statistics.median((r[2] - r[1]) * 1000 for r in rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clicks", type=int, default=1000)
    ap.add_argument("--settle", type=float, default=0.0, help="tracking.settle in seconds (default 0)")
    ap.add_argument("--concurrency", type=int, default=1, help="clicks in flight at once")
    ap.add_argument("--poll-ms", type=float, default=5.0, help="how often the client polls /api/tasks")
    ap.add_argument("--browser", action="store_true",
                    help="time to the task event in a headless Chromium page (SSE), not the API poll")
    ap.add_argument("--timeout", type=float, default=0.0, help="give up on a click after this many s "
                    "(default settle + 30)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="nurture-latency-") as tmp:
        d = Path(tmp)
        cfg = write_config(d, settle=args.settle)
        t0 = time.perf_counter()
        targets, token = seed(cfg, args.clicks)
        print(f"seeded {len(targets)} delivered mails in {time.perf_counter() - t0:.1f} s", flush=True)
        conf = json.loads(cfg.read_text())
        env = {**os.environ, "NURTURE_SECRET": SECRET, "PYTHONPATH": str(ROOT)}
        server = subprocess.Popen([sys.executable, "-c", "from nurture.cli import main; main()", "--config", str(cfg),
                                   "run"], env=env, stdout=subprocess.DEVNULL, stderr=(d / "server.log").open("w"),
                                  cwd=d)
        try:
            wait_ready(int(conf["tracking"]["listen"].rsplit(":", 1)[1]))
            wait_ready(int(conf["reps_app"]["listen"].rsplit(":", 1)[1]))
            t0 = time.perf_counter()
            if args.browser:
                lat, missed = asyncio.run(measure_browser(
                    tracker=conf["tracking"]["base_url"], reps=conf["reps_app"]["base_url"], token=token,
                    targets=targets, timeout=args.timeout or args.settle + 30))
            else:
                lat, missed = asyncio.run(measure(
                    tracker=conf["tracking"]["base_url"], reps=conf["reps_app"]["base_url"], token=token,
                    targets=targets, concurrency=args.concurrency, poll=args.poll_ms / 1000,
                    timeout=args.timeout or args.settle + 30))
            wall = time.perf_counter() - t0
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
        if not lat:
            print((d / "server.log").read_text()[-3000:])
            raise SystemExit("no task ever appeared")
        inner = stages(str(d / "latency.db"))
    how = ("pushed to a Chromium page (SSE)" if args.browser else
           f"concurrency {args.concurrency}, API polled every {args.poll_ms:g} ms")
    print(f"{len(lat)} clicks → tasks ({missed} missed) in {wall:.1f} s; settle {args.settle:g} s, "
          f"{how}; {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    where = "the browser's task event" if args.browser else "the reps' API"
    print(f"click → task visible in {where}: p50 {pct(lat, 50):.0f} ms, p95 {pct(lat, 95):.0f} ms, "
          f"p99 {pct(lat, 99):.0f} ms, max {max(lat):.0f} ms"
          + ("   (target p95 < 200 ms " + ("✓" if pct(lat, 95) < 200 else "✗") + ")" if args.settle == 0 else ""))
    if inner:
        print("server side (medians): " + ", ".join(f"{k} {v:.0f} ms" for k, v in inner.items()))


if __name__ == "__main__":
    main()
