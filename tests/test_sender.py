"""The sender against a real aiosmtpd sink: delivery, faults, rate limit, draining."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections import Counter
from datetime import timedelta

import pytest

from nurture.ratelimit import RateLimiter
from nurture.sender import Backoff, SenderOptions, run_sender
from nurture.sink import LimitedRelay, Sink, start_limited_relay, start_sink
from nurture.store import Store, open_async_store, open_store
from nurture.store.tracking import NewClick
from nurture.timeutil import Rate
from tests._send_worker import header, seed, stub_build

FAST = SenderOptions(backoff=Backoff(base=timedelta(0)), idle=0.05, relay_pause=0.05, relay_window=0.5)


@pytest.fixture
def smtp_settings(make_settings):
    def make(port: int, **smtp):
        return make_settings(smtp={"host": "127.0.0.1", "port": port, "max_connections": 4,
                                   "rate": "100000/s", "timeout": 5, **smtp})
    return make


async def settle(astore, settings, *, limiter=None, rounds=10, **kw):
    """Run ``--once`` passes until nothing is queued or waiting for a retry."""
    total = []
    for _ in range(rounds):
        total.append(await run_sender(store=astore, settings=settings, build=stub_build, stop=asyncio.Event(),
                                      once=True, options=FAST, limiter=limiter, **kw))
        counts = await astore.call(Store.outbox_counts)
        if not counts.get("queued") and not counts.get("retry"):
            break
    return total


def deliveries(sink: Sink) -> Counter:
    return Counter(header(m.data, "X-Nurture-Send") for m in sink.messages)


async def test_delivers_every_queued_send_once_over_reused_connections(smtp_sink, smtp_settings, db_path, now):
    astore = open_async_store(db_path)
    ids = await astore.run(lambda s: seed(s, n=60, now=now, steps=("s1", "s2")))
    settings = smtp_settings(smtp_sink.port)
    [summary] = await settle(astore, settings)
    assert summary.sent == 120 and summary.attempted == 120
    assert summary.connections == 4  # one session per pool slot, reused
    d = deliveries(smtp_sink.sink)
    assert len(d) == 120 and set(d.values()) == {1}
    rows = await astore.run(lambda s: s.query("SELECT id, status, message_id, sent_at FROM sends"))
    assert {r["status"] for r in rows} == {"sent"} and all(r["sent_at"] for r in rows)
    assert {r["message_id"] for r in rows} == {m.message_id for m in smtp_sink.sink.messages}
    assert smtp_sink.sink.messages[0].mail_from == "hello@acme.example"
    assert len(ids) == 120
    links = await astore.run(lambda s: s.query("SELECT step_id, name FROM links ORDER BY step_id"))
    assert links == [{"step_id": "s1", "name": "pricing"}, {"step_id": "s2", "name": "pricing"}]
    await astore.aclose()


@pytest.mark.sqlite_only("reads the database file with sqlite3 while the sender runs")
async def test_message_id_is_stored_before_the_first_attempt(smtp_settings, db_path, now):
    seen = []
    reader = open_store(db_path)  # a second connection, as another process would see the ledger

    def fault(envelope, attempt):
        mid = header(envelope.original_content, "Message-ID")
        seen.append(reader.query_one("SELECT id FROM sends WHERE message_id = ?", (mid,)) is not None)
        return "451 4.3.0 try again" if attempt == 1 else None

    running = await start_sink(Sink(fault=fault))
    astore = open_async_store(db_path)
    await astore.run(lambda s: seed(s, n=5, now=now))
    await settle(astore, smtp_settings(running.port))
    assert seen == [True] * 10
    # the retry carried the same Message-ID: the sink saw attempt 2 of each
    assert sorted(running.sink.attempts.values()) == [2] * 5
    assert len(running.sink.messages) == 5
    reader.close()
    await astore.aclose()
    await running.aclose()


FAULTS = {
    # recipient number: (reply on the first attempt, reply on later attempts)
    1: ("421 4.7.0 too many connections, slow down", None),
    2: ("451 4.3.0 local error, try later", None),
    3: ("454 4.7.0 TLS not available now", None),
    4: ("550 5.1.1 no such user", "550 5.1.1 no such user"),
    5: ("552 5.3.4 message too big", "552 5.3.4 message too big"),
    6: ("550 5.7.1 rejected by policy", "550 5.7.1 rejected by policy"),
    7: ("DROP", None),
    8: ("STALL:3", None),
}


async def test_faults_end_in_the_right_states_with_nothing_lost_or_doubled(smtp_settings, db_path, now):
    def fault(envelope, attempt):
        n = int(envelope.rcpt_tos[0].split("@")[0].removeprefix("user"))
        if n in FAULTS:
            return FAULTS[n][0] if attempt == 1 else FAULTS[n][1]
        return None

    running = await start_sink(Sink(fault=fault))
    astore = open_async_store(db_path)
    await astore.run(lambda s: seed(s, n=30, now=now))
    limiter = RateLimiter([Rate(100000, 1)])
    t0 = time.monotonic()
    runs = await settle(astore, smtp_settings(running.port, timeout=0.5), limiter=limiter)
    assert time.monotonic() - t0 < 5

    rows = await astore.run(lambda s: s.query(
        "SELECT c.email, s.status, s.attempts, s.error_code, s.error_enhanced FROM sends s"
        " JOIN contacts c ON c.id = s.contact_id ORDER BY s.id"))
    by_n = {int(r["email"].split("@")[0].removeprefix("user")): r for r in rows}
    for n in (2, 3, 7, 8):
        assert (by_n[n]["status"], by_n[n]["attempts"]) == ("sent", 2), n
    # a 421 asks the client to slow down: retried without charging the message an attempt
    assert (by_n[1]["status"], by_n[1]["attempts"]) == ("sent", 1)
    assert (by_n[4]["status"], by_n[4]["error_code"], by_n[4]["error_enhanced"]) == ("failed", 550, "5.1.1")
    assert (by_n[5]["status"], by_n[5]["error_code"]) == ("failed", 552)
    assert (by_n[6]["status"], by_n[6]["error_enhanced"]) == ("failed", "5.7.1")
    assert all(by_n[n]["status"] == "sent" and by_n[n]["attempts"] == 1 for n in range(9, 31))

    # the hard bounce suppressed its address and exited its enrollment; the policy block did not
    sup = await astore.run(lambda s: s.query("SELECT email_key, reason FROM suppressions"))
    assert sup == [{"email_key": "user4@example.com", "reason": "bounced"}]
    states = await astore.run(lambda s: s.query(
        "SELECT c.email, e.state FROM enrollments e JOIN contacts c ON c.id = e.contact_id WHERE e.state != 'active'"))
    assert states == [{"email": "user4@example.com", "state": "exited"}]

    # 0 lost, 0 doubled: every deliverable send arrived exactly once
    d = deliveries(running.sink)
    assert len(d) == 30 - 3 and set(d.values()) == {1}
    total = Counter()
    for r in runs:
        total.update(r.as_dict())
    assert (total["sent"], total["retried"], total["bounced"], total["failed"], total["blocked"]) == (27, 4, 1, 1, 1)
    # only the 421 was a rate refusal: it slowed the learned rate; 451 4.3.0 and 454 did not
    assert sum(r.throttled for r in runs) == 1 and sum(r.refused for r in runs) == 0
    relay = runs[0].relay
    assert relay is not None and 50000 <= relay.rate < 51000 and relay.last_reply.startswith("DATA: 421")
    kinds = Counter(e.kind for e in await astore.call(Store.events, limit=100))
    assert (kinds["send.sent"], kinds["send.bounced"], kinds["send.failed"]) == (27, 1, 2)
    await astore.aclose()
    await running.aclose()


async def test_transient_failures_give_up_after_max_attempts(smtp_settings, db_path, now):
    running = await start_sink(Sink(fault=lambda env, attempt: "451 4.3.0 busy"))
    astore = open_async_store(db_path)
    await astore.run(lambda s: seed(s, n=2, now=now))
    await settle(astore, smtp_settings(running.port, max_attempts=3))
    rows = await astore.run(lambda s: s.query("SELECT status, attempts, error_code FROM sends"))
    assert rows == [{"status": "failed", "attempts": 3, "error_code": 451}] * 2
    assert sorted(running.sink.attempts.values()) == [3, 3] and running.sink.messages == []
    await astore.aclose()
    await running.aclose()


async def test_backoff_waits_before_the_retry(smtp_settings, db_path, now):
    running = await start_sink(Sink(fault=lambda env, attempt: "451 4.3.0 busy" if attempt == 1 else None))
    astore = open_async_store(db_path)
    await astore.run(lambda s: seed(s, n=1, now=now))
    opts = SenderOptions(backoff=Backoff(base=timedelta(minutes=1)))
    summary = await run_sender(store=astore, settings=smtp_settings(running.port), build=stub_build,
                               stop=asyncio.Event(), once=True, options=opts)
    assert (summary.retried, summary.sent) == (1, 0)
    [row] = await astore.run(lambda s: s.query("SELECT status, next_attempt_at FROM sends"))
    assert row["status"] == "retry" and 30 <= row["next_attempt_at"] - time.time() <= 90
    await astore.aclose()
    await running.aclose()


async def test_unsubscribe_after_queueing_stops_the_mail(smtp_sink, smtp_settings, db_path, now):
    astore = open_async_store(db_path)
    await astore.run(lambda s: seed(s, n=3, now=now))
    await astore.run(lambda s: s.suppress("User2@Example.com", "unsubscribed", now=now))
    [summary] = await settle(astore, smtp_settings(smtp_sink.port))
    assert (summary.sent, summary.suppressed) == (2, 1)
    assert sorted(m.rcpt_tos[0] for m in smtp_sink.sink.messages) == ["user1@example.com", "user3@example.com"]
    await astore.aclose()


async def test_stop_drains_in_flight_and_releases_the_rest(smtp_settings, db_path, now):
    stop = asyncio.Event()
    sink = Sink(delay=0.01)
    sink.on_message = lambda rec: stop.set() if len(sink.messages) == 10 else None
    running = await start_sink(sink)
    astore = open_async_store(db_path)
    await astore.run(lambda s: seed(s, n=200, now=now))
    settings = smtp_settings(running.port)
    first = await run_sender(store=astore, settings=settings, build=stub_build, stop=stop, once=False, options=FAST)
    counts = await astore.call(Store.outbox_counts)
    assert "sending" not in counts  # nothing left leased
    assert counts["sent"] == first.sent == len(sink.messages) and 10 <= first.sent < 200
    assert first.released > 0
    sink.on_message = None
    await settle(astore, settings)
    assert (await astore.call(Store.outbox_counts)) == {"sent": 200}
    d = deliveries(sink)
    assert len(d) == 200 and set(d.values()) == {1}
    await astore.aclose()
    await running.aclose()


async def test_global_rate_limit_in_real_units(smtp_sink, smtp_settings, db_path, now):
    astore = open_async_store(db_path)
    await astore.run(lambda s: seed(s, n=30, now=now))
    t0 = time.monotonic()
    [summary] = await settle(astore, smtp_settings(smtp_sink.port, rate="20/s"))
    elapsed = time.monotonic() - t0
    # a burst of 20 (one second's worth), then 10 more at 20/s
    assert summary.sent == 30 and 0.45 <= elapsed < 2.0
    await astore.aclose()


async def test_unreachable_server_means_retry_not_loss(smtp_settings, db_path, now):
    running = await start_sink(Sink())
    port = running.port
    await running.aclose()  # nobody listens there now
    astore = open_async_store(db_path)
    await astore.run(lambda s: seed(s, n=3, now=now))
    summary = await run_sender(store=astore, settings=smtp_settings(port), build=stub_build, stop=asyncio.Event(),
                               once=True, options=SenderOptions(backoff=Backoff(base=timedelta(minutes=1))))
    # a relay that takes no connection charges no message: the mail goes back to the queue
    assert (summary.retried, summary.sent, summary.released) == (0, 0, 3)
    assert summary.refused >= 3 and summary.errors[-1].startswith("relay unreachable: connect to")
    assert await astore.call(Store.outbox_counts) == {"queued": 3}
    rows = await astore.run(lambda s: s.query("SELECT attempts FROM sends"))
    assert [r["attempts"] for r in rows] == [0, 0, 0]
    await astore.aclose()


def test_backoff_grows_exponentially_with_jitter():
    b = Backoff(base=timedelta(seconds=10), cap=timedelta(seconds=100), jitter=0.5)
    import random

    rng = random.Random(1)
    delays = [b.delay(a, rng).total_seconds() for a in (1, 2, 3, 4, 5, 6)]
    for a, d in zip((1, 2, 3, 4, 5, 6), delays, strict=True):
        raw = min(100, 10 * 2 ** (a - 1))
        assert 0.5 * raw <= d <= 1.5 * raw
    assert len({round(d, 6) for d in delays}) == 6


QUICK = """\
id: quick
name: Quick test campaign
timezone: UTC
steps:
  - id: hello
    wait: 0d
    subject: "Hello {{ contact.first_name }}"
    template: industry-news/issue_1.html
  - id: again
    wait: 3d
    subject: "Again"
    template: industry-news/issue_2.html
