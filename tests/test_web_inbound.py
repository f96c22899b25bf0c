"""Provider webhooks on the real tracker app (loopback), signed with keys the tests make."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import aiohttp
import pytest
from aiohttp import web
from conftest import NOW
from support import Clock, add_contact, add_send
from test_inbound_providers import (
    SENDGRID_BODY,
    TOPIC,
    MailgunSigner,
    SendGridSigner,
    SnsSigner,
    mailgun_event,
    notification,
    ses_bounce,
)

from nurture.signing import Signer
from nurture.store import Store, open_async_store
from nurture.web import inbound as web_inbound
from nurture.web.tracker import create_tracker_app

SUBSCRIBE_URL = ("https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn="
                 f"{TOPIC}&Token=2336412f37fb687f5d51e6e2425f004aed")


#: Addresses the seeded sends went to (the SendGrid batch's recipients, the SES bounce's).
SENT_TO = ("gone@shop.example", "full@shop.example", "slow@shop.example", "angry@shop.example",
           "ok@shop.example", "x@shop.example")


class Live:
    def __init__(self, url: str, sns: SnsSigner, sendgrid: SendGridSigner, fetched: list[str], store,
                 mailgun: MailgunSigner) -> None:
        self.url, self.sns, self.sendgrid, self.fetched, self.store = url, sns, sendgrid, fetched, store
        self.mailgun = mailgun

    async def records(self) -> list[dict]:
        """The inbound table, oldest first."""
        return list(reversed(await self.store.run(lambda s: s.list_inbound(limit=10_000))))

    async def suppressed(self, email: str) -> bool:
        return bool(await self.store.run(lambda s: s.is_suppressed(email)))


def seed(s) -> None:
    with s.transaction():
        for email in SENT_TO:
            add_send(s, add_contact(s, email))


@pytest.fixture
async def live(make_settings, now):
    sns, sendgrid, mailgun = SnsSigner(), SendGridSigner(), MailgunSigner()
    settings = make_settings(inbound={
        "ses": {"topic_arns": [TOPIC]},
        "sendgrid": {"public_key": base64.b64encode(sendgrid.public_der).decode(), "tolerance": "5m"},
        "mailgun": {"signing_key_env": "MAILGUN_KEY"}}, env={"MAILGUN_KEY": mailgun.key.decode()})
    fetched: list[str] = []

    async def fetch(url: str) -> bytes:
        fetched.append(url)
        if url.endswith(".pem"):
            return sns.pem
        return b"<ConfirmSubscriptionResponse/>"

    store = open_async_store(settings.database)
    await store.run(seed)
    app = create_tracker_app(settings=settings, store=store, signer=Signer.from_settings(settings.tracking),
                             now=Clock(now), campaigns={}, fetch=fetch)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        yield Live(f"http://{host}:{port}", sns, sendgrid, fetched, store, mailgun)
    finally:
        await runner.cleanup()
        await store.aclose()


async def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers={
            "Content-Type": "text/plain; charset=UTF-8", **(headers or {})}) as r:
        return r.status, await r.text()


# -- SES through SNS -----------------------------------------------------------------------------

async def test_a_subscription_confirmation_for_our_topic_is_confirmed(live):
    doc = live.sns.sign({"Type": "SubscriptionConfirmation", "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
                         "Token": "2336412f37fb687f5d51e6e2425f004aed", "TopicArn": TOPIC,
                         "Message": f"You have chosen to subscribe to the topic {TOPIC}.",
                         "SubscribeURL": SUBSCRIBE_URL, "Timestamp": "2026-11-24T09:59:00.000Z"})
    assert await post(f"{live.url}/inbound/ses", json.dumps(doc).encode(),
                      {"x-amz-sns-message-type": "SubscriptionConfirmation"}) == (200, "ok\n")
    assert live.fetched[-1] == SUBSCRIBE_URL and await live.records() == []


async def test_a_signed_confirmation_pointing_elsewhere_is_not_followed(live):
    doc = live.sns.sign({"Type": "SubscriptionConfirmation", "MessageId": "m", "Token": "t", "TopicArn": TOPIC,
                         "Message": "subscribe", "SubscribeURL": "https://evil.example/confirm",
                         "Timestamp": "2026-11-24T09:59:00.000Z"})
    status, _ = await post(f"{live.url}/inbound/ses", json.dumps(doc).encode())
    assert status == 403 and "https://evil.example/confirm" not in live.fetched


async def test_a_signed_bounce_notification_suppresses_once_across_retries(live):
    doc = live.sns.sign(notification(ses_bounce("Permanent", "gone@shop.example"), subject="Bounce"))
    for _ in range(2):  # SNS retries with the same MessageId
        assert await post(f"{live.url}/inbound/ses", json.dumps(doc).encode()) == (200, "ok\n")
    [record] = await live.records()
    assert (record["source"], record["kind"], record["recipient"]) == ("ses", "hard_bounce", "gone@shop.example")
    assert await live.suppressed("gone@shop.example")
    assert not await live.suppressed("ok@shop.example")


@pytest.mark.parametrize("case", ["unsigned", "tampered", "other-topic", "forged", "not-json"])
async def test_a_bad_sns_request_is_403_and_changes_nothing(live, case):
    doc = live.sns.sign(notification(ses_bounce()))
    if case == "unsigned":
        del doc["Signature"]
    elif case == "tampered":
        doc["Message"] = doc["Message"].replace("gone@shop.example", "ceo@rival.example")
    elif case == "other-topic":
        doc = live.sns.sign({**notification(ses_bounce()), "TopicArn": "arn:aws:sns:us-east-1:999999999999:x"})
    elif case == "forged":
        doc = SnsSigner().sign(notification(ses_bounce()))  # a key of someone else, with SNS's cert URL
    body = b"<xml/>" if case == "not-json" else json.dumps(doc).encode()
    status, _ = await post(f"{live.url}/inbound/ses", body)
    assert status == 403
    assert await live.records() == [] and not await live.suppressed("gone@shop.example")


# -- SendGrid ------------------------------------------------------------------------------------

async def test_a_signed_sendgrid_batch_is_applied_once_across_retries(live):
    for _ in range(2):  # SendGrid retries a batch it got no 2xx for
        status, _ = await post(f"{live.url}/inbound/sendgrid", SENDGRID_BODY, live.sendgrid.headers(SENDGRID_BODY))
        assert status == 200
    assert [(r["source"], r["kind"], r["recipient"]) for r in await live.records()] == [
        ("sendgrid", "hard_bounce", "gone@shop.example"), ("sendgrid", "soft_bounce", "full@shop.example"),
        ("sendgrid", "soft_bounce", "slow@shop.example"), ("sendgrid", "complaint", "angry@shop.example"),
        ("sendgrid", "delivered", "ok@shop.example"), ("sendgrid", "unknown", "x@shop.example")]
    assert await live.suppressed("gone@shop.example") and await live.suppressed("angry@shop.example")
    assert not await live.suppressed("full@shop.example") and not await live.suppressed("ok@shop.example")


@pytest.mark.parametrize("case", ["unsigned", "tampered", "other-key"])
async def test_a_bad_sendgrid_request_is_403_and_changes_nothing(live, case):
    headers = live.sendgrid.headers(SENDGRID_BODY)
    body = SENDGRID_BODY
    if case == "unsigned":
        headers = {}
    elif case == "tampered":
        body = SENDGRID_BODY.replace(b'"bounce"', b'"delivered"', 1)
    elif case == "other-key":
        headers = SendGridSigner().headers(SENDGRID_BODY)
    status, _ = await post(f"{live.url}/inbound/sendgrid", body, headers)
    assert status == 403
    assert await live.records() == [] and not await live.suppressed("gone@shop.example")


async def test_too_large_a_body_is_413(live, monkeypatch):
    monkeypatch.setattr(web_inbound, "MAX_BODY", 1000)
    status, _ = await post(f"{live.url}/inbound/sendgrid", b"[" + b" " * 2000 + b"]",
                           live.sendgrid.headers(b"[]"))
    assert status == 413 and await live.records() == []


async def test_bodies_over_the_tracker_limit_still_verify(live):
    # The tracker's own requests are small (64 KiB limit); provider batches are not.
    big = json.dumps([{"email": f"u{i}@shop.example", "event": "delivered", "sg_event_id": f"id{i}",
                       "timestamp": 1795514390, "padding": "x" * 40} for i in range(1000)]).encode()
    assert len(big) > 64 * 1024
    status, _ = await post(f"{live.url}/inbound/sendgrid", big, live.sendgrid.headers(big))
    assert status == 200 and len(await live.records()) == 1000


async def test_without_configuration_there_are_no_routes(make_settings, now):
    settings = make_settings()
    store = open_async_store(settings.database)
    app = create_tracker_app(settings=settings, store=store, signer=Signer.from_settings(settings.tracking),
                             now=Clock(now))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        for path in ("/inbound/ses", "/inbound/sendgrid", "/inbound/mailgun"):
            status, _ = await post(f"http://{host}:{port}{path}", b"[]")
            assert status == 404
    finally:
        await runner.cleanup()
        await store.aclose()


# -- Mailgun -------------------------------------------------------------------------------------

async def mailgun(live, body: bytes) -> int:
    status, _ = await post(f"{live.url}/inbound/mailgun", body, {"Content-Type": "application/json"})
    return status


async def test_signed_mailgun_events_are_applied(live):
    assert await mailgun(live, live.mailgun.body(mailgun_event())) == 200
    assert await mailgun(live, live.mailgun.body(mailgun_event("complained", "angry@shop.example", id="c1"))) == 200
    assert await mailgun(live, live.mailgun.body(mailgun_event("opened", "ok@shop.example", id="o1"))) == 200
    temporary = mailgun_event(recipient="full@shop.example", id="t1", severity="temporary", reason="generic",
                              **{"delivery-status": {"code": 452, "message": "4.2.2 Mailbox full"}})
    assert await mailgun(live, live.mailgun.body(temporary)) == 200
    assert [(r["source"], r["kind"], r["recipient"], r["status"]) for r in await live.records()] == [
        ("mailgun", "hard_bounce", "gone@shop.example", "5.1.1"),
        ("mailgun", "complaint", "angry@shop.example", None),
        ("mailgun", "soft_bounce", "full@shop.example", "4.2.2")]  # the open is not ours to count
    assert await live.suppressed("gone@shop.example") and await live.suppressed("angry@shop.example")
    assert not await live.suppressed("full@shop.example") and not await live.suppressed("ok@shop.example")


async def test_a_mailgun_retry_with_a_new_signature_is_applied_once(live):
    for _ in range(2):  # the same event, signed afresh
        assert await mailgun(live, live.mailgun.body(mailgun_event())) == 200
    [record] = await live.records()
    assert record["kind"] == "hard_bounce"


@pytest.mark.parametrize("case", ["unsigned", "other-key", "stale", "token-changed", "not-json"])
async def test_a_bad_mailgun_request_is_403_and_changes_nothing(live, case):
    body = live.mailgun.body(mailgun_event())
    doc = json.loads(body)
    if case == "unsigned":
        del doc["signature"]
    elif case == "other-key":
        doc = json.loads(MailgunSigner().body(mailgun_event()))
    elif case == "stale":
        doc = json.loads(live.mailgun.body(mailgun_event(), at=NOW - timedelta(hours=1)))
    elif case == "token-changed":
        doc["signature"]["token"] = "f" * 50
    raw = b"token=x&signature=y" if case == "not-json" else json.dumps(doc).encode()
    assert await mailgun(live, raw) == 403
    assert await live.records() == [] and not await live.suppressed("gone@shop.example")


async def test_a_replayed_mailgun_token_is_refused_with_its_event_or_another(live):
    # Mailgun signs only timestamp + token: a captured request's signature fits any event-data.
    first = live.mailgun.body(mailgun_event("delivered", "ok@shop.example", id="d1"))
    assert await mailgun(live, first) == 200
    assert await mailgun(live, first) == 403  # replayed as it was
    forged = json.loads(first)
    forged["event-data"] = mailgun_event(recipient="gone@shop.example", id="forged")
    assert await mailgun(live, json.dumps(forged).encode()) == 403  # replayed with a bounce for someone else
    assert [(r["kind"], r["recipient"]) for r in await live.records()] == [("delivered", "ok@shop.example")]
    assert not await live.suppressed("gone@shop.example")


async def test_a_mailgun_token_is_refused_after_a_restart_too(live, make_settings, now):
    body = live.mailgun.body(mailgun_event("delivered", "ok@shop.example", id="d1"))
    assert await mailgun(live, body) == 200
    forged = json.loads(body)
    forged["event-data"] = mailgun_event(id="forged")
    # Another tracker on the same database (or this one restarted) knows the token.
    settings = make_settings(inbound={"mailgun": {"signing_key_env": "K"}}, env={"K": live.mailgun.key.decode()})
    store = open_async_store(settings.database)
    app = create_tracker_app(settings=settings, store=store, signer=Signer.from_settings(settings.tracking),
                             now=Clock(now), campaigns={})
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        status, _ = await post(f"http://{host}:{port}/inbound/mailgun", json.dumps(forged).encode())
        assert status == 403
    finally:
        await runner.cleanup()
        await store.aclose()
    assert not await live.suppressed("gone@shop.example") and len(await live.records()) == 1


async def test_mailgun_tokens_are_forgotten_once_their_timestamps_are_refused_anyway(live):
    td = timedelta

    def claim(s: Store, token: str, at) -> bool:
        with s.transaction():
            return s.claim_webhook_token(provider="mailgun", token=token, now=at, keep=td(minutes=30))

    assert await live.store.run(lambda s: claim(s, "a" * 50, NOW))
    assert not await live.store.run(lambda s: claim(s, "a" * 50, NOW + td(minutes=29)))
    assert await live.store.run(lambda s: claim(s, "b" * 50, NOW + td(minutes=31)))  # prunes a
    assert await live.store.run(lambda s: s.query("SELECT token FROM webhook_tokens")) == [{"token": "b" * 50}]
