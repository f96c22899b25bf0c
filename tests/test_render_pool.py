"""nurture.render_pool: rendering in real worker processes gives the bytes the in-process
renderer gives, asks for each new link once, reports template errors by name, survives a
killed worker, and feeds the real sender (aiosmtpd sink, SQLite) every message once."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from email import message_from_bytes

import dkim
import pytest

from nurture.campaigns import load_campaign, sample_contact
from nurture.errors import ConfigError
from nurture.liveness import ProcessId, process_alive
from nurture.models import Campaign, Contact, Send
from nurture.render import Renderer
from nurture.render_pool import LinkKey, Made, RenderFailed, RenderPool
from nurture.sender import SenderOptions, run_sender
from nurture.store import Store, open_async_store
from tests.conftest import NOW, ROOT
from tests.test_render import Recorder


@pytest.fixture
def campaign() -> Campaign:
    return load_campaign(ROOT / "campaigns" / "ec-payments.yaml", root=ROOT)


def sends_for(campaign: Campaign, n: int, step: str = "case-study") -> tuple[list[Send], dict[int, Contact]]:
    contacts = {i: dataclasses.replace(sample_contact(campaign.samples[i % len(campaign.samples)], contact_id=i),
                                       email=f"buyer{i}@shop.example") for i in range(1, n + 1)}
    sends = [Send(id=100 + i, enrollment_id=i, campaign_id=campaign.id, step_id=step, contact_id=i,
                  status="sending") for i in contacts]
    return sends, contacts


class Links:
    """The sender's side of link ids: hands out ids as the links table would, counting calls."""

    def __init__(self) -> None:
        self.ids: dict[LinkKey, int] = {}
        self.calls: list[tuple[LinkKey, ...]] = []

    async def __call__(self, keys: Sequence[LinkKey]) -> Mapping[LinkKey, int]:
        self.calls.append(tuple(keys))
        return {k: self.ids.setdefault(k, 100 + len(self.ids)) for k in keys}

    def for_renderer(self, send: Send) -> Recorder:
        rec = Recorder()
        for (campaign_id, step_id, name, url, honeypot), link_id in self.ids.items():
            if (campaign_id, step_id) == (send.campaign_id, send.step_id):
                rec.ids[(name, url, honeypot)] = link_id
        return rec


@pytest.fixture
def pool_for() -> Iterator:
    pools: list[RenderPool] = []

    def make(settings, campaigns: Mapping[str, Campaign], processes: int = 1) -> RenderPool:
        pool = RenderPool(settings=settings, campaigns=campaigns, processes=processes)
        pools.append(pool)
        pool.start()
        return pool

    yield make
    for pool in pools:
        pool.close()


async def test_a_worker_process_makes_the_bytes_the_renderer_makes(make_settings, campaign, pool_for, tmp_path):
    key = tmp_path / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    settings = make_settings(dkim={"selector": "sel", "domain": "acme.example", "private_key_file": str(key)})
    pool = pool_for(settings, {campaign.id: campaign})
    sends, contacts = sends_for(campaign, 6)
    links = Links()
    made = await pool.build(sends, contacts, now=NOW, resolve=links)
    assert [s for s, _ in made] == sends
    here = Renderer.from_settings(settings)
    for send, m in made:
        assert isinstance(m, Made)
        mine = here.render(campaign=campaign, step=campaign.step(send.step_id), contact=contacts[send.contact_id],
                           send_id=send.id, link_ids=links.for_renderer(send), now=NOW)
        assert m.data == mine.to_bytes() and m.message_id == mine.message_id and m.to == mine.to
    pub = subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    import base64
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(pub)
    data = made[0][1].to_bytes()  # type: ignore[union-attr]
    assert dkim.DKIM(data).verify(dnsfunc=lambda name, timeout=5: record if name == b"sel._domainkey.acme.example."
                                  else None)


async def test_each_new_link_is_asked_for_once(settings, campaign, pool_for):
    pool = pool_for(settings, {campaign.id: campaign})
    sends, contacts = sends_for(campaign, 8)
    links = Links()
    await pool.build(sends[:4], contacts, now=NOW, resolve=links)
    assert len(links.calls) == 1 and len(links.calls[0]) >= 2  # the step's links, in one hop
    assert len(set(links.calls[0])) == len(links.calls[0])
    await pool.build(sends[4:], contacts, now=NOW, resolve=links)
    assert len(links.calls) == 1  # known now: no second hop
    await pool.build(sends_for(campaign, 2, step="service-page")[0], contacts, now=NOW, resolve=links)
    assert len(links.calls) == 2 and {k[1] for k in links.calls[1]} == {"service-page"}


async def test_what_cannot_be_rendered_comes_back_named(make_settings, campaign, pool_for, tmp_path):
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    (tmp_path / "templates" / "broken.html").write_text("<p>Hello {{ contact.shoe_size }}</p>")
    broken = dataclasses.replace(campaign, steps=(dataclasses.replace(campaign.steps[0], template="broken.html"),
                                                  *campaign.steps[1:]))
    pool = pool_for(make_settings(templates_dir=str(tmp_path / "templates")), {campaign.id: broken})
    sends, contacts = sends_for(campaign, 2)
    gone = dataclasses.replace(sends[1], campaign_id="no-such-campaign")
    made = dict(await pool.build([sends[0], gone], contacts, now=NOW, resolve=Links()))
    assert isinstance(made[sends[0]], RenderFailed) and "shoe_size" in str(made[sends[0]])
    assert "broken.html" in str(made[sends[0]])
    assert isinstance(made[gone], RenderFailed) and "no-such-campaign" in str(made[gone])