exit: [unsubscribed, bounced]
"""


def cli_setup(tmp_path, root, db_path, port: int, n: int = 5) -> str:
    """A config file, the QUICK campaign, ``n`` contacts (the last one unsubscribed), all enrolled."""
    from nurture.campaigns import load_campaign
    from nurture.scheduler import enroll
    from nurture.store import open_store
    from nurture.store.contacts import ContactRow
    from nurture.timeutil import utcnow

    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "quick.yaml").write_text(QUICK)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"""database: {db_path}
campaigns_dir: {tmp_path / "campaigns"}
templates_dir: {root / "templates"}
smtp: {{host: 127.0.0.1, port: {port}, max_connections: 2, rate: 1000/s}}
sender: {{from: "Acme Payments <hello@acme.example>", postal_address: "1-2-3 Marunouchi, Tokyo"}}
tracking: {{secret_file: secret}}
""")
    (tmp_path / "secret").write_text("test-secret")
    (tmp_path / "secret").chmod(0o600)
    s = open_store(db_path)
    s.upsert_contacts([ContactRow(email=f"buyer{i}@shop.example", fields={"first_name": f"B{i}", "company": "Shop"})
                       for i in range(n)], now=utcnow())
    s.suppress(f"buyer{n - 1}@shop.example", "unsubscribed", now=utcnow())
    enroll(s, load_campaign(tmp_path / "campaigns" / "quick.yaml"), now=utcnow(),
           email_keys=[f"buyer{i}@shop.example" for i in range(n)])
    s.close()
    return str(cfg)


async def test_send_once_command_renders_queues_and_reports(smtp_sink, tmp_path, root, db_path):
    from click.testing import CliRunner

    from nurture.cli import main
    from nurture.store import open_store

    cfg = cli_setup(tmp_path, root, db_path, smtp_sink.port)
    result = await asyncio.to_thread(CliRunner().invoke, main, ["--config", str(cfg), "send", "--once"])
    assert result.exit_code == 0, result.output
    assert "sent (250 from the server)" in result.output
    assert [line.strip("│ ").split()[-1] for line in result.output.splitlines() if "sent (250" in line] == ["4"]
    msgs = smtp_sink.sink.messages
    assert sorted(m.rcpt_tos[0] for m in msgs) == [f"buyer{i}@shop.example" for i in range(4)]
    m = msgs[0].message
    assert m["Subject"].startswith("Hello B") and m["List-Unsubscribe"]
    s = open_store(db_path)
    rows = s.query("SELECT s.status, s.message_id, e.next_at - s.sent_at AS wait FROM sends s"
                   " JOIN enrollments e ON e.id = s.enrollment_id")
    assert {r["status"] for r in rows} == {"sent"} and len(rows) == 4
    assert {round(r["wait"]) for r in rows} == {3 * 86400}  # mark_sent scheduled the next step
    assert {r["message_id"] for r in rows} == {x.message_id for x in msgs}
    assert s.query_one("SELECT count(*) AS n FROM links")["n"] >= 1
    s.close()


async def test_a_campaign_rate_caps_that_campaign_without_holding_up_others(smtp_sink, smtp_settings, db_path, now):
    astore = open_async_store(db_path)
    await astore.run(lambda s: seed(s, n=25, now=now, campaign="slow"))
    await astore.run(lambda s: seed(s, n=25, now=now, campaign="fast"))
    t0 = time.monotonic()
    [summary] = await settle(astore, smtp_settings(smtp_sink.port), campaign_rates={"slow": Rate(10, 1)})
    elapsed = time.monotonic() - t0
    assert summary.sent == 50
    # 10 at once (one second's worth), then 15 more at 10/s
    assert 1.3 <= elapsed < 3.5
    msgs = smtp_sink.sink.messages
    slow = [m.at for m in msgs if "slow" in (m.message_id or "")]
    fast = [m.at for m in msgs if "fast" in (m.message_id or "")]
    assert len(slow) == len(fast) == 25
    assert max(fast) < max(slow) - timedelta(seconds=1)  # the fast campaign did not wait


@pytest.fixture
def tls_cert(tmp_path, monkeypatch):
    """A self-signed certificate for 127.0.0.1, trusted through SSL_CERT_FILE."""
    import subprocess

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    return cert, key


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@pytest.mark.parametrize("mode", ["starttls", "tls"])
async def test_tls_and_auth_from_settings(mode, tls_cert, smtp_settings, db_path, now):
    import ssl

    from aiosmtpd.smtp import SMTP, AuthResult

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(tls_cert[0]), str(tls_cert[1]))
    logins = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append((mechanism, auth_data.login, auth_data.password, session.ssl is not None))
        return AuthResult(success=auth_data.login == b"nurture" and auth_data.password == b"s3cret")

    sink = Sink()
    # aiosmtpd cannot see that an implicit-TLS transport is encrypted, so it must be told
    kw = {"require_starttls": True} if mode == "starttls" else {"auth_require_tls": False}
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(sink, hostname="sink", authenticator=authenticator, auth_required=True,
                     tls_context=ctx if mode == "starttls" else None, **kw),
        host="127.0.0.1", port=0, ssl=ctx if mode == "tls" else None)
    port = server.sockets[0].getsockname()[1]
    astore = open_async_store(db_path)
    await astore.run(lambda s: seed(s, n=3, now=now))
    base = smtp_settings(port, tls=mode, username="nurture")
    settings = dataclasses.replace(base, smtp=dataclasses.replace(base.smtp, password="s3cret"))
    [summary] = await settle(astore, settings)
    assert summary.sent == 3 and len(sink.messages) == 3
    assert logins and logins[0][1] == b"nurture"
    if mode == "starttls":
        assert all(on_tls for *_, on_tls in logins)  # the password only went over TLS
    await astore.aclose()
    server.close()
    await server.wait_closed()


async def test_send_loop_command_stops_cleanly_on_sigterm(tmp_path, root, db_path):
    import signal
    import sys

    sink = Sink(delay=0.02)
    running = await start_sink(sink)
    cfg = cli_setup(tmp_path, root, db_path, running.port, n=400)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from nurture.cli import main; main()", "--config", cfg, "send",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=str(root))
    for _ in range(3000):
        if len(sink.messages) >= 20:
            break
        await asyncio.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0, err.decode()
    from nurture.store import open_store

    s = open_store(db_path)
    counts = s.outbox_counts()
    s.close()
    assert "sending" not in counts
    assert counts["sent"] == len(sink.messages) < 399
    assert "given back to the queue on stop" in out.decode()
    await running.aclose()


async def test_a_slow_campaign_holds_no_more_rows_than_its_rate_sends_within_the_lease(smtp_sink, smtp_settings,
                                                                                      db_path, now):
    astore = open_async_store(db_path)
    await astore.run(lambda s: seed(s, n=30, now=now, campaign="daily"))
    stop = asyncio.Event()
    task = asyncio.create_task(run_sender(
        store=astore, settings=smtp_settings(smtp_sink.port), build=stub_build, stop=stop, once=True,
        options=FAST, campaign_rates={"daily": Rate(10, 86400)}))
    for _ in range(400):
        if smtp_sink.sink.messages:
            break
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.1)
    counts = await astore.call(Store.outbox_counts)
    # one went out at once; at 10/day one more waits claimed, the rest stay in the queue
    assert len(smtp_sink.sink.messages) == 1
    assert counts == {"sent": 1, "sending": 1, "queued": 28}
    stop.set()
    summary = await task
    assert summary.released == 1 and await astore.call(Store.outbox_counts) == {"sent": 1, "queued": 29}
    await astore.aclose()


async def test_the_scheduler_ticks_while_the_sender_is_busy(smtp_settings, db_path, now):
    running = await start_sink(Sink(delay=0.01))
    astore = open_async_store(db_path)
    await astore.run(lambda s: seed(s, n=60, now=now))
    ticks = []
    stop = asyncio.Event()

    def tick(store, at):
        ticks.append((at, 60 - store.outbox_counts().get("sent", 0)))
        if len(ticks) == 4:
            stop.set()

    opts = dataclasses.replace(FAST, tick_every=0.1, idle=5.0)
    await run_sender(store=astore, settings=smtp_settings(running.port, max_connections=1), build=stub_build,
                     stop=stop, once=False, options=opts, tick=tick)
    assert len(ticks) == 4 and all(unsent > 0 for _, unsent in ticks)  # all while mail was waiting
    await astore.aclose()
    await running.aclose()


async def test_two_senders_share_one_global_rate_through_the_database(smtp_sink, smtp_settings, db_path, now):
    one, two = open_async_store(db_path), open_async_store(db_path)
    await one.run(lambda s: seed(s, n=50, now=now))
    settings = smtp_settings(smtp_sink.port, rate="20/s")
    t0 = time.monotonic()
    a, b = await asyncio.gather(*(
        run_sender(store=st, settings=settings, build=stub_build, stop=asyncio.Event(), once=True,
                   options=dataclasses.replace(FAST, batch=5))
        for st in (one, two)))
    elapsed = time.monotonic() - t0
    # together: a burst of 20, then 30 more at 20/s (each alone would allow 20/s of its own)
    assert a.sent + b.sent == 50 and len(deliveries(smtp_sink.sink)) == 50
    assert a.sent > 5 and b.sent > 5
    assert elapsed >= 1.3
    await one.aclose()
    await two.aclose()


async def test_once_takes_back_a_dead_senders_rows_and_names_a_live_one(smtp_sink, smtp_settings, db_path, now):
    import subprocess
    import sys

    from nurture.cli.send import held_lines
    from nurture.liveness import ProcessId, this_process

    astore = open_async_store(db_path)
    await astore.run(lambda s: seed(s, n=6, now=now))
    me = this_process()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = ProcessId(machine=me.machine, pid=child.pid, started=me.started)
    lease = timedelta(minutes=10)

    def lease_rows(s):
        s.register_sender("dead:1:x", process=dead, now=now)
        s.claim_sends(owner="dead:1:x", now=now, lease=lease, limit=2)
        s.register_sender("live:2:y", process=me, now=now)  # this very process: alive
        s.claim_sends(owner="live:2:y", now=now, lease=lease, limit=1)

    await astore.run(lease_rows)
    summary = await run_sender(store=astore, settings=smtp_settings(smtp_sink.port), build=stub_build,
                               stop=asyncio.Event(), once=True, options=FAST, now=lambda: now)
    assert summary.sent == 5 and summary.recovered == 2
    assert [(h.owner, h.rows, h.until) for h in summary.held] == [("live:2:y", 1, now + lease)]
    assert held_lines(summary) == [f"1 message(s) leased by the running sender live:2:y until "
                                   f"{now + lease:%Y-%m-%d %H:%M:%S} UTC"]
    assert await astore.call(Store.outbox_counts) == {"sent": 5, "sending": 1}
    assert await astore.run(lambda s: s.query("SELECT owner FROM senders")) == [{"owner": "live:2:y"}]
    await astore.aclose()


@pytest.mark.sqlite_only("fills the database with SQLite's max_page_count")
async def test_a_full_disk_ends_the_run_in_one_error_with_the_outbox_consistent(smtp_sink, smtp_settings, db_path,
                                                                                now, caplog):
    from nurture.diskfull import StoreUnwritable

    astore = open_async_store(db_path)
    await astore.run(lambda s: seed(s, n=400, now=now))

    def fill(s):  # no page may be added from here on: the first write that needs one fails (SQLITE_FULL)
        s.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = s.conn.execute("PRAGMA page_count").fetchone()[0]
        s.conn.execute(f"PRAGMA max_page_count = {pages}")

    await astore.run(fill)
    with pytest.raises(StoreUnwritable, match="cannot be written") as e:
        await run_sender(store=astore, settings=smtp_settings(smtp_sink.port), build=stub_build,
                         stop=asyncio.Event(), once=True, options=FAST)
    assert "\n" not in str(e.value)
    assert not [r for r in caplog.records if r.exc_info], "no traceback in the log"
    await astore.run(lambda s: s.conn.execute("PRAGMA max_page_count = 1073741823"))
    rows = await astore.run(lambda s: s.query("SELECT id, status, enrollment_id, step_id FROM sends"))
    delivered = deliveries(smtp_sink.sink)
    sent = {f"{r['enrollment_id']}:{r['step_id']}" for r in rows if r["status"] == "sent"}
    assert sent <= set(delivered), "a row is marked sent that was never delivered"
    assert not [r for r in rows if r["status"] == "sending"], "a row is left leased"
    assert len(delivered) < 400  # the disk filled before the end
    # After space is freed, the next run sends the rest; nothing is lost.
    await settle(astore, smtp_settings(smtp_sink.port))
    assert set(deliveries(smtp_sink.sink)) == {f"{r['enrollment_id']}:{r['step_id']}" for r in rows}


async def test_a_limited_relay_gets_every_message_once_none_charged_and_the_rate_is_remembered(
        smtp_settings, db_path, now):
    # A Postfix-like relay: 2 sessions at most (421 at the greeting), 10 messages a "minute"
    # (450 4.7.1 at MAIL FROM), the minute shortened to 1 s on both sides.
    relay = LimitedRelay(max_connections=2, per_window=10, window=1.0)
    running = await start_limited_relay(relay)
    astore = open_async_store(db_path)
    await astore.run(lambda s: seed(s, n=40, now=now))
    settings = smtp_settings(running.port, max_connections=4, rate="1000/s")
    opts = dataclasses.replace(FAST, relay_window=1.0, relay_pause=0.2, grow_after=0.5, idle_quit=0.3)
    t0 = time.monotonic()
    summary = await run_sender(store=astore, settings=settings, build=stub_build, stop=asyncio.Event(),
                               once=True, options=opts)
    elapsed = time.monotonic() - t0

    d = deliveries(relay)
    assert len(d) == 40 and set(d.values()) == {1}  # every message once
    assert (summary.sent, summary.retried, summary.failed) == (40, 0, 0)
    rows = await astore.run(lambda s: s.query("SELECT status, attempts FROM sends"))
    assert {(r["status"], r["attempts"]) for r in rows} == {("sent", 1)}  # nothing charged
    assert summary.refused >= 2 and relay.refused_connections == summary.refused
    assert relay.max_open <= 2 and summary.relay is not None and summary.relay.pool <= 3
    assert summary.throttled >= 3 and relay.refused_mail == summary.throttled
    # 40 at 10 a window need 4 windows (3 s and a bit); the pauses cost little beyond that
    assert 3.0 <= elapsed < 5.5, elapsed
    assert relay.mail_commands <= 40 * 1.25, relay.mail_commands

    state = await astore.call(Store.relay_state, f"127.0.0.1:{running.port}")
    assert state is not None and state.rate < 1000 / 4
    assert state.last_reply.startswith(("MAIL FROM: 450 4.7.1 Error: too much mail", "connect: 421 4.7.0"))
    assert state.pool == summary.relay.pool

    # A restart begins at the learned rate, not at the configured 1000/s.
    await astore.run(lambda s: seed(s, n=5, now=now))
    views = []
    # (No pool growth during this short run, however slow the machine: what is checked is where it starts.)
    second = await run_sender(store=astore, settings=settings, build=stub_build, stop=asyncio.Event(),
                              once=True, options=dataclasses.replace(opts, grow_after=60.0),
                              progress=lambda s: views.append(s.relay))
    assert second.sent == 5 and views[0] is not None
    assert views[0].rate <= state.rate + 5 * opts_increase(settings) / min(v.rate for v in views)
    assert views[0].pool <= state.pool
    await astore.aclose()
    await running.aclose()


def opts_increase(settings) -> float:
    """The additive increase per accepted message's worth, as RelayGovernor sets it."""
    return max(settings.smtp.rate.per_second * 0.05, 0.01)


