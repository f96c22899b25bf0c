"""/metrics (nurture/metrics.py, nurture/web/metrics.py) on a real reps' app, tracker, sender and SMTP sink.

The endpoint is off unless configured, answers 401 without its bearer token, and its figures
move when mail is sent, a server throttles and a link is clicked.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from support import Clock
from test_store_tracking import seed

from nurture.metrics import MetricsEndpoint
from nurture.sender import Backoff, SenderOptions, run_sender
from nurture.signing import Signer
from nurture.sink import Sink, start_sink
from nurture.store import open_async_store
from nurture.store.metrics import Figures
from nurture.web.reps import create_reps_app
from nurture.web.tracker import create_tracker_app
from tests._send_worker import stub_build

TOKEN = "metrics-token-0123456789"
BROWSER = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/146.0.0.0 Safari/537.36")
FAST = SenderOptions(backoff=Backoff(base=timedelta(0)), idle=0.05)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` from a Prometheus text exposition."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(text: str, name: str, **labels: str) -> float:
    return samples(text)[(name, tuple(sorted(labels.items())))]


@pytest.fixture
async def apps(make_settings, now):
    """The reps' app with /metrics (no cache) and the tracker, on one database with two queued sends."""
    sink = await start_sink(Sink())
    settings = make_settings(metrics={"token_env": "NURTURE_METRICS_TOKEN", "cache": "0s"},
                             env={"NURTURE_METRICS_TOKEN": TOKEN},
                             smtp={"host": "127.0.0.1", "port": sink.port, "rate": "100000/s", "timeout": 5})
    store = open_async_store(settings.database)
    seeded = await store.run(lambda s: seed(s, now=now, contacts=2, queued=True))
    clock = Clock(now)
    reps = TestClient(TestServer(create_reps_app(settings=settings, store=store, now=clock, campaigns={}),
                                 host="127.0.0.1", port=0))
    signer = Signer.from_settings(settings.tracking)
    tracker = TestClient(TestServer(create_tracker_app(settings=settings, store=store, signer=signer, now=clock),
                                    host="127.0.0.1", port=0))
    await reps.start_server()
    await tracker.start_server()
    yield {"reps": reps, "tracker": tracker, "store": store, "settings": settings, "seeded": seeded,
           "signer": signer, "sink": sink}
    await reps.close()
    await tracker.close()
    await store.aclose()
    await sink.aclose()


async def scrape(client: TestClient) -> str:
    r = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status == 200, await r.text()
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return await r.text()


async def test_metrics_needs_its_bearer_token(apps):
    c = apps["reps"]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": "Bearer "}):
        r = await c.get("/metrics", headers=headers, allow_redirects=False)
        text = await r.text()
        assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer"), headers
        assert "nurture_sends" not in text
    text = await scrape(c)
    assert value(text, "nurture_sends", status="queued") == 2
    # a rep's login is not a metrics token, and the metrics token is no login
    r = await c.get("/tasks", headers={"Authorization": f"Bearer {TOKEN}"}, allow_redirects=False)
    assert r.status == 303


async def test_metrics_is_off_unless_configured(settings, db_path):
    store = open_async_store(db_path)
    c = TestClient(TestServer(create_reps_app(settings=settings, store=store, campaigns={}), host="127.0.0.1", port=0))
    await c.start_server()
    try:
        r = await c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, allow_redirects=False)
        assert r.status == 404
    finally:
        await c.close()
        await store.aclose()


async def test_figures_follow_a_send_and_a_click(apps):
    before = await scrape(apps["reps"])
    assert value(before, "nurture_sends", status="queued") == 2
    assert value(before, "nurture_sends", status="sent") == 0
    assert value(before, "nurture_outbox_depth") == 2 and value(before, "nurture_outbox_due") == 2
    assert value(before, "nurture_clicks", kind="click", verdict="pending") == 0
    commits = value(before, "nurture_click_ledger_commit_seconds_count")

    summary = await run_sender(store=apps["store"], settings=apps["settings"], build=stub_build,
                               stop=asyncio.Event(), once=True, options=FAST)
    assert summary.sent == 2 and len(apps["sink"].sink.messages) == 2
    sent = await scrape(apps["reps"])
    assert value(sent, "nurture_sends", status="sent") == 2
    assert value(sent, "nurture_sends", status="queued") == 0
    assert value(sent, "nurture_outbox_depth") == 0 and value(sent, "nurture_send_retries") == 0

    seeded, signer = apps["seeded"], apps["signer"]
    url = f"/c/{signer.sign('click', seeded.send_ids[0], seeded.link_ids['pricing'])}"
    r = await apps["tracker"].get(url, headers={"User-Agent": BROWSER}, allow_redirects=False)
    assert r.status == 302
    clicked = await scrape(apps["reps"])
    assert value(clicked, "nurture_clicks", kind="click", verdict="pending") == 1
    assert value(clicked, "nurture_click_ledger_commit_seconds_count") == commits + 1
    assert value(clicked, "nurture_click_ledger_batch_clicks_sum") >= 1
    assert ("nurture_inbound", ()) not in samples(clicked)  # no inbound table on this database yet


