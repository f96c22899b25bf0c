"""Provider event webhooks on the public tracker: ``POST /inbound/ses``, ``/inbound/sendgrid``, ``/inbound/mailgun``.

Each route exists only when its provider is configured (``inbound.ses``, ``inbound.sendgrid``,
``inbound.mailgun``).
A request is verified before anything else (:mod:`nurture.inbound.providers`); one that does
not verify gets 403 and changes nothing. A verified one is parsed into provider events, which
``receive_event`` applies on the store thread (each at most once: providers retry, the store
dedupes by event id), and is answered 200 as soon as they are stored.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta

import aiohttp
from aiohttp import web

from nurture import inbound
from nurture.config import Settings
from nurture.errors import ConfigError
from nurture.inbound.providers import (
    SENDGRID_SIGNATURE,
    SENDGRID_TIMESTAMP,
    Fetch,
    SignatureError,
    SnsVerifier,
    check_sns_url,
    mailgun_events,
    sendgrid_events,
    sendgrid_public_key,
    ses_events,
    verify_mailgun,
    verify_sendgrid,
)
from nurture.models import Campaign
from nurture.store import Store
from nurture.web import keys
from nurture.web.keys import CAMPAIGNS, FETCH, SENDGRID_KEY, SNS

log = logging.getLogger("nurture.inbound.web")

#: Largest body read: SNS messages are at most 256 KiB; SendGrid batches stay well below 1 MiB.
MAX_BODY = 1024 * 1024



def add_inbound_routes(app: web.Application, *, settings: Settings, campaigns: Mapping[str, Campaign],
                       fetch: Fetch | None = None) -> None:
    """Add the configured providers' routes to the tracker ``app`` (before its catch-all).

    ``fetch(url)`` GETs SNS signing certificates and subscription URLs (default: aiohttp with
    verified TLS)."""
    cfg = settings.inbound
    if cfg.ses is None and cfg.sendgrid is None and cfg.mailgun is None:
        return
    app[CAMPAIGNS] = campaigns
    if cfg.ses is not None:
        app[FETCH] = get = fetch or https_get
        app[SNS] = SnsVerifier(fetch=get)
        app.router.add_post("/inbound/ses", ses_webhook)
    if cfg.sendgrid is not None:
        try:
            app[SENDGRID_KEY] = sendgrid_public_key(cfg.sendgrid.public_key)
        except ValueError as e:
            raise ConfigError(f"the SendGrid verification key: {e}", field="inbound.sendgrid.public_key") from None
        app.router.add_post("/inbound/sendgrid", sendgrid_webhook)
    if cfg.mailgun is not None:
        app.router.add_post("/inbound/mailgun", mailgun_webhook)


async def https_get(url: str) -> bytes:
    """GET ``url`` (https, TLS verified, 10 s, at most 64 KiB)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        async with session.get(url, allow_redirects=False) as response:
            response.raise_for_status()
            return await response.content.read(64 * 1024)


async def ses_webhook(request: web.Request) -> web.StreamResponse:
    app = request.app
    ses = app[keys.SETTINGS].inbound.ses
    assert ses is not None
    body = await _body(request)
    if body is None:
        return web.Response(status=413, text="too large\n")
    try:
        message = await app[SNS].verify(body, now=app[keys.CLOCK]())
        if message.topic_arn not in ses.topic_arns:
            raise SignatureError(f"topic {message.topic_arn} is not in inbound.ses.topic_arns")
    except SignatureError as e:
        log.warning("refused an SNS request from %s: %s", request.remote, e)
        return _forbidden()
    except OSError as e:  # the certificate could not be fetched: SNS retries
        log.warning("SNS certificate not fetched: %s", e)
        return web.Response(status=503, text="try again later\n")
    if message.type == "SubscriptionConfirmation":
        url = message.subscribe_url
        if not ses.confirm_subscriptions:
            log.warning("SNS subscription to %s not confirmed (inbound.ses.confirm_subscriptions is off); "
                        "confirm it by visiting %s", message.topic_arn, url)
            return web.Response(text="ok\n")
        try:
            await app[FETCH](check_sns_url(url, what="SubscribeURL"))
        except SignatureError as e:
            log.warning("refused an SNS subscription: %s", e)
            return _forbidden()
        except (OSError, aiohttp.ClientError) as e:
            log.warning("could not confirm the SNS subscription to %s: %s", message.topic_arn, e)
            return web.Response(status=502, text="could not confirm\n")
        log.info("confirmed the SNS subscription to %s", message.topic_arn)
        return web.Response(text="ok\n")
    if message.type == "UnsubscribeConfirmation":
        log.warning("SNS unsubscribed this endpoint from %s", message.topic_arn)
        return web.Response(text="ok\n")
    await _apply(app, ses_events(message))
    return web.Response(text="ok\n")


async def sendgrid_webhook(request: web.Request) -> web.StreamResponse:
    app = request.app
    sendgrid = app[keys.SETTINGS].inbound.sendgrid
    assert sendgrid is not None
    body = await _body(request)
    if body is None:
        return web.Response(status=413, text="too large\n")
    now = app[keys.CLOCK]()
    try:
        verify_sendgrid(key=app[SENDGRID_KEY], body=body,
                        signature=request.headers.get(SENDGRID_SIGNATURE),
                        timestamp=request.headers.get(SENDGRID_TIMESTAMP), now=now,
                        tolerance=sendgrid.tolerance_seconds)
    except SignatureError as e:
        log.warning("refused a SendGrid request from %s: %s", request.remote, e)
        return _forbidden()
    await _apply(app, sendgrid_events(body, now=now))
    return web.Response(text="ok\n")


async def mailgun_webhook(request: web.Request) -> web.StreamResponse:
    app = request.app
    settings = app[keys.SETTINGS]
    mailgun = settings.inbound.mailgun
    assert mailgun is not None
    body = await _body(request)
    if body is None:
        return web.Response(status=413, text="too large\n")
    now = app[keys.CLOCK]()
    try:
        hook = verify_mailgun(signing_key=mailgun.signing_key, body=body, now=now,
                              tolerance=mailgun.tolerance_seconds)
    except SignatureError as e:
        log.warning("refused a Mailgun request from %s: %s", request.remote, e)
        return _forbidden()
    events, campaigns = mailgun_events(hook, now=now), app[CAMPAIGNS]
    # A token is good for one request: past the tolerance either way its timestamp is refused.
    keep = timedelta(seconds=2 * mailgun.tolerance_seconds)
    receive_event = inbound.receive_event

    def apply(s: Store) -> bool:
        with s.transaction():
            if not s.claim_webhook_token(provider="mailgun", token=hook.token, now=now, keep=keep):
                return False
            for e in events:
                receive_event(s, e, settings=settings, campaigns=campaigns, now=now)
            return True

    if not await app[keys.STORE].run(apply):
        log.warning("refused a Mailgun request from %s: its token was used before (a replay)", request.remote)
        return _forbidden()
    return web.Response(text="ok\n")


async def _apply(app: web.Application, events: list[inbound.ProviderEvent]) -> None:
    if not events:
        return
    settings, campaigns, now = app[keys.SETTINGS], app[CAMPAIGNS], app[keys.CLOCK]()
    receive_event = inbound.receive_event
    await app[keys.STORE].run(lambda s: [receive_event(s, e, settings=settings, campaigns=campaigns, now=now)
                                         for e in events])


async def _body(request: web.Request) -> bytes | None:
    """The raw body (signatures are over the exact bytes), or None past :data:`MAX_BODY`."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _forbidden() -> web.Response:
    return web.Response(status=403, text="forbidden\n")
