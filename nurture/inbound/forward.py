"""Forward replies that came to a ``reply+<token>@<reply domain>`` address to the owner rep.

With ``inbound.reply_domain`` set, a contact's reply goes to nurture rather than to a person;
with ``inbound.forward_replies`` (the default) nurture then sends it on to the rep of the
reply's task (else the contact's owner, else the team's Reply-To / From address).

The forward is a new message of ours (an RFC 5322 forward: a short note, then the reply
attached unchanged as ``message/rfc822``, RFC 2046 section 5.2.1), not a resend with
``Resent-*`` headers (RFC 5322 section 3.6.6): a resend keeps the contact's ``From``, which
our relay may not sign for, so DMARC (RFC 7489) would fail at the rep's mailbox and the reply
could be rejected or junked. Ours has ``From`` in our domain (DKIM-signed when ``dkim`` is
configured), ``Reply-To`` the contact (the rep's answer goes straight to them), and
``Auto-Submitted: auto-forwarded`` (RFC 3834 section 5) so that the rep's own auto-responder
does not answer it.

:func:`queue_forward` builds the bytes on the store's writer thread, inside the transaction
that applies the reply (at most once per inbound message: the ``forwards`` row is unique per
inbound id); :func:`forward_round` sends what is queued from async code, outside the writer
thread, over any ``send(sender=, recipient=, data=)`` (the parts use
:class:`nurture.smtp_pool.SmtpConnection` on the configured relay).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr, parseaddr
from typing import Protocol

from nurture.config import Settings
from nurture.errors import SendError
from nurture.inbound.classify import Classification
from nurture.models import Campaign, Contact
from nurture.signing import Signer
from nurture.store import AsyncStore, Store
from nurture.store.inbound import QueuedForward, SentTo

log = logging.getLogger("nurture.inbound.forward")

#: Transient failures are retried after these delays, then the forward is ``failed``.
RETRY_DELAYS = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2))
LEASE = timedelta(minutes=5)
_CTL = re.compile(r"[\r\n\t\x00]+")

__all__ = ["LEASE", "RETRY_DELAYS", "Deliver", "build_forward", "forward_round", "queue_forward"]


class Deliver(Protocol):
    """What sends one message: :meth:`nurture.smtp_pool.SmtpConnection.send` has this shape."""

    def __call__(self, *, sender: str, recipient: str, data: bytes) -> Awaitable[str]: ...


def _clean(value: str) -> str:
    return _CTL.sub(" ", value).strip()


def _crlf(raw: bytes) -> bytes:
    return re.sub(rb"\r?\n|\r", b"\r\n", raw).rstrip(b"\r\n") + b"\r\n"


def build_forward(*, original: bytes, from_address: str, to: str, reply_to: str, subject: str, note: str,
                  message_id: str, references: str | None, now: datetime, inbound_id: int) -> bytes:
    """The forward's bytes: our headers, a ``multipart/mixed`` with ``note`` as text/plain and
    ``original`` attached byte for byte as ``message/rfc822`` (line ends made CRLF)."""
    boundary = "=_nurture_fwd_" + hashlib.sha256(original).hexdigest()[:24]
    head = EmailMessage(policy=SMTP)
    head["From"] = _clean(from_address)
    head["To"] = _clean(to)
    head["Reply-To"] = _clean(reply_to)
    head["Subject"] = _clean(subject)[:300]
    head["Date"] = format_datetime(now)
    head["Message-ID"] = message_id
    if references:
        head["References"] = references
    head["Auto-Submitted"] = "auto-forwarded"
    head["X-Nurture-Forward"] = str(inbound_id)
    head["MIME-Version"] = "1.0"
    head["Content-Type"] = f'multipart/mixed; boundary="{boundary}"'
    text = EmailMessage(policy=SMTP)
    text.set_content(note, charset="utf-8", cte="quoted-printable")
    del text["MIME-Version"]
    body = _crlf(original)
    cte = "7bit" if body.isascii() else "8bit"
    b = boundary.encode("ascii")
    return b"".join([
        *(SMTP.fold_binary(name, value) for name, value in head.items()), b"\r\n",
        b"This is a forwarded reply in MIME format.\r\n",
        b"--" + b + b"\r\n", text.as_bytes(), b"\r\n",
        b"--" + b + b"\r\n",
        b"Content-Type: message/rfc822\r\n",
        b'Content-Disposition: attachment; filename="reply.eml"\r\n',
        b"Content-Transfer-Encoding: " + cte.encode("ascii") + b"\r\n\r\n",
        body,
        b"--" + b + b"--\r\n",
    ])


def queue_forward(store: Store, *, inbound_id: int, raw: bytes, cls: Classification, sent: SentTo,
                  contact: Contact, campaign: Campaign | None, task_id: int | None, settings: Settings,
                  now: datetime) -> str:
    """Queue the forward of a reply (on the writer thread, in the reply's transaction); says
    what it did, for the inbound record."""
    rep_id = store.get_task(task_id).rep_id if task_id is not None else None
    rep_id = rep_id or contact.owner
    reps = {r.id: r for r in settings.reps}
    rep = reps.get(rep_id) if rep_id else None
    sender = settings.sender
    team = (campaign.reply_to if campaign else None) or sender.reply_to or sender.from_address
    to = rep.email if rep is not None else parseaddr(team)[1]
    if not to or "@" not in to:
        return "not forwarded: no rep and no team address"
    if settings.inbound.reply_domain and to.rpartition("@")[2].lower() == settings.inbound.reply_domain.lower():
        return f"not forwarded: {to} is in the reply domain (it would come straight back)"
    from_name, from_addr = parseaddr(sender.from_address)
    domain = from_addr.rpartition("@")[2] or "nurture.invalid"
    who_name, who_addr = parseaddr(cls.sender or "")
    who_addr = who_addr if "@" in who_addr else sent.email
    who_name = _clean(who_name or contact.name or "")
    reply_to = formataddr((who_name, who_addr)) if who_name else who_addr
    shown = who_name or who_addr
    digest = Signer.from_settings(settings.tracking).keyed_digest("forward-id", str(inbound_id).encode()).hex()[:16]
    message_id = f"<fwd.{inbound_id}.{digest}@{domain}>"
    company = f" ({contact.company})" if contact.company else ""
    lines = [f"{shown} <{who_addr}>{company} replied to the {sent.campaign_id} mail (step {sent.step_id}).", ""]
    if cls.new_text.strip():
        lines += [cls.new_text.strip(), ""]
    if task_id is not None:
        lines.append(f"Task {task_id}: {settings.reps_app.base_url.rstrip('/')}/tasks/{task_id}")
    lines += [f"Reply to this message to answer {shown} directly.", "The original message is attached.", ""]
    subject = cls.subject or ""
    subject = subject if subject.lower().startswith("fwd:") else f"Fwd: {subject or 'a reply from ' + who_addr}"
    refs = " ".join(dict.fromkeys(m for m in (*cls.message_ids[:5], _original_message_id(raw)) if m)) or None
    data = build_forward(original=raw, from_address=formataddr((f"{shown} via {from_name or domain}"[:120], from_addr)),
                         to=formataddr((rep.name, to)) if rep is not None else to, reply_to=reply_to,
                         subject=subject, note="\n".join(lines), message_id=message_id, references=refs,
                         now=now, inbound_id=inbound_id)
    mail_from = settings.inbound.return_path or from_addr
    fid = store.queue_forward(inbound_id=inbound_id, recipient=to, mail_from=mail_from, message_id=message_id,
                              data=data, now=now, contact_id=contact.id, task_id=task_id,
                              rep_id=rep.id if rep is not None else None)
    if fid is None:
        return "already forwarded"
    return f"forward to {to} queued"


def _original_message_id(raw: bytes) -> str | None:
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0][:64_000]
    m = re.search(rb"(?im)^message-id:[ \t]*(<[^<>\s]{1,400}>)", head)
    return m.group(1).decode("ascii", "replace") if m else None


async def forward_round(*, store: AsyncStore[Store], send: Deliver, now: Callable[[], datetime],
                        sign: Callable[[bytes], bytes] | None = None, limit: int = 20) -> bool:
    """Send the forwards that are due; True when more are waiting. A transient failure (4xx,
    connection lost) is retried after :data:`RETRY_DELAYS`, a permanent one recorded as failed."""
    claimed: list[QueuedForward] = await store.run(lambda s: s.claim_forwards(now=now(), lease=LEASE, limit=limit))
    for fwd in claimed:
        data = sign(fwd.data) if sign is not None else fwd.data
        try:
            await send(sender=fwd.mail_from, recipient=fwd.recipient, data=data)
        except SendError as e:
            retry = e.transient and fwd.attempts <= len(RETRY_DELAYS)
            at = now()
            next_at = at + RETRY_DELAYS[fwd.attempts - 1] if retry else None
            log.warning("forward %s to %s: %s%s", fwd.id, fwd.recipient, e, " (will retry)" if retry else "")
            await store.call(Store.finish_forward, fwd.id, status="retry" if retry else "failed", now=at,
                             error=str(e), next_at=next_at)
            continue
        await store.call(Store.finish_forward, fwd.id, status="sent", now=now())
        log.info("forwarded reply %s to %s", fwd.inbound_id, fwd.recipient)
    return len(claimed) >= limit
