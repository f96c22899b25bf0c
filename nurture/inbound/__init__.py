"""Inbound mail: what comes back after sending closes the loop.

- :mod:`nurture.inbound.verp`: the addresses that identify a send (``bounces+<token>@…`` as
  the envelope sender, ``reply+<token>@…`` as an optional Reply-To);
- :mod:`nurture.inbound.classify`: pure classification of one message (bounce, complaint,
  automatic reply / out-of-office, unsubscribe request, a person's reply, unknown);
- :mod:`nurture.inbound.apply`: :func:`receive` (raw bytes) and :func:`receive_event` (a
  provider event) match it to a send we made, apply it at most once and record it.

The transports (the pipe command ``nurture inbound``, the inbound SMTP listener, the IMAP
reader, provider webhooks) all end in :func:`receive` or :func:`receive_event`.
"""

from nurture.inbound.apply import (
    FREEMAIL,
    EventKind,
    InboundResult,
    ProviderEvent,
    RecordKind,
    parse_message,
    receive,
    receive_event,
)
from nurture.inbound.classify import KINDS, Classification, Kind, classify, new_text_of, return_date_in
from nurture.inbound.verp import parse_recipient, reply_address, return_path

__all__ = [
    "FREEMAIL", "KINDS", "Classification", "EventKind", "InboundResult", "Kind", "ProviderEvent", "RecordKind",
    "classify", "new_text_of", "parse_message", "parse_recipient", "receive", "receive_event", "reply_address",
    "return_date_in", "return_path",
]
