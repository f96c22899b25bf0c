"""VERP addresses that identify the send: ``bounces+<token>@<bounce domain>`` as the envelope
sender (RFC 5321 ``MAIL FROM``, which becomes the ``Return-Path:`` a bounce goes to), and
``reply+<token>@<reply domain>`` as an optional ``Reply-To``.

The token is the send id signed in its own namespace (``bounce`` or ``reply``), so a bounce
token is worthless as a click or reply token, and nobody can make one for a send id of their
choosing. It is lowercase base32 because mail servers may fold the case of a local part.
"""

from __future__ import annotations

from typing import Literal

from nurture.errors import TokenError
from nurture.signing import Signer, tagged_address

Kind = Literal["bounce", "reply"]
KINDS: tuple[Kind, ...] = ("bounce", "reply")

__all__ = ["Kind", "parse_recipient", "reply_address", "return_path"]


def return_path(signer: Signer, send_id: int, *, address: str) -> str:
    """The envelope sender for send ``send_id``: ``address`` (``inbound.return_path``, e.g.
    ``bounces@bounce.acme.example``) with ``+<token>`` added to its local part."""
    return tagged_address(signer, "bounce", send_id, address=address)


def reply_address(signer: Signer, send_id: int, *, domain: str) -> str:
    """The Reply-To address for send ``send_id``: ``reply+<token>@<domain>``."""
    return tagged_address(signer, "reply", send_id, address=f"reply@{domain}")


def parse_recipient(signer: Signer, address: str) -> tuple[Kind, int] | None:
    """``("bounce", send id)`` or ``("reply", send id)`` for a genuine VERP address (any letter
    case, with or without angle brackets); None for anything else, forged tokens included.

    The kind is the namespace whose signature the token carries, whatever the local part
    before the ``+`` is (``bounces``, ``nurture-bounces``, …): the signature decides.
    """
    addr = address.strip().strip("<>").strip()
    local, at, _domain = addr.rpartition("@")
    if not at or "+" not in local:
        return None
    token = local.rpartition("+")[2]
    if not token:
        return None
    for kind in KINDS:
        try:
            (send_id,) = signer.verify_lower(kind, token)
        except (TokenError, ValueError):
            continue
        return kind, send_id
    return None
