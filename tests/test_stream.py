"""The reps' event stream (GET /api/stream) over real HTTP: auth, one event per changed task,
only the rep's own tasks, Last-Event-ID reconnects, and changes made by another process."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiohttp.test_utils import TestClient, TestServer
from support import NOW, Clock, make_campaign, seed_click

from nurture.followup import process_clicks
from nurture.outcomes import record_outcome
from nurture.repauth import issue_rep_token
from nurture.store import open_async_store, open_store
from nurture.web.reps import create_reps_app


@pytest.fixture
async def env(settings, db_path):
    astore = open_async_store(db_path)
    campaigns = {"ec-payments": make_campaign()}
    tokens = await astore.run(lambda s: {r: issue_rep_token(s, settings, rep_id=r, now=NOW)
                                         for r in ("baker", "aoki")})
    app = create_reps_app(settings=settings, store=astore, now=Clock(NOW), campaigns=campaigns,
                          stream_every=0.05)
    client = TestClient(TestServer(app, host="127.0.0.1", port=0))
    await client.start_server()
    yield {"client": client, "tokens": tokens, "store": astore, "campaigns": campaigns,
           "settings": settings, "db": db_path}
    await client.close()
    await astore.aclose()


async def read_events(resp, n: int, timeout: float = 5.0) -> list[dict]:
    """The next ``n`` SSE events (id, event, data) from an open response."""
    events: list[dict] = []
    current: dict = {}
    deadline = time.monotonic() + timeout
    while len(events) < n:
        line = await asyncio.wait_for(resp.content.readline(), max(0.01, deadline - time.monotonic()))
        text = line.decode().rstrip("\n")
        if not text:
            if "data" in current:
                events.append(current)
            current = {}
        elif not text.startswith(":") and ":" in text:
            k, v = text.split(":", 1)
            current[k] = json.loads(v) if k == "data" else v.strip()
    return events


async def test_needs_a_token_or_session(env):
    r = await env["client"].get("/api/stream")
    assert r.status == 401


async def test_new_task_is_pushed_to_its_rep_only_and_reconnect_resumes(env):
    c, store = env["client"], env["store"]
    baker = await c.get("/api/stream", headers={"Authorization": f"Bearer {env['tokens']['baker']}"})
    aoki = await c.get("/api/stream", headers={"Authorization": f"Bearer {env['tokens']['aoki']}"})
    assert baker.headers["Content-Type"].startswith("text/event-stream")
    t0 = time.monotonic()
    [tid] = await store.run(lambda s: (seed_click(s, territory="GB"),
                                       process_clicks(s, env["campaigns"], env["settings"], now=NOW))[1])
    [ev] = await read_events(baker, 1)
    assert time.monotonic() - t0 < 1.0
    assert ev["event"] == "task" and ev["data"]["id"] == tid and ev["data"]["priority"] == "high"
    assert ev["data"]["contact"]["name"] == "Ken Mori"
    # Aoki's stream carries nothing of Baker's: the next thing it sees is a heartbeat or Aoki's task.
    with pytest.raises(TimeoutError):
        await read_events(aoki, 1, timeout=0.4)
    # A change made through another connection (the CLI, another worker) is pushed too.
    def voicemail():
        s = open_store(env["db"])
        try:
            record_outcome(s, task_id=tid, outcome="voicemail", now=NOW, settings=env["settings"])
        finally:
            s.close()
    await asyncio.to_thread(voicemail)
    [ev2] = await read_events(baker, 1)
    assert ev2["data"]["attempts"] == 1 and ev2["data"].get("snoozed") is True
    assert int(ev2["id"]) > int(ev["id"])
    baker.close()
    # Reconnecting with Last-Event-ID replays what came after it.
    again = await c.get("/api/stream", headers={"Authorization": f"Bearer {env['tokens']['baker']}",
                                                 "Last-Event-ID": ev["id"]})
    [replayed] = await read_events(again, 1)
    assert replayed["id"] == ev2["id"]
    again.close()
    aoki.close()
