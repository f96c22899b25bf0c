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


def test_split_deployment_send_then_serve_raises_tasks(tmp_path):
    """`nurture send --once` then `nurture serve`: a person's pricing click becomes a task."""
    import socket
    import time
    import urllib.request

    from nurture.sink import Sink, start_sink

    with socket.socket() as s1, socket.socket() as s2:
        s1.bind(("127.0.0.1", 0))
        s2.bind(("127.0.0.1", 0))
        tport, rport = s1.getsockname()[1], s2.getsockname()[1]

    async def send_once() -> list:
        sink = await start_sink(Sink())
        # The shipped campaign without its send window, so the test does not depend on the hour.
        (tmp_path / "campaigns").mkdir()
        yaml_text = (ROOT / "campaigns" / "industry-news.yaml").read_text()
        yaml_text = re.sub(r"(?m)^send_window:.*\n", "", yaml_text)
        (tmp_path / "campaigns" / "industry-news.yaml").write_text(yaml_text)
        cfg = tmp_path / "config.yaml"
        cfg.write_text(
            f"database: {tmp_path / 'n.db'}\ncampaigns_dir: {tmp_path / 'campaigns'}\n"
            f"templates_dir: {ROOT / 'templates'}\nsmtp: {{port: {sink.port}, rate: 50/s}}\n"
            f"tracking: {{listen: '127.0.0.1:{tport}', base_url: 'http://127.0.0.1:{tport}', settle: 1s}}\n"
            f"reps_app: {{listen: '127.0.0.1:{rport}'}}\n"
            "reps: [{id: aoki, name: Aoki Yui, email: aoki@acme.example, timezone: Asia/Tokyo, territory: [JP]}]\n")
        csv = tmp_path / "c.csv"
        csv.write_text("email,first_name,company,timezone,territory\nkim@shop.example,Kim,Shop,UTC,JP\n")
        env = {**os.environ, "COLUMNS": "200"}
        for args in (["contacts", "import", str(csv)], ["enroll", "industry-news", "--all"],
                     ["send", "--once"]):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "nurture", "--config", str(cfg), *args, env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out, _ = await proc.communicate()
            assert proc.returncode == 0, out.decode()
        await sink.aclose()
        return sink.sink.messages

    messages = asyncio.run(send_once())
    assert len(messages) == 1
    # A click seconds after delivery looks like a mail scanner's; let the mail be two
    # minutes old, as a person's click would be.
    import sqlite3

    with sqlite3.connect(tmp_path / "n.db") as db:
        db.execute("UPDATE sends SET sent_at = sent_at - 120")
    html = messages[0].message.get_body(preferencelist=("html",)).get_content()
    links = re.findall(r'href="(http://127\.0\.0\.1:\d+/c/[^"]+)"', html)
    visible = links[1]  # links[0] is the hidden honeypot
    proc = subprocess.Popen([sys.executable, "-m", "nurture", "--config", str(tmp_path / "config.yaml"),
                             "serve"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{tport}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        req = urllib.request.Request(visible, headers={
            "User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 "
                          "(KHTML, like Gecko) Version/18.1 Safari/605.1.15"})

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *a, **k):  # noqa: ANN002, ANN003
                return None

        try:
            urllib.request.build_opener(NoRedirect).open(req, timeout=5)
        except urllib.error.HTTPError as e:
            assert e.code == 302
        from nurture.store import open_store

        store = open_store(str(tmp_path / "n.db"))
        try:
            tasks = []
            deadline = time.monotonic() + 30  # the settle window (1 s) plus a settle round
            while time.monotonic() < deadline and not tasks:
                tasks = store.query("SELECT rep_id, kind FROM tasks")
                time.sleep(0.3)
        finally:
            store.close()
        assert tasks == [{"rep_id": "aoki", "kind": "call"}]
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_a_database_that_cannot_be_opened_is_a_message_not_a_traceback(tmp_path):
    from click.testing import CliRunner

    from nurture.cli import main

    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"database: {tmp_path / 'missing' / 'n.db'}\n")
    out = CliRunner().invoke(main, ["--config", str(cfg), "tasks"])
    assert out.exit_code == 1
    assert "cannot open the database" in out.output and "does not exist" in out.output
    assert "Traceback" not in out.output
