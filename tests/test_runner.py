"""``nurture run``: every part in one process, on real servers."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import aiohttp

from nurture.campaigns import find_campaign
from nurture.runner import Parts, run_all
from nurture.scheduler import enroll
from nurture.sender import SenderOptions
from nurture.store import open_async_store
from nurture.timeutil import utcnow

ROOT = Path(__file__).resolve().parent.parent


async def test_run_all_sends_tracks_and_serves(make_settings, smtp_sink, tmp_path):
    settings = make_settings(smtp={"host": "127.0.0.1", "port": smtp_sink.port, "rate": "100/s"},
                             tracking={"listen": "127.0.0.1:0"})
    campaign = find_campaign(ROOT / "campaigns", "ec-payments")
    # Send windows are Mon–Fri 09:00–18:00 local: use a campaign without one for a real clock.
    campaign = replace(campaign, send_window=type(campaign.send_window)())
    store = open_async_store(settings.database)
    csv = tmp_path / "c.csv"
    csv.write_text("email,first_name,company,timezone\nkim@shop.example,Kim,Shop,Asia/Tokyo\n")
    from nurture.contacts import import_contacts

    await store.run(lambda s: import_contacts(s, csv, now=utcnow()))
    await store.run(lambda s: enroll(s, campaign, now=utcnow(), all_contacts=True))
    urls: dict[str, str] = {}
    stop = asyncio.Event()
    # The tracker's public URL must be known before rendering: bind it first.
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = replace(settings, tracking=replace(settings.tracking, base_url=f"http://127.0.0.1:{port}",
                                                  listen=f"127.0.0.1:{port}"))
    job = asyncio.create_task(run_all(settings=settings, store=store, campaigns={campaign.id: campaign},
                                      stop=stop, ready=urls.__setitem__, reps_port=0,
                                      parts=Parts(webhooks=False), sender_options=SenderOptions(idle=0.1)))
    try:
        for _ in range(200):
            if smtp_sink.sink.messages:
                break
            await asyncio.sleep(0.05)
        assert len(smtp_sink.sink.messages) == 1
        html = smtp_sink.sink.messages[0].message.get_body(preferencelist=("html",)).get_content()
        # The visible "Read the full story" button (the first href is the hidden honeypot).
        link = re.search(r'href="(http://127\.0\.0\.1:\d+/c/[^"]+)"[^>]*>Read the full story', html).group(1)
        browser = {"User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 "
                                 "(KHTML, like Gecko) Version/18.1 Safari/605.1.15"}
        async with aiohttp.ClientSession(headers=browser) as http:
            async with http.get(link, allow_redirects=False) as r:
                assert r.status == 302 and r.headers["Location"].startswith("https://acme.example/")
            async with http.get(urls["reps"] + "/healthz") as r:
                assert r.status == 200
        clicks = await store.run(lambda s: s.query("SELECT method, verdict FROM clicks"))
        assert clicks == [{"method": "GET", "verdict": "pending"}]
    finally:
        stop.set()
        await job
        await store.aclose()
    assert set(urls) == {"tracker", "reps"}


def test_nurture_run_stops_cleanly_on_sigterm(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"database: {tmp_path / 'n.db'}\ncampaigns_dir: {ROOT / 'campaigns'}\n"
                   f"templates_dir: {ROOT / 'templates'}\nsmtp: {{port: 1}}\n"
                   "tracking: {listen: '127.0.0.1:0'}\nreps_app: {listen: '127.0.0.1:0'}\n")
    proc = subprocess.Popen([sys.executable, "-m", "nurture", "--config", str(cfg), "run"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if "reps' app listening" in line or len(lines) > 20:
            break
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    text = "".join(lines) + out
    assert proc.returncode == 0, text
    assert "tracker (public links) listening on http://127.0.0.1:" in text
    assert "stopped" in text
