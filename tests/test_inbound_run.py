"""Inbound end to end through the parts of ``nurture run`` (``run_parts(RUN)``): a real relay
(aiosmtpd), the inbound SMTP listener, and reports and replies delivered to it by aiosmtplib
as an MTA would, on a clock the test moves."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import aiohttp
import aiosmtplib
import pytest
from support import Clock

from nurture.campaigns import find_campaign
from nurture.inbound import return_path
from nurture.parts import RUN, Context, Options, run_parts
from nurture.repauth import issue_rep_token
from nurture.scheduler import enroll
from nurture.sender import SenderOptions
from nurture.signing import Signer
from nurture.store import Store, open_async_store
from nurture.store.contacts import ContactRow

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).parent / "corpus" / "inbound"
PEOPLE = {"gone@shop.example": "Gone", "ken@shop.example": "Ken", "yui@away.example": "Yui",
          "sam@angry.example": "Sam"}


async def wait_for(check, *, timeout: float = 10.0, every: float = 0.02):
    """Poll the async ``check()`` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s")
        await asyncio.sleep(every)


@pytest.fixture
async def running(make_settings, smtp_sink, now):
    """``nurture run``'s parts with an inbound listener; yields (settings, store, clock, urls, sink)."""
    settings = make_settings(
        smtp={"host": "127.0.0.1", "port": smtp_sink.port, "rate": "1000/s", "timeout": 5},
        tracking={"listen": "127.0.0.1:0"},
        inbound={"return_path": "bounces@bounce.acme.example", "reply_domain": "reply.acme.example",
                 "smtp": {"listen": "127.0.0.1:0"}})
    campaign = find_campaign(ROOT / "campaigns", "ec-payments")
    campaign = replace(campaign, send_window=type(campaign.send_window)(), rate=None)  # any hour, no quota
    clock = Clock(now)
    store = open_async_store(settings.database)
    await store.run(lambda s: s.upsert_contacts(
        [ContactRow(e, {"first_name": n, "company": e.split("@")[1].split(".")[0].title()}) for e, n in PEOPLE.items()],
        now=now))
    await store.run(lambda s: enroll(s, campaign, now=now, all_contacts=True))
    urls: dict[str, str] = {}
    stop = asyncio.Event()
    ctx = Context(settings=settings, store=store, campaigns={campaign.id: campaign}, stop=stop, now=clock,
                  ready=urls.__setitem__,
                  options=Options(reps_port=0, followup_every=0.1, forwards_every=0.2,
                                  sender=SenderOptions(idle=0.05)))
    job = asyncio.create_task(run_parts(RUN, ctx))
    try:
        async def first_step_sent():
            if job.done():
                job.result()
            # The sink has a mail before the sender records it as sent (attempts, sent_at): a report
            # arriving in between would match no send. Wait for the record too.
            recorded = await store.run(lambda s: s.query_one(
                "SELECT count(*) AS n FROM sends WHERE status = 'sent' AND attempts > 0"))
            return (len(smtp_sink.sink.messages) == len(PEOPLE) and recorded is not None
                    and recorded["n"] == len(PEOPLE) and {"reps", "inbound_smtp"} <= set(urls))

        await wait_for(first_step_sent)
        yield settings, store, clock, urls, smtp_sink.sink
    finally:
        stop.set()
        await job
        await store.aclose()


def mail_to(sink, email: str, step: str = "case-study"):
    return next(m for m in sink.messages if m.rcpt_tos == [email] and m.message["X-Nurture-Step"] == step)


async def deliver(urls, raw: bytes, *, to: str, sender: str = "") -> None:
    """As an MTA delivers: one SMTP transaction to the inbound listener (a null sender for reports)."""
    host, port = urls["inbound_smtp"].removeprefix("smtp://").rsplit(":", 1)
    async with aiosmtplib.SMTP(hostname=host, port=int(port), timeout=5) as smtp:
        await smtp.sendmail(sender, [to], raw)


def send_id_of(settings, mail) -> int:
    from nurture.inbound import parse_recipient

    parsed = parse_recipient(Signer.from_settings(settings.tracking), mail.mail_from)
    assert parsed is not None and parsed[0] == "bounce"
    return parsed[1]


