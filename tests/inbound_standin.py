"""A stand-in for the classifier's contract (``nurture.inbound.ProviderEvent``, ``receive``,
``receive_event``) until that package is on this branch: installed only where missing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import nurture.inbound as pkg

#: What the stand-in receive functions were given, in order.
CALLS: list[tuple[str, object]] = []


@dataclass(frozen=True)
class ProviderEvent:
    provider: str
    event_id: str
    kind: str
    recipient: str
    message_id: str | None
    status: str | None
    at: datetime
    raw: Mapping[str, object] = field(default_factory=dict)


def receive_event(store: object, event: ProviderEvent, *, settings: object, campaigns: object,
                  now: datetime) -> str:
    CALLS.append(("event", event))
    return "ok"


def receive(store: object, raw: bytes, *, settings: object, campaigns: object, now: datetime, source: str,
            envelope_recipients: tuple[str, ...] = (), dedupe_key: str | None = None) -> str:
    CALLS.append(("message", (raw, source, tuple(envelope_recipients), dedupe_key)))
    return "ok"


STANDING_IN = not hasattr(pkg, "receive_event")
if STANDING_IN:
    pkg.ProviderEvent = ProviderEvent  # type: ignore[attr-defined]
    pkg.receive_event = receive_event  # type: ignore[attr-defined]
    pkg.receive = receive  # type: ignore[attr-defined]
