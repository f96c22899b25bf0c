"""Provider event webhooks: Amazon SES through SNS, SendGrid's signed Event Webhook, Mailgun's webhooks.

Verification comes first and is all-or-nothing: a request whose signature does not verify
raises :class:`SignatureError` and nothing in it is looked at further. Then the provider's
events become :class:`~nurture.inbound.ProviderEvent`\\ s for ``receive_event``.

- **SNS** (AWS, "Verifying the signatures of Amazon SNS messages"): the string to sign is the
  message's fields, each as ``name\\nvalue\\n``, in byte order of the names: ``Message,
  MessageId, Subject`` (if present)``, Timestamp, TopicArn, Type`` for a notification,
  ``Message, MessageId, SubscribeURL, Timestamp, Token, TopicArn, Type`` for a
  (un)subscription confirmation. ``Signature`` is base64 RSA PKCS #1 v1.5 over it, with SHA1
  (``SignatureVersion`` 1) or SHA256 (2). The certificate is fetched only from an ``https``
  URL on an ``sns.<region>.amazonaws.com`` host (never from wherever the message says), with
  the fetcher injected, and cached by URL.
- **SendGrid** (Twilio SendGrid, "Getting Started with the Event Webhook Security Features"):
  ``X-Twilio-Email-Event-Webhook-Signature`` is a base64 ECDSA (P-256, SHA256) signature over
  ``X-Twilio-Email-Event-Webhook-Timestamp`` followed by the raw body, checked with the
  webhook's public key; a timestamp outside the tolerance is refused (replays).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, cast
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from nurture.inbound import ProviderEvent

log = logging.getLogger("nurture.inbound.providers")

Kind = Literal["hard_bounce", "soft_bounce", "complaint", "delivered", "unknown"]

#: Where SNS signing certificates (and subscription URLs) may come from.
SNS_HOST = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?")
SNS_TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
_SNS_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}

#: ``fetch(url) -> bytes``: GET an https URL (the certificate PEM); injected, so tests need no network.
Fetch = Callable[[str], Awaitable[bytes]]


class SignatureError(Exception):
    """The request is not provably from the provider: refuse it (403) and change nothing."""


# -- Amazon SNS ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SnsMessage:
    """A verified SNS message."""

    type: str
    message_id: str
    topic_arn: str
    message: str
    timestamp: datetime
    subscribe_url: str | None
    raw: Mapping[str, object]


def sns_string_to_sign(doc: Mapping[str, object]) -> bytes:
    """The bytes SNS signed for this message (see the module docstring); SignatureError when
    its Type is unknown or a field that must be signed is missing."""
    kind = doc.get("Type")
    if not isinstance(kind, str) or kind not in _SNS_FIELDS:
        raise SignatureError(f"unknown SNS message type {kind!r}")
    out: list[str] = []
    for name in _SNS_FIELDS[kind]:
        value = doc.get(name)
        if value is None and name == "Subject":
            continue
        if not isinstance(value, str):
            raise SignatureError(f"SNS message without {name}")
        out.append(f"{name}\n{value}\n")
    return "".join(out).encode("utf-8")


def check_sns_url(url: object, *, what: str = "SigningCertURL") -> str:
    """``url`` if it is https on an ``sns.<region>.amazonaws.com`` host, else SignatureError."""
    if not isinstance(url, str):
        raise SignatureError(f"SNS message without {what}")
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (parts.scheme != "https" or parts.username is not None or parts.password is not None
            or port not in (None, 443) or not SNS_HOST.fullmatch(parts.hostname or "")):
        raise SignatureError(f"{what} {url!r} is not an https URL of Amazon SNS")
    return url


class SnsVerifier:
    """Verifies SNS messages; keeps up to ``max_certs`` signing certificates by URL."""

    def __init__(self, *, fetch: Fetch, max_certs: int = 16) -> None:
        self.fetch = fetch
        self.max_certs = max_certs
        self._certs: OrderedDict[str, x509.Certificate] = OrderedDict()

    async def verify(self, body: bytes, *, now: datetime) -> SnsMessage:
        """The message in ``body`` once its signature verified; SignatureError otherwise."""
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise SignatureError("the body is not JSON") from None
        if not isinstance(doc, dict):
            raise SignatureError("the body is not an SNS message")
        signed = sns_string_to_sign(doc)
        version = doc.get("SignatureVersion")
        algorithm: hashes.HashAlgorithm
        if version == "1":
            algorithm = hashes.SHA1()
        elif version == "2":
            algorithm = hashes.SHA256()
        else:
            raise SignatureError(f"unknown SignatureVersion {version!r}")
        try:
            signature = base64.b64decode(str(doc.get("Signature") or ""), validate=True)
        except (binascii.Error, ValueError):
            raise SignatureError("the Signature is not base64") from None
        if not signature:
            raise SignatureError("the message is not signed")
        cert = await self._cert(check_sns_url(doc.get("SigningCertURL")))
        if not (cert.not_valid_before_utc <= now <= cert.not_valid_after_utc):
            raise SignatureError("the signing certificate is not valid now")
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise SignatureError("the signing certificate has no RSA key")
        try:
            key.verify(signature, signed, padding.PKCS1v15(), algorithm)
        except InvalidSignature:
            raise SignatureError("the SNS signature does not verify") from None
        try:
            at = _iso(str(doc["Timestamp"]))
        except ValueError:
            raise SignatureError("the Timestamp is not a time") from None
        subscribe = doc.get("SubscribeURL")
        return SnsMessage(type=str(doc["Type"]), message_id=str(doc["MessageId"]), topic_arn=str(doc["TopicArn"]),
                          message=str(doc["Message"]), timestamp=at,
                          subscribe_url=subscribe if isinstance(subscribe, str) else None, raw=doc)

    async def _cert(self, url: str) -> x509.Certificate:
        cert = self._certs.get(url)
        if cert is not None:
            self._certs.move_to_end(url)
            return cert
        try:
            pem = await self.fetch(url)
            cert = x509.load_pem_x509_certificate(pem)
        except ValueError:
            raise SignatureError(f"no certificate at {url}") from None
        self._certs[url] = cert
        while len(self._certs) > self.max_certs:
            self._certs.popitem(last=False)
        return cert


def ses_events(message: SnsMessage) -> list[ProviderEvent]:
    """The per-recipient events of an SES notification (``notificationType``, or an event
    publishing ``eventType``): Bounce, Complaint, Delivery, DeliveryDelay. Other types (Send,
    Open, Click …) give none: nurture tracks its own opens and clicks."""
    try:
        note = json.loads(message.message)
    except ValueError:
        return []
    if not isinstance(note, dict):
        return []
    kind = note.get("notificationType") or note.get("eventType")
    mail = _dict(note.get("mail"))
    message_id = _ses_message_id(mail)
    raw_of = {"sns_message_id": message.message_id, "topic_arn": message.topic_arn, **note}
    out: list[ProviderEvent] = []

    def add(detail: Mapping[str, object], recipients: Iterable[object], kind_of: Callable[[Mapping[str, object]], Kind],
            what: str) -> None:
        at = _when(detail.get("timestamp"), message.timestamp)
        for r in recipients:
            entry = _dict(r) if isinstance(r, dict) else {"emailAddress": r}
            address = entry.get("emailAddress")
            if not isinstance(address, str) or "@" not in address:
                continue
            status = entry.get("status")
            out.append(ProviderEvent(
                provider="ses", event_id=f"{message.message_id}:{what}:{address.lower()}",
                kind=kind_of(entry), recipient=address, message_id=message_id,
                status=status if isinstance(status, str) else None, at=at, raw=raw_of))

    if kind == "Bounce":
        bounce = _dict(note.get("bounce"))
        hard = {"Permanent": "hard_bounce", "Transient": "soft_bounce"}.get(str(bounce.get("bounceType")), "unknown")
        add(bounce, _list(bounce.get("bouncedRecipients")), lambda _e: cast(Kind, hard), "bounce")
    elif kind == "Complaint":
        complaint = _dict(note.get("complaint"))
        not_spam = complaint.get("complaintFeedbackType") == "not-spam"
        add(complaint, _list(complaint.get("complainedRecipients")),
            lambda _e: "unknown" if not_spam else "complaint", "complaint")
    elif kind == "Delivery":
        delivery = _dict(note.get("delivery"))
        add(delivery, _list(delivery.get("recipients")), lambda _e: "delivered", "delivery")
    elif kind == "DeliveryDelay":
        delay = _dict(note.get("deliveryDelay"))
        add(delay, _list(delay.get("delayedRecipients")), lambda _e: "soft_bounce", "delay")
    return out


def _ses_message_id(mail: Mapping[str, object]) -> str | None:
    """Our Message-ID header as SES saw it (with "include original headers"), else None."""
    common = _dict(mail.get("commonHeaders"))
    if isinstance(common.get("messageId"), str):
        return str(common["messageId"])
    for h in _list(mail.get("headers")):
        h = _dict(h)
        if str(h.get("name", "")).lower() == "message-id" and isinstance(h.get("value"), str):
            return str(h["value"])
    return None


# -- SendGrid ------------------------------------------------------------------------------------

SENDGRID_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"

#: SendGrid's engagement events: nurture tracks opens, clicks and unsubscribes itself.
_SENDGRID_SKIPPED = frozenset({"processed", "open", "click", "unsubscribe", "group_unsubscribe",
                               "group_resubscribe"})


def sendgrid_public_key(der: bytes) -> ec.EllipticCurvePublicKey:
    """The verification key (DER SubjectPublicKeyInfo) as a P-256 key; ValueError otherwise."""
    key = serialization.load_der_public_key(der)
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("not an ECDSA P-256 public key")
    return key


def verify_sendgrid(*, key: ec.EllipticCurvePublicKey, body: bytes, signature: str | None,
                    timestamp: str | None, now: datetime, tolerance: float) -> None:
    """Return when ``signature`` is SendGrid's over ``timestamp + body`` and the timestamp is
    within ``tolerance`` seconds of ``now``; SignatureError otherwise."""
    if not signature or not timestamp:
        raise SignatureError("the request is not signed")
    if not timestamp.isdigit():
        raise SignatureError("the signature timestamp is not a number")
    if abs(now.timestamp() - int(timestamp)) > tolerance:
        raise SignatureError("the signature timestamp is too old or in the future")
    try:
        raw_signature = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("the signature is not base64") from None
    try:
        key.verify(raw_signature, timestamp.encode("ascii") + body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise SignatureError("the SendGrid signature does not verify") from None


def sendgrid_events(body: bytes, *, now: datetime) -> list[ProviderEvent]:
    """The events of a (verified) Event Webhook POST, a JSON array. Engagement events are left
    out; ``bounce`` is hard (``type: blocked`` soft), ``deferred`` soft, ``spamreport`` a
    complaint, ``delivered`` delivered, ``dropped`` and anything new unknown."""
    try:
        items = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return []
    out: list[ProviderEvent] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        event, email_ = item.get("event"), item.get("email")
        if not isinstance(event, str) or event in _SENDGRID_SKIPPED or not isinstance(email_, str):
            continue
        kind: Kind
        if event == "bounce":
            kind = "soft_bounce" if item.get("type") == "blocked" else "hard_bounce"
        elif event == "deferred":
            kind = "soft_bounce"
        elif event == "spamreport":
            kind = "complaint"
        elif event == "delivered":
            kind = "delivered"
        else:
            kind = "unknown"
        event_id = item.get("sg_event_id")
        if not isinstance(event_id, str) or not event_id:
            # Without SendGrid's id: as unique as the event itself, so a retry is still one event.
            event_id = "sha:" + _digest(json.dumps(item, sort_keys=True))
        smtp_id = item.get("smtp-id")
        status = item.get("status")
        out.append(ProviderEvent(
            provider="sendgrid", event_id=event_id, kind=kind, recipient=email_,
            message_id=smtp_id if isinstance(smtp_id, str) and smtp_id else None,
            status=status if isinstance(status, str) else None,
            at=_when(item.get("timestamp"), now), raw=item))
    return out


# -- Mailgun -------------------------------------------------------------------------------------

#: Mailgun's engagement and bookkeeping events: nurture tracks opens, clicks and unsubscribes itself.
_MAILGUN_SKIPPED = frozenset({"accepted", "opened", "clicked", "unsubscribed", "stored"})
_ENHANCED = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,200}")


@dataclass(frozen=True, slots=True)
class MailgunWebhook:
    """A Mailgun webhook POST whose signature verified: the token (accept it once) and the event."""

    token: str
    timestamp: int
    event: Mapping[str, object]


def mailgun_signature(*, signing_key: bytes, timestamp: str, token: str) -> str:
    """The hex HMAC-SHA256 of ``timestamp + token`` under ``signing_key`` (what Mailgun sends)."""
    return hmac.new(signing_key, (timestamp + token).encode("ascii"), hashlib.sha256).hexdigest()


def verify_mailgun(*, signing_key: bytes, body: bytes, now: datetime, tolerance: float) -> MailgunWebhook:
    """The webhook in ``body`` when its ``signature`` is Mailgun's (or its ``parent-signature``)
    and its timestamp is within ``tolerance`` seconds of ``now``; SignatureError otherwise.
    Whether the token was used before is the caller's check (it needs the database)."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise SignatureError("the body is not JSON") from None
    sig = _dict(doc.get("signature")) if isinstance(doc, dict) else {}
    timestamp, token = sig.get("timestamp"), sig.get("token")
    if isinstance(timestamp, int) and not isinstance(timestamp, bool):
        timestamp = str(timestamp)
    if not isinstance(timestamp, str) or not isinstance(token, str) or not sig.get("signature"):
        raise SignatureError("the request is not signed")
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise SignatureError("the signature timestamp is not a number")
    if not _TOKEN.fullmatch(token):
        raise SignatureError("the signature token is not one of Mailgun's")
    expected = mailgun_signature(signing_key=signing_key, timestamp=timestamp, token=token)
    offered = [v.strip().lower() for v in (sig.get("signature"), sig.get("parent-signature")) if isinstance(v, str)]
    if not any(hmac.compare_digest(expected.encode(), v.encode()) for v in offered):
        raise SignatureError("the Mailgun signature does not verify")
    if abs(now.timestamp() - int(timestamp)) > tolerance:
        raise SignatureError("the signature timestamp is too old or in the future")
    return MailgunWebhook(token=token, timestamp=int(timestamp), event=_dict(doc.get("event-data")))