#: (fixture, the VERP address and Message-ID of the test mail it reports on): Debian's Postfix and Exim.
UNKNOWN_USER = {
    "postfix": ("postfix-550-user-unknown.eml", b"bounces+aebgwmlf4jbrrrebylnr6pqciqia@bounce.test",
                b"<101.fixture@acme.test>"),
    "exim": ("exim-550-user-unknown.eml", b"bounces+aebgwmlpbiyicfjnwg5ti7qqmm7a@bounce.test",
             b"<111.fixture@acme.test>"),
}


@pytest.mark.parametrize("mta", sorted(UNKNOWN_USER))
async def test_a_dsn_bounces_the_contact_and_nothing_more_goes_to_it(running, mta):
    settings, store, clock, urls, sink = running
    mail = mail_to(sink, "gone@shop.example")
    name, fixture_verp, fixture_mid = UNKNOWN_USER[mta]
    dsn = (CORPUS / name).read_bytes()
    assert fixture_verp in dsn and fixture_mid in dsn
    dsn = dsn.replace(fixture_verp, mail.mail_from.encode()).replace(
        fixture_mid, mail.message["Message-ID"].encode()).replace(b"gone@shop.test", b"gone@shop.example")
    await deliver(urls, dsn, to=mail.mail_from)
    contact = await wait_for(lambda: _contact_if(store, "gone@shop.example", status="bounced"))
    assert await store.call(Store.is_suppressed, "gone@shop.example")
    [row] = await store.run(lambda s: s.list_inbound(kind="hard_bounce"))
    assert (row["source"], row["matched_by"], row["contact_id"]) == ("smtp", "verp", contact.id)
    # A week later the second step goes to the others, never to the dead address.
    before = len(sink.messages)
    clock.now += timedelta(days=8)
    await wait_for(lambda: _sent_count(sink, "service-page", at_least=len(PEOPLE) - 1))
    await asyncio.sleep(0.5)
    assert len(sink.messages) == before + len(PEOPLE) - 1
    assert not any(m.rcpt_tos == ["gone@shop.example"] for m in sink.messages[before:])


async def test_a_reply_is_a_task_in_the_reps_api_within_a_second_and_reaches_the_rep(running):
    settings, store, clock, urls, sink = running
    mail = mail_to(sink, "ken@shop.example")
    reply_to = mail.message["Reply-To"].addresses[0].addr_spec
    reply = (CORPUS / "reply-gmail.eml").read_bytes().replace(
        b"<201.fixture@acme.test>", mail.message["Message-ID"].encode()).replace(
        b"hello@acme.test", reply_to.encode())
    manager = await store.run(lambda s: issue_rep_token(s, settings, rep_id="", now=clock(), manager=True))
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {manager}"}) as http:
        async def ken_task():
            async with http.get(urls["reps"] + "/api/tasks") as r:
                assert r.status == 200
                tasks = (await r.json())["tasks"]
            return next((t for t in tasks if t["contact"]["email"] == "ken@shop.example"), None)

        assert await ken_task() is None
        started = time.monotonic()
        await deliver(urls, reply, to=reply_to, sender="ken@shop.example")
        task = await wait_for(ken_task, timeout=1.0)
        elapsed = time.monotonic() - started
        # The rep it was routed to sees it with their own token too.
        rep_token = await store.run(lambda s: issue_rep_token(s, settings, rep_id=task["rep_id"], now=clock()))
        async with http.get(urls["reps"] + "/api/tasks", headers={"Authorization": f"Bearer {rep_token}"}) as r:
            mine = (await r.json())["tasks"]
    print(f"reply to task in the API: {elapsed * 1000:.0f} ms")
    assert elapsed < 1.0
    assert (task["kind"], task["priority"]) == ("call_now", "high")
    assert "Could you call me on Thursday?" in task["reason"]
    assert task["id"] in {t["id"] for t in mine}
    contact = await store.call(Store.get_contact_by_email, "ken@shop.example")
    assert contact is not None
    enrollment = await store.call(Store.get_enrollment, "ec-payments", contact.id)
    assert (enrollment.state, enrollment.exit_reason) == ("exited", "replied")
    # It came to the reply address, so its rep gets it by mail too, once.
    rep_email = settings.rep(task["rep_id"]).email
    forwarded = await wait_for(lambda: _mail_for(sink, rep_email))
    assert forwarded.message["Reply-To"].addresses[0].addr_spec == "ken@shop.example"
    assert forwarded.message["From"].addresses[0].domain == "acme.example"
    await asyncio.sleep(0.5)
    assert sum(m.rcpt_tos == [rep_email] for m in sink.messages) == 1


