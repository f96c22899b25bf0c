"""Webhooks: events from the events table POSTed to configured URLs, signed, with retries.

Every event a webhook subscribes to becomes a ``webhook_deliveries`` row first (a per-URL
cursor moves in the same transaction), then is POSTed until the receiver answers 2xx. All
state is in the database, so a restart resumes where it stopped: nothing is lost, and a
delivery the receiver got but whose answer was lost may arrive twice (``X-Nurture-Delivery``
lets receivers drop duplicates).

Body: ``{"event", "id", "at", "data", "text"}``; ``text`` is a one-line summary Slack shows.
Header ``X-Nurture-Signature: sha256=<hex HMAC-SHA256 of the body with the webhook's secret>``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from nurture.config import Settings, Webhook
from nurture.store import AsyncStore, Store
from nurture.store.tasks import DueDelivery
from nurture.textsafe import slack_escape

log = logging.getLogger(__name__)

#: Events older than this when first seen are not sent (a new webhook gets no stale backlog).
MAX_EVENT_AGE = timedelta(days=1)
MAX_ATTEMPTS = 12


def backoff(attempts: int, *, base: float = 2.0, cap: float = 3600.0) -> timedelta:
    """Seconds to wait after the ``attempts``-th failure: 2, 4, 8 … capped at one hour."""
    return timedelta(seconds=min(cap, base * 2 ** (attempts - 1)))


def sign(body: bytes, secret: bytes) -> str:
    """The ``X-Nurture-Signature`` value for ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: bytes, header: str) -> bool:
    """Constant-time check of a signature header (for receivers and tests)."""
    return hmac.compare_digest(sign(body, secret), header or "")


def summary(kind: str, data: Mapping[str, Any]) -> str:
    """A one-line, Slack-compatible description of an event. Text from contacts and reps is
    escaped (:func:`nurture.textsafe.slack_escape`): it shows as typed, never as markup."""
    data = {k: slack_escape(v) if isinstance(v, str) else v for k, v in data.items()}
    who = data.get("name") or data.get("email") or f"contact {data.get('contact_id')}"
    if data.get("company"):
        who += f" ({data['company']})"
    phone = f" {data['phone']}" if data.get("phone") else ""
    rep = f" → {data['rep_id']}" if data.get("rep_id") else ""
    if kind == "task.created":
        label = "Call now" if data.get("kind") == "call_now" else str(data.get("kind", "task")).title()
        return f":telephone_receiver: {label}: {who}{phone}{rep}. {data.get('reason', '')}".strip()
    if kind == "task.overdue":
        return (f":alarm_clock: Overdue by {data.get('overdue_minutes', '?')} min: {who}{phone}{rep}. "
                f"{data.get('reason', '')}").strip()
    if kind == "task.done":
        outcome = str(data.get("outcome", "done")).replace("_", " ")
        return f":white_check_mark: {who}: {outcome}{rep}" + (f". {data['notes']}" if data.get("notes") else "")
    if kind == "contact.hot":
        return f":fire: {who} is hot: lead score {data.get('score')}"
    if kind == "contact.unsubscribed":
        return f":no_bell: {who} unsubscribed"
    return f"{kind}: {who}"


def body_for(delivery: DueDelivery) -> bytes:
    """The exact bytes POSTed (and signed) for one delivery of an event."""
    doc = {"event": delivery.kind, "id": delivery.event_id, "at": delivery.at.isoformat(),
           "data": delivery.payload, "text": summary(delivery.kind, delivery.payload)}
    return json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def fan_out(store: Store, webhooks: tuple[Webhook, ...], *, now: datetime, batch: int = 1000) -> int:
    """Queue deliveries for new events (sync, on the store thread); returns how many."""
    queued = 0
    for hook in webhooks:
        while True:
            cursor = store.webhook_cursor(hook.url)
            events = store.events(after_id=cursor, limit=batch)
            if not events:
                break
            wanted = [e.id for e in events if e.kind in hook.events and now - e.at <= MAX_EVENT_AGE]
            store.enqueue_deliveries(url=hook.url, event_ids=wanted, last_event_id=events[-1].id, now=now)
            queued += len(wanted)
            if len(events) < batch:
                break
    return queued


async def deliver_once(*, store: AsyncStore[Store], settings: Settings, session: aiohttp.ClientSession,
                       now: Callable[[], datetime], timeout: float = 10.0,
                       max_attempts: int = MAX_ATTEMPTS,
                       retry: Callable[[int], timedelta] = backoff) -> int:
    """One round: fan out new events, POST every due delivery; returns how many succeeded."""
    hooks = settings.webhooks
    if not hooks:
        return 0
    await store.run(lambda s: fan_out(s, hooks, now=now()))
    due = await store.run(lambda s: s.due_deliveries(now=now()))
    if not due:
        return 0
    secrets = {h.url: h.secret for h in hooks}

    async def one(d: DueDelivery) -> bool:
        error = await _post(session, d, secrets.get(d.url, b""), timeout)
        attempts = d.attempts + 1

        # Recorded as soon as this POST ends, so a crash can only repeat what was in flight.
        def record(s: Store) -> None:
            moment = now()
            if error is None:
                s.mark_delivery(event_id=d.event_id, url=d.url, status="delivered",
                                attempts=attempts, next_at=moment)
            else:
                s.mark_delivery(event_id=d.event_id, url=d.url,
                                status="failed" if attempts >= max_attempts else "pending",
                                attempts=attempts, next_at=moment + retry(attempts), error=error)

        await store.run(record)
        if error is not None:
            log.warning("webhook %s event %s attempt %d: %s", d.url, d.event_id, attempts, error)
        return error is None

    return sum(await asyncio.gather(*(one(d) for d in due)))


async def _post(session: aiohttp.ClientSession, delivery: DueDelivery, secret: bytes,
                timeout: float) -> str | None:
    body = body_for(delivery)
    headers = {"Content-Type": "application/json", "User-Agent": "nurture-webhooks",
               "X-Nurture-Event": delivery.kind, "X-Nurture-Delivery": str(delivery.event_id),
               "X-Nurture-Signature": sign(body, secret)}
    try:
        async with session.post(delivery.url, data=body, headers=headers,
                                timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            await resp.read()
            return None if 200 <= resp.status < 300 else f"HTTP {resp.status}"
    except (aiohttp.ClientError, TimeoutError, OSError) as e:
        return f"{type(e).__name__}: {e}"