async def test_click_commits_stay_fast_while_a_large_send_renders(smtp_sink, smtp_settings, db_path, now):
    """Rendering (templates, MIME, DKIM) runs on the sender's render thread: the store's writer
    thread, which the tracker's click commits share in ``nurture run``, only reads and writes."""
    astore = open_async_store(db_path)
    ids = await astore.run(lambda s: seed(s, n=200, now=now))
    threads = set()

    def slow_build(send, contact, **kw):
        threads.add(threading.current_thread().name)
        time.sleep(0.01)  # a heavy template: 8 of these used to hold the writer thread for 80 ms
        return stub_build(send, contact, **kw)

    stop = asyncio.Event()
    sender = asyncio.create_task(run_sender(store=astore, settings=smtp_settings(smtp_sink.port), build=slow_build,
                                            stop=stop, once=True, options=FAST))
    latencies = []
    while not sender.done():
        click = NewClick(send_id=ids[0], link_id=None, at=now, method="GET", ip="192.0.2.1")
        t0 = time.perf_counter()
        await astore.call(Store.record_clicks, [click])
        latencies.append(time.perf_counter() - t0)
        await asyncio.sleep(0.005)
    summary = sender.result()
    assert summary.sent == 200 and len(latencies) > 50
    latencies.sort()
    assert latencies[len(latencies) * 99 // 100] < 0.04, latencies[-5:]  # not 80 ms behind a render chunk
    assert threads == {"nurture-render_0"}
    rows = await astore.run(lambda s: s.query("SELECT count(*) AS n FROM clicks"))
    assert rows[0]["n"] == len(latencies)
    await astore.aclose()


async def test_a_builder_that_breaks_gives_every_claimed_row_back(smtp_sink, smtp_settings, db_path, now):
    """A bug while rendering stops the run with its error, and no claimed row stays leased."""
    astore = open_async_store(db_path)
    await astore.run(lambda s: seed(s, n=40, now=now))
    built = 0

    def breaking(send, contact, **kw):
        nonlocal built
        built += 1
        if built == 20:  # the third chunk of the claim; two more are waiting behind it
            raise RuntimeError("a bug in a builder")
        return stub_build(send, contact, **kw)

    with pytest.raises(RuntimeError, match="a bug in a builder"):
        await run_sender(store=astore, settings=smtp_settings(smtp_sink.port), build=breaking, stop=asyncio.Event(),
                         once=True, options=FAST)
    counts = await astore.run(lambda s: {r["status"]: r["n"] for r in s.query(
        "SELECT status, count(*) AS n FROM sends GROUP BY status")})
    assert "sending" not in counts and sum(counts.values()) == 40, counts
    assert counts.get("sent", 0) <= 16 and counts.get("sent", 0) == len(smtp_sink.sink.messages)
    await astore.aclose()