async def test_out_of_office_raises_no_task_and_the_next_step_waits_for_the_return_date(running):
    settings, store, clock, urls, sink = running
    mail = mail_to(sink, "yui@away.example")
    ooo = (CORPUS / "ooo-gmail-en.eml").read_bytes().replace(
        b"<201.fixture@acme.test>", mail.message["Message-ID"].encode()).replace(
        b"Ken Mori <ken@shop.example>", b"Yui <yui@away.example>")  # back on Monday, 14 December
    await deliver(urls, ooo, to=mail.mail_from)  # RFC 3834: automatic replies go to the Return-Path
    [row] = await wait_for(lambda: store.run(lambda s: s.list_inbound(kind="auto_reply")))
    assert row["out_of_office"] and row["resume_at"] is not None
    assert await store.run(lambda s: s.query("SELECT id FROM tasks")) == []
    # Dec 2: the second step (due a week after the first) goes to the others, not to Yui.
    clock.now += timedelta(days=8)
    await wait_for(lambda: _sent_count(sink, "service-page", at_least=len(PEOPLE) - 1))
    await asyncio.sleep(0.5)
    assert not any(m.rcpt_tos == ["yui@away.example"] for m in sink.messages if
                   m.message["X-Nurture-Step"] == "service-page")
    # Back from leave: then it goes.
    clock.now = row["resume_at"] + timedelta(minutes=5)
    back = await wait_for(lambda: _mail_for(sink, "yui@away.example", step="service-page"))
    assert back.message["X-Nurture-Step"] == "service-page"
    assert await store.run(lambda s: s.query("SELECT id FROM tasks")) == []


async def test_a_complaint_suppresses(running):
    settings, store, clock, urls, sink = running
    mail = mail_to(sink, "sam@angry.example")
    arf = (CORPUS / "arf-abuse.eml").read_bytes()
    token = next(t for t in arf.decode().split() if t.startswith("<bounces+")).strip("<>")
    arf = arf.replace(token.encode(), mail.mail_from.encode()).replace(
        b"<105.fixture@acme.test>", mail.message["Message-ID"].encode()).replace(b"victim@example.com",
                                                                                 b"sam@angry.example")
    await deliver(urls, arf, to="bounces@bounce.acme.example")  # a feedback loop's address, no token
    await wait_for(lambda: store.run(lambda s: s.is_suppressed("sam@angry.example")))
    reason = await store.run(lambda s: s.query_one(
        "SELECT reason FROM suppressions WHERE email_key = 'sam@angry.example'"))
    assert reason == {"reason": "complaint"}
    contact = await store.call(Store.get_contact_by_email, "sam@angry.example")
    assert contact is not None
    enrollment = await store.call(Store.get_enrollment, "ec-payments", contact.id)
    assert enrollment.state == "exited"
    assert return_path(Signer.from_settings(settings.tracking), send_id_of(settings, mail),
                       address="bounces@bounce.acme.example") == mail.mail_from


async def _contact_if(store, email: str, *, status: str):
    contact = await store.call(Store.get_contact_by_email, email)
    return contact if contact is not None and contact.status == status else None


async def _sent_count(sink, step: str, *, at_least: int) -> bool:
    return sum(m.message["X-Nurture-Step"] == step for m in sink.messages) >= at_least


async def _mail_for(sink, email: str, step: str | None = None):
    for m in sink.messages:
        if m.rcpt_tos == [email] and (step is None or m.message["X-Nurture-Step"] == step):
            return m
    return None