def test_an_unusable_dkim_key_is_a_config_error_before_any_worker_starts(make_settings, campaign, tmp_path):
    key = tmp_path / "dkim.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    settings = make_settings(dkim={"selector": "sel", "domain": "acme.example", "private_key_file": str(key)})
    pool = RenderPool(settings=settings, campaigns={campaign.id: campaign})
    with pytest.raises(ConfigError, match="DKIM private key"):
        pool.start()
    assert pool._executor is None
    pool.close()


async def test_a_killed_worker_is_replaced(settings, campaign, pool_for):
    pool = pool_for(settings, {campaign.id: campaign})
    sends, contacts = sends_for(campaign, 402)
    links = Links()
    await pool.build(sends[:2], contacts, now=NOW, resolve=links)
    executor = pool._executor
    assert executor is not None
    # Two chunks in flight when the worker dies (the out-of-memory killer's way): both see the
    # broken pool, one replaces it, and both are rendered by the new one.
    first = asyncio.create_task(pool.build(sends[2:202], contacts, now=NOW, resolve=links))
    second = asyncio.create_task(pool.build(sends[202:], contacts, now=NOW, resolve=links))
    await asyncio.sleep(0.05)
    for pid in list(executor._processes):
        os.kill(pid, signal.SIGKILL)
    both = await asyncio.gather(first, second)
    assert [len(made) for made in both] == [200, 200]
    assert all(isinstance(m, Made) for made in both for _, m in made) and pool._executor is not executor


def queue(store: Store, campaign: Campaign, n: int) -> int:
    """``n`` contacts enrolled and their first step queued by the real scheduler."""
    from nurture.scheduler import enroll, tick
    from nurture.store.contacts import ContactRow

    rows = [ContactRow(email=f"buyer{i}@shop{i}.example", fields={"first_name": f"Kim{i}", "company": f"Shop {i}"})
            for i in range(n)]
    store.upsert_contacts(rows, now=NOW)
    enroll(store, campaign, now=NOW, all_contacts=True)
    return tick(store, {campaign.id: campaign}, now=NOW).queued


async def test_the_sender_delivers_what_the_workers_render_once_each(smtp_sink, make_settings, db_path, pool_for):
    settings = make_settings(smtp={"host": "127.0.0.1", "port": smtp_sink.port, "max_connections": 4,
                                   "rate": "1000/s"})
    news = load_campaign(ROOT / "campaigns" / "industry-news.yaml", root=ROOT)  # NOW is in its send window
    pool = pool_for(settings, {news.id: news}, processes=2)
    astore = open_async_store(db_path)
    try:
        n = await astore.run(lambda s: queue(s, news, 60))
        summary = await run_sender(store=astore, settings=settings, build=pool, stop=asyncio.Event(), once=True,
                                   now=lambda: NOW, options=SenderOptions(batch=32))
        assert summary.sent == n == 60 and not summary.failed
        got = [message_from_bytes(m.data)["Message-ID"] for m in smtp_sink.sink.messages]
        assert len(got) == n and set(Counter(got).values()) == {1}
        stored = await astore.run(lambda s: {r["message_id"] for r in s.query(
            "SELECT message_id FROM sends WHERE status = 'sent'")})
        assert stored == set(got)
        # The links in the mail are the links table's rows: the workers were told the stored ids.
        links = await astore.run(lambda s: s.query("SELECT id, name FROM links"))
        tokens = {m.data.count(b"/c/") for m in smtp_sink.sink.messages}
        assert links and min(tokens) >= 1
    finally:
        await astore.aclose()


CHILD = """
import sys, time
from nurture.campaigns import load_campaigns
from nurture.config import settings_from_dict
from nurture.render_pool import RenderPool

root = sys.argv[1]
settings = settings_from_dict({"database": sys.argv[2], "campaigns_dir": root + "/campaigns",
                               "templates_dir": root + "/templates"}, env={"NURTURE_SECRET": "s"})
pool = RenderPool(settings=settings, campaigns={c.id: c for c in load_campaigns(root + "/campaigns")})
pool.start()
print(*pool._executor._processes, flush=True)
time.sleep(120)
"""


def _gone(pid: int) -> bool:
    return not process_alive(ProcessId(machine="", pid=pid, started=None))


def test_workers_end_when_the_sender_is_killed(tmp_path):
    """kill -9 of the sender leaves no render process behind (nor its forkserver)."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(ROOT), str(tmp_path / "db.sqlite")],
                             stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        pids = [int(p) for p in child.stdout.readline().split()]  # type: ignore[union-attr]
        assert pids and not any(_gone(p) for p in pids)
    finally:
        child.kill()
        child.wait()
    deadline = time.monotonic() + 10
    while not all(_gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(_gone(p) for p in pids)