async def test_retries_and_throttle_events(make_settings, now):
    running = await start_sink(Sink(fault=lambda env, attempt: "421 4.7.0 slow down" if attempt == 1 else None))
    settings = make_settings(metrics={"token_env": "T", "cache": "0s"}, env={"T": TOKEN},
                             smtp={"host": "127.0.0.1", "port": running.port, "rate": "100000/s", "timeout": 5})
    store = open_async_store(settings.database)
    await store.run(lambda s: seed(s, now=now, contacts=1, queued=True))
    c = TestClient(TestServer(create_reps_app(settings=settings, store=store, campaigns={}), host="127.0.0.1", port=0))
    await c.start_server()
    try:
        before = await scrape(c)
        throttles = value(before, "nurture_smtp_throttle_events_total")
        for _ in range(3):
            await run_sender(store=store, settings=settings, build=stub_build, stop=asyncio.Event(), once=True,
                             options=FAST)
        after = await scrape(c)
        assert value(after, "nurture_sends", status="sent") == 1
        # A throttle reply is retried without charging the message an attempt (issue 14).
        assert value(after, "nurture_send_retries") == 0
        assert value(after, "nurture_smtp_throttle_events_total") == throttles + 1
        assert value(after, "nurture_send_rate_slowed") == 1
    finally:
        await c.close()
        await store.aclose()
        await running.aclose()


async def test_tasks_series_by_rep():
    figures = Figures(sends={}, retries=0, outbox_depth=0, outbox_due=0, clicks={}, tasks_open={"baker": 2, "": 1},
                      tasks_overdue={"baker": 1, "": 0}, rate_slowed=False, inbound=None)

    async def load() -> Figures:
        return figures

    text = (await MetricsEndpoint(load=load).render()).decode()
    assert value(text, "nurture_tasks_overdue", rep="baker") == 1 and value(text, "nurture_tasks_open", rep="") == 1
    assert value(text, "nurture_tasks_overdue", rep="") == 0


async def test_database_figures_are_cached_for_a_moment():
    reads = []
    t = [100.0]

    async def load() -> Figures:
        reads.append(t[0])
        return Figures(sends={"sent": len(reads)}, retries=0, outbox_depth=0, outbox_due=0, clicks={},
                       tasks_open={}, tasks_overdue={}, rate_slowed=False, inbound={"hard_bounce": 2})

    endpoint = MetricsEndpoint(load=load, cache_seconds=5.0, clock=lambda: t[0])
    first = (await endpoint.render()).decode()
    t[0] += 4.9
    await asyncio.gather(endpoint.render(), endpoint.render())
    assert reads == [100.0]
    t[0] += 0.2
    later = (await endpoint.render()).decode()
    assert len(reads) == 2
    assert value(first, "nurture_sends", status="sent") == 1 and value(later, "nurture_sends", status="sent") == 2
    assert value(later, "nurture_sends", status="suppressed") == 0  # every status is exported
    assert value(later, "nurture_inbound", kind="hard_bounce") == 2
    assert ("process_cpu_seconds_total", ()) in samples(later)


def test_config_needs_a_token(make_settings):
    from nurture.errors import ConfigError

    assert not make_settings().metrics.enabled
    with pytest.raises(ConfigError, match="metrics: needs token_env or token_file"):
        make_settings(metrics={"cache": "5s"})
    s = make_settings(metrics={"token_env": "T"}, env={"T": " tok "})
    assert s.metrics.token == b"tok" and s.metrics.cache_seconds == 5.0 and TOKEN not in repr(s)


async def test_a_session_cookie_is_not_enough(apps):
    async with aiohttp.ClientSession() as http:
        r = await http.get(apps["reps"].make_url("/metrics"), cookies={"nurture_session": "x"})
        assert r.status == 401