def mailgun_events(hook: MailgunWebhook, *, now: datetime) -> list[ProviderEvent]:
    """The event of a (verified) Mailgun webhook: none for engagement events; ``failed`` is a
    hard bounce when permanent (a soft one when temporary, or when Mailgun gave up on a 4xx),
    a complaint when Mailgun suppressed a complainer, unknown for an address Mailgun keeps
    unsubscribed (nurture keeps its own); ``complained`` a complaint, ``delivered`` delivered,
    anything else unknown."""
    item = hook.event
    event, recipient = item.get("event"), item.get("recipient")
    if not isinstance(event, str) or event in _MAILGUN_SKIPPED or not isinstance(recipient, str):
        return []
    delivery = _dict(item.get("delivery-status"))
    status = _mailgun_status(delivery)
    kind: Kind
    if event == "failed":
        reason = str(item.get("reason") or "")
        if reason == "suppress-complaint":
            kind = "complaint"
        elif reason == "suppress-unsubscribe":
            kind = "unknown"
        elif item.get("severity") == "permanent" and not (status or "").startswith("4"):
            kind = "hard_bounce"
        else:
            kind = "soft_bounce"
    elif event == "complained":
        kind = "complaint"
    elif event == "delivered":
        kind = "delivered"
    else:
        kind = "unknown"
    # Mailgun's event id is unique within a day only: with the event's own time it is unique,
    # and the same in a retry.
    event_id, at = item.get("id"), item.get("timestamp")
    if isinstance(event_id, str) and event_id and isinstance(at, int | float) and not isinstance(at, bool):
        key = f"{event_id}:{at}"
    else:
        key = "sha:" + _digest(json.dumps(item, sort_keys=True, default=str))
    headers = _dict(_dict(item.get("message")).get("headers"))
    message_id = headers.get("message-id")
    return [ProviderEvent(
        provider="mailgun", event_id=key, kind=kind, recipient=recipient,
        message_id=message_id if isinstance(message_id, str) and message_id else None,
        status=status, at=_when(at, now), raw=item)]


def _mailgun_status(delivery: Mapping[str, object]) -> str | None:
    """The enhanced status code (``5.1.1``) of a delivery-status, else the SMTP code, else None."""
    for name in ("enhanced-code", "message", "description"):
        value = delivery.get(name)
        m = _ENHANCED.search(value) if isinstance(value, str) else None
        if m:
            return m.group(1)
    code = delivery.get("code")
    return str(code) if isinstance(code, int) and not isinstance(code, bool) and 200 <= code < 600 else None


# -- helpers -------------------------------------------------------------------------------------

def _iso(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _when(value: object, default: datetime) -> datetime:
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
        if isinstance(value, str):
            return _iso(value)
    except (ValueError, OverflowError, OSError):
        pass
    return default


def _dict(value: object) -> Mapping[str, object]:
    return cast(Mapping[str, object], value) if isinstance(value, dict) else {}


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]
