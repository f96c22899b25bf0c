"""Apply what came back: match it to a send nurture really made, act at most once, record it.

:func:`receive` takes the raw bytes of one RFC 5322 message (from the pipe transport, the
inbound SMTP listener or an IMAP mailbox) and :func:`receive_event` one provider event already
parsed and verified by a transport (SES, SendGrid). Both are synchronous and run on the store's
writer thread, in one transaction: the ``inbound`` row is claimed first (a second copy with
the same Message-ID or provider event id changes nothing), then the effects are applied and the
row records what was done. Neither raises for a bad message: it is recorded as ``unknown``
with the reason (only :class:`~nurture.errors.NurtureError` from the store can escape).

Matching, so that a forged report changes nothing: a valid VERP or reply token among the
envelope recipients or the message's To (the token is signed, see :mod:`nurture.inbound.verp`),
or a Message-ID we sent that the message quotes (In-Reply-To / References, the original inside
a DSN or ARF report) *and* whose recipient is the address the report names (or, for a reply,
the address it comes from). A provider event is signed by its provider, so its recipient and
message id are enough.

Effects:

- hard bounce: suppress the address (``bounced``), exit every enrollment, ``contact.bounced``;
- soft bounce: recorded; ``inbound.soft_bounce_limit`` of them, the first and the last at least
  ``inbound.soft_bounce_span`` apart (policy blocks, 5.7.x, not counted), suppress as a hard one;
- complaint: suppress (``complaint``), exit every enrollment, ``contact.complained``;
- automatic reply: never a reply, never a task; an out-of-office pauses the contact's
  enrollments until its return date, else for the campaign's ``out_of_office.pause``
  (``inbound.ooo_pause`` by default);
- unsubscribe request: unsubscribed as by the link, ``contact.unsubscribed``;
- a person's reply: the ``replied`` exit (``{replied: company}``: the same company domain's
  other contacts too), the follow-up task (:func:`nurture.followup.reply_task`), score rules
  for replies, ``contact.replied``; one that came to a ``reply+`` address is queued to be
  forwarded to the task's rep (``inbound.forward_replies``, :mod:`nurture.inbound.forward`);
- unknown, or matched to no send: recorded, nothing else.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from email.message import EmailMessage
from typing import Any, Literal

from nurture.config import Settings
from nurture.followup import reply_task
from nurture.inbound.classify import Classification, Kind, classify
from nurture.inbound.forward import queue_forward
from nurture.inbound.verp import parse_recipient
from nurture.models import Campaign
from nurture.rules import apply_score
from nurture.scheduler import contact_zone
from nurture.signing import Signer
from nurture.store import Store
from nurture.store.inbound import SentTo

log = logging.getLogger("nurture.inbound")

#: What a record can be: a classification, or a provider's ``delivered``.
RecordKind = Literal["hard_bounce", "soft_bounce", "complaint", "auto_reply", "unsubscribe", "reply",
                     "unknown", "delivered"]
EventKind = Literal["hard_bounce", "soft_bounce", "complaint", "delivered", "unknown"]

#: Free-mail domains: ``{replied: company}`` never treats their users as one company.
FREEMAIL = frozenset("""
gmail.com googlemail.com yahoo.com yahoo.co.jp yahoo.co.uk ymail.com outlook.com outlook.jp hotmail.com
hotmail.co.jp hotmail.co.uk live.com live.jp msn.com icloud.com me.com mac.com aol.com gmx.com gmx.de gmx.net
web.de mail.com mail.ru yandex.ru yandex.com proton.me protonmail.com pm.me zoho.com fastmail.com hey.com
qq.com 163.com 126.com naver.com daum.net docomo.ne.jp ezweb.ne.jp au.com softbank.ne.jp i.softbank.jp
nifty.com biglobe.ne.jp ocn.ne.jp so-net.ne.jp excite.co.jp
""".split())

__all__ = ["FREEMAIL", "EventKind", "InboundResult", "ProviderEvent", "RecordKind", "parse_message", "receive",
           "receive_event"]


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """A delivery event a provider reported (SES, SendGrid …), parsed and its signature
    verified by the transport. ``message_id`` is our Message-ID when the provider returns it
    (with or without angle brackets); ``raw`` is the provider's payload, for the record."""

    provider: str
    event_id: str
    kind: EventKind
    recipient: str
    message_id: str | None
    status: str | None
    at: datetime
    raw: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InboundResult:
    """What :func:`receive` / :func:`receive_event` decided and did.

    ``action`` says in words what was done ("suppressed gone@shop.example (bounced), 1
    enrollment exited"; "nothing: matches no send we made"); ``duplicate`` is True when the item
    had been received before (nothing was done this time; the other fields are the first
    time's record)."""

    id: int | None
    kind: RecordKind
    action: str
    reasons: tuple[str, ...] = ()
    send_id: int | None = None
    contact_id: int | None = None
    campaign_id: str | None = None
    step_id: str | None = None
    matched_by: str | None = None
    recipient: str | None = None
    status: str | None = None
    new_text: str = ""
    task_id: int | None = None
    resume_at: datetime | None = None
    duplicate: bool = False

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (``nurture inbound --json``)."""
        return {"id": self.id, "kind": self.kind, "action": self.action, "reasons": list(self.reasons),
                "send_id": self.send_id, "contact_id": self.contact_id, "campaign_id": self.campaign_id,
                "step_id": self.step_id, "matched_by": self.matched_by, "recipient": self.recipient,
                "status": self.status, "new_text": self.new_text, "task_id": self.task_id,
                "resume_at": self.resume_at.isoformat() if self.resume_at else None,
                "duplicate": self.duplicate}


# -- entry points ----------------------------------------------------------------------------------

def parse_message(raw: bytes) -> EmailMessage | None:
    """The bytes as a message, or None when they are not one (no header field at all)."""
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
    except Exception:  # noqa: BLE001 - the parser is lenient; anything it still refuses is garbage
        return None
    if not isinstance(msg, EmailMessage) or not msg.keys():
        return None
    return msg


def receive(store: Store, raw: bytes, *, settings: Settings, campaigns: Mapping[str, Campaign], now: datetime,
            source: str, envelope_recipients: Sequence[str] = (), dedupe_key: str | None = None) -> InboundResult:
    """Classify one inbound message, match it to a send, apply it at most once, record it.

    ``envelope_recipients`` are the RCPT TO addresses when the transport knows them (the pipe
    transport's ``${original_recipient}``, the SMTP listener); ``dedupe_key`` replaces the
    Message-ID as the at-most-once key (a transport with a better one, e.g. an IMAP UID).
    """
    inbound = settings.inbound
    size = len(raw)
    msg: EmailMessage | None = None
    if size > inbound.max_bytes:
        cls = Classification("unknown", reasons=(f"too large: {size} bytes (inbound.max_bytes is {inbound.max_bytes});"
                                                 " not read",))
    else:
        msg = parse_message(raw)
        if msg is None:
            cls = Classification("unknown", reasons=("not an RFC 5322 message (no header fields)",))
        else:
            cls = classify(msg, today=now.date())
    key = dedupe_key or _message_id_key(msg) or "sha256:" + hashlib.sha256(raw).hexdigest()
    with store.transaction():
        row_id = store.claim_inbound(dedupe_key=key, source=source, kind=cls.kind, now=now, size=size,
                                     subject=cls.subject, sender=cls.sender)
        if row_id is None:
            return _duplicate(store, key)
        signer = Signer.from_settings(settings.tracking)
        sent, matched_by, why = _match(store, signer, cls, envelope_recipients)
        result = _apply(store, row_id, cls.kind, cls, sent, matched_by, why, settings=settings,
                        campaigns=campaigns, now=now, source=source, raw=raw if msg is not None else None)
    log.info("inbound %s from %s: %s (%s)", row_id, source, result.kind, result.action)
    return result


def receive_event(store: Store, event: ProviderEvent, *, settings: Settings, campaigns: Mapping[str, Campaign],
                  now: datetime) -> InboundResult:
    """Apply one provider event (bounce, complaint, delivery) at most once per
    ``(provider, event_id)``. The transport has verified the provider's signature, so the event's
    recipient is trusted; it must still be an address nurture sent to (by the event's message
    id when it carries ours, else the latest send to that address)."""
    kinds: dict[str, Kind] = {"hard_bounce": "hard_bounce", "soft_bounce": "soft_bounce", "complaint": "complaint"}
    kind: RecordKind = "delivered" if event.kind == "delivered" else kinds.get(event.kind, "unknown")
    reasons = [f"{event.provider} event {event.kind}"]
    if event.status:
        reasons.append(f"status {event.status}")
    cls = Classification(kinds.get(event.kind, "unknown"),
                         recipient=(event.recipient or "").strip().lower() or None, status=event.status,
                         reasons=tuple(reasons))
    key = f"{event.provider}:{event.event_id}"
    with store.transaction():
        row_id = store.claim_inbound(dedupe_key=key, source=event.provider, kind=kind, now=now, size=0,
                                     subject=None, sender=None)
        if row_id is None:
            return _duplicate(store, key)
        sent, matched_by, why = _match_event(store, event, cls)
        result = _apply(store, row_id, kind, cls, sent, matched_by, why, settings=settings, campaigns=campaigns,
                        now=now, source=event.provider)
    log.info("inbound %s from %s: %s (%s)", row_id, event.provider, result.kind, result.action)
    return result


# -- matching --------------------------------------------------------------------------------------

def _message_id_key(msg: EmailMessage | None) -> str | None:
    if msg is None:
        return None
    try:
        value = str(msg.get("Message-ID") or "")
    except Exception:  # noqa: BLE001
        return None
    m = re.search(r"<[^<>\s]{1,400}>", value)
    return "mid:" + m.group(0) if m else None


def _match(store: Store, signer: Signer, cls: Classification,
           envelope: Sequence[str]) -> tuple[SentTo | None, str | None, str]:
    """(the send, how it was matched, why not when it was not)."""
    for address in (*envelope, *cls.verp_recipients):
        parsed = parse_recipient(signer, address)
        if parsed is None:
            continue
        token_kind, send_id = parsed
        sent = store.sent_to(send_id)
        if sent is not None:
            return sent, "verp" if token_kind == "bounce" else "reply address", ""
    if not cls.message_ids:
        return None, None, "no VERP token and no Message-ID of ours"
    who = cls.sender if cls.kind in ("reply", "unsubscribe", "auto_reply") else cls.recipient
    candidates = store.sends_by_message_id(cls.message_ids)
    if not candidates:
        return None, None, "quotes no Message-ID we sent"
    if who is None:
        return None, None, "quotes our Message-ID but names no address to check it against"
    for sent in candidates:
        if sent.email.strip().lower() == who.lower():
            return sent, "message-id", ""
    return None, None, f"quotes our Message-ID, but we did not send it to {who}"


def _match_event(store: Store, event: ProviderEvent, cls: Classification) -> tuple[SentTo | None, str | None, str]:
    if not cls.recipient:
        return None, None, "the event names no recipient"
    if event.message_id:
        mid = event.message_id.strip()
        mid = mid if mid.startswith("<") else f"<{mid}>"
        for candidate in store.sends_by_message_id([mid]):
            if candidate.email.strip().lower() == cls.recipient:
                return candidate, "provider message-id", ""
    last = store.last_send_to(cls.recipient)
    if last is None:
        return None, None, f"we never sent to {cls.recipient}"
    return last, "provider recipient", ""


# -- effects -----------------------------------------------------------------------------------------

def _apply(store: Store, row_id: int, kind: RecordKind, cls: Classification, sent: SentTo | None,
           matched_by: str | None, why: str, *, settings: Settings, campaigns: Mapping[str, Campaign],
           now: datetime, source: str, raw: bytes | None = None) -> InboundResult:
    reasons = list(cls.reasons)
    task_id: int | None = None
    resume_at: datetime | None = None
    if sent is None:
        reasons.append(f"not matched: {why}")
        action = "nothing: matches no send we made"
    else:
        reasons.append(f"matched send {sent.send_id} by {matched_by}")
        if kind == "hard_bounce":
            action = _bounce(store, sent, cls, now=now, source=source, why="hard bounce")
        elif kind == "soft_bounce":
            action = _soft_bounce(store, row_id, sent, cls, settings=settings, now=now, source=source)
        elif kind == "complaint":
            action = _complaint(store, sent, cls, now=now, source=source)
        elif kind == "auto_reply":
            action, resume_at = _auto_reply(store, sent, cls, settings=settings, campaigns=campaigns, now=now)
        elif kind == "unsubscribe":
            action = _unsubscribe(store, sent, now=now, source=source)
        elif kind == "reply":
            action, task_id = _reply(store, row_id, sent, cls, settings=settings, campaigns=campaigns, now=now,
                                     source=source, raw=raw if matched_by == "reply address" else None)
        elif kind == "delivered":
            action = "recorded: delivered"
        else:
            action = "recorded: not something nurture acts on"
    store.finish_inbound(row_id, kind=kind, status=cls.status, recipient=cls.recipient, sent=sent,
                         matched_by=matched_by, action=action, reasons=reasons, out_of_office=cls.out_of_office,
                         resume_at=resume_at, new_text=cls.new_text or None, task_id=task_id)
    return InboundResult(
        id=row_id, kind=kind, action=action, reasons=tuple(reasons), send_id=sent.send_id if sent else None,
        contact_id=sent.contact_id if sent else None, campaign_id=sent.campaign_id if sent else None,
        step_id=sent.step_id if sent else None, matched_by=matched_by, recipient=cls.recipient, status=cls.status,
        new_text=cls.new_text, task_id=task_id, resume_at=resume_at)


def _payload(sent: SentTo, source: str, **extra: object) -> dict[str, Any]:
    return {"contact_id": sent.contact_id, "email": sent.email, "send_id": sent.send_id,
            "campaign_id": sent.campaign_id, "step_id": sent.step_id, "source": source, **extra}


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _bounce(store: Store, sent: SentTo, cls: Classification, *, now: datetime, source: str, why: str) -> str:
    already = store.is_suppressed(sent.email)
    store.suppress(sent.email, "bounced", now=now)
    exited = store.exit_enrollments(sent.contact_id, reason="bounced", now=now)
    if not already or exited:
        store.append_event("contact.bounced", _payload(sent, source, status=cls.status, diagnostic=cls.diagnostic,
                                                       why=why), now=now)
    what = "already suppressed" if already else f"suppressed {sent.email} (bounced)"
    return f"{what}; {_n(exited, 'enrollment')} exited"


def _soft_bounce(store: Store, row_id: int, sent: SentTo, cls: Classification, *, settings: Settings,
                 now: datetime, source: str) -> str:
    # This row counts too: record its contact and status before counting.
    store.finish_inbound(row_id, kind="soft_bounce", status=cls.status, recipient=cls.recipient, sent=sent,
                         matched_by=None, action="", reasons=())
    times = store.soft_bounce_times(sent.contact_id)
    limit, span = settings.inbound.soft_bounce_limit, settings.inbound.soft_bounce_span
    if len(times) >= limit and times[-1] - times[0] >= span:
        days = (times[-1] - times[0]).total_seconds() / 86400
        return _bounce(store, sent, cls, now=now, source=source,
                       why=f"{len(times)} soft bounces over {days:.0f} days")
    return f"recorded: soft bounce {len(times)} of {limit} before suppression"


def _complaint(store: Store, sent: SentTo, cls: Classification, *, now: datetime, source: str) -> str:
    already = store.is_suppressed(sent.email)
    store.suppress(sent.email, "complaint", now=now)
    exited = store.exit_enrollments(sent.contact_id, reason="complaint", now=now)
    store.append_event("contact.complained", _payload(sent, source, feedback_type=cls.diagnostic), now=now)
    what = "already suppressed" if already else f"suppressed {sent.email} (complaint)"
    return f"{what}; {_n(exited, 'enrollment')} exited"


def _auto_reply(store: Store, sent: SentTo, cls: Classification, *, settings: Settings,
                campaigns: Mapping[str, Campaign], now: datetime) -> tuple[str, datetime | None]:
    if not cls.out_of_office:
        return "recorded: an automatic reply (no task, no exit)", None
    paused, latest = 0, None
    for campaign_id, tz in store.active_enrollments_of(sent.contact_id):
        campaign = campaigns.get(campaign_id)
        pause = settings.inbound.ooo_pause
        if campaign is not None and campaign.out_of_office_pause is not None:
            pause = campaign.out_of_office_pause
        if pause <= timedelta(0):
            continue  # this campaign does not pause for out-of-office notices
        if cls.return_date is not None:
            local = contact_zone(tz, campaign.timezone if campaign else "UTC")
            until = datetime.combine(cls.return_date, time(0), tzinfo=local).astimezone(now.tzinfo)
        else:
            until = now + pause
        if until <= now:
            continue
        paused += store.pause_enrollments(sent.contact_id, campaign_id=campaign_id, until=until, now=now)
        latest = until if latest is None else max(latest, until)
    if not paused:
        return "recorded: out of office (nothing to pause)", None
    when = f"until {cls.return_date.isoformat()}" if cls.return_date else f"for {settings.inbound.ooo_pause}"
    return f"out of office: {_n(paused, 'enrollment')} paused {when}", latest


def _unsubscribe(store: Store, sent: SentTo, *, now: datetime, source: str) -> str:
    already = store.is_suppressed(sent.email)
    store.suppress(sent.email, "unsubscribed", now=now)
    if store.get_contact(sent.contact_id).status == "active":  # suppressed earlier for another reason
        store.set_contact_status(sent.contact_id, "unsubscribed", now=now)
    exited = store.exit_enrollments(sent.contact_id, reason="unsubscribed", now=now)
    if not already or exited:
        store.append_event("contact.unsubscribed", _payload(sent, f"reply via {source}"), now=now)
    return f"unsubscribed {sent.email} (asked in a reply); {_n(exited, 'enrollment')} exited"


def _reply(store: Store, row_id: int, sent: SentTo, cls: Classification, *, settings: Settings,
           campaigns: Mapping[str, Campaign], now: datetime, source: str,
           raw: bytes | None) -> tuple[str, int | None]:
    campaign = campaigns.get(sent.campaign_id)
    contact = store.get_contact(sent.contact_id)
    done: list[str] = []
    task_id = None
    if campaign is None:
        done.append(f"campaign {sent.campaign_id} is not loaded: no exit, rules or task")
    else:
        exits = [e for e in campaign.exits if e.kind == "replied"]
        if exits:
            n = store.exit_enrollments(contact.id, campaign_id=campaign.id, reason="replied", now=now)
            done.append(f"replied exit ({_n(n, 'enrollment')})")
            domain = contact.email.rpartition("@")[2].lower()
            if any(e.value == "company" for e in exits) and domain and domain not in FREEMAIL:
                others = store.company_enrollments(domain, campaign_id=campaign.id, exclude_contact=contact.id)
                for other in others:
                    store.exit_enrollments(other, campaign_id=campaign.id, reason=f"replied: {contact.email}",
                                           now=now)
                done.append(f"{_n(len(others), 'other contact')} at {domain} stopped")
        store.append_event("contact.replied", _payload(
            sent, source, name=contact.name, company=contact.company, phone=contact.phone,
            text=cls.new_text[:2000], subject=cls.subject), now=now)
        apply_score(store, contact_id=contact.id, scoring=campaign.scoring, link=None, step=sent.step_id,
                    campaign_id=campaign.id, now=now, replied=True)
        task_id = reply_task(store, campaign, settings, contact=contact, step_id=sent.step_id, text=cls.new_text,
                             subject=cls.subject, inbound_id=row_id, now=now)
        done.append(f"task {task_id}")
    if raw is not None and settings.inbound.forward_replies:  # it came to a reply+ address: nobody else saw it
        done.append(queue_forward(store, inbound_id=row_id, raw=raw, cls=cls, sent=sent, contact=contact,
                                  campaign=campaign, task_id=task_id, settings=settings, now=now))
    return "reply: " + ", ".join(done), task_id


def _duplicate(store: Store, key: str) -> InboundResult:
    row = store.get_inbound(dedupe_key=key)
    if row is None:  # pragma: no cover - the unique key was just found
        return InboundResult(id=None, kind="unknown", action="duplicate", duplicate=True)
    return InboundResult(
        id=row["id"], kind=row["kind"], action=f"already received ({row['action'] or 'recorded'}): nothing done",
        reasons=tuple(row["reasons"]), send_id=row["send_id"], contact_id=row["contact_id"],
        campaign_id=row["campaign_id"], step_id=row["step_id"], matched_by=row["matched_by"],
        recipient=row["recipient"], status=row["status"], new_text=row["new_text"] or "", task_id=row["task_id"],
        resume_at=row["resume_at"], duplicate=True)
