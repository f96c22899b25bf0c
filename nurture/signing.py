"""Signed, opaque tracking tokens: ``/c/<token>``, ``/u/<token>``, ``/o/<token>.gif``.

A token carries only small integers (send id, link id) and the id of the key that signed
it, followed by a truncated HMAC-SHA256. Never a URL, never an address: the tracker looks
the destination up in the links table, so a token cannot point anywhere else.

Byte layout (before urlsafe base64 without padding)::

    version   1 byte   0x01
    kid_len   1 byte   1..16
    kid       kid_len bytes of ASCII (the key id, e.g. b"k1")
    ids       each id an unsigned LEB128 varint, canonical (shortest) encoding
    mac       12 bytes: HMAC-SHA256(key, b"nurture-token\\x00" + namespace + b"\\x00" + all of the above)[:12]

The namespace (``click``, ``unsubscribe``, ``open``, and ``bounce`` / ``reply`` for the VERP
addresses of :mod:`nurture.inbound.verp`) is inside the MAC but not in the token, so a click
token is worthless as an unsubscribe token. Tokens that go into an email address
(:meth:`Signer.sign_lower`) are the same bytes in lowercase base32 without padding, because
mail servers may fold the case of a local part. Every key in the key ring verifies;
only the current one signs, which is how keys rotate.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from typing import TYPE_CHECKING

from nurture.errors import TokenError

if TYPE_CHECKING:  # pragma: no cover
    from nurture.config import TrackingSettings

VERSION = 1
MAC_BYTES = 12
MAX_KID = 16
MAX_ID = (1 << 63) - 1
#: How many ids each known namespace carries.
ARITY: Mapping[str, int] = {"click": 2, "unsubscribe": 1, "open": 1, "bounce": 1, "reply": 1}
_MAX_TOKEN_CHARS = 128
_B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64_CHARS = frozenset(_B64_ALPHABET)
_B64_INDEX = {c: i for i, c in enumerate(_B64_ALPHABET)}


class Signer:
    """Signs and verifies tokens with a key ring ``{key id: secret}``.

    ``current`` names the key that signs new tokens; every key in ``keys`` verifies.
    """

    def __init__(self, keys: Mapping[str, bytes], *, current: str) -> None:
        if current not in keys:
            raise ValueError(f"current key {current!r} is not in the key ring")
        self._macs: dict[bytes, hmac.HMAC] = {}
        for kid, secret in keys.items():
            raw = kid.encode("ascii")
            if not 1 <= len(raw) <= MAX_KID:
                raise ValueError(f"key id {kid!r} must be 1-{MAX_KID} ASCII characters")
            if not secret:
                raise ValueError(f"key {kid!r} is empty")
            self._macs[raw] = hmac.new(bytes(secret), digestmod=hashlib.sha256)
        self._states: dict[tuple[bytes, str], hmac.HMAC] = {}
        self._current = current.encode("ascii")
        self._prefix = bytes([VERSION, len(self._current)]) + self._current

    @classmethod
    def from_settings(cls, tracking: TrackingSettings) -> Signer:
        """The key ring from ``settings.tracking`` (``keys`` and ``current_key``)."""
        return cls(tracking.keys, current=tracking.current_key)

    @property
    def current(self) -> str:
        return self._current.decode("ascii")

    def sign(self, namespace: str, *ids: int) -> str:
        """A token for ``ids`` in ``namespace``, signed with the current key."""
        return base64.urlsafe_b64encode(self._signed(namespace, ids)).rstrip(b"=").decode("ascii")

    def sign_lower(self, namespace: str, *ids: int) -> str:
        """Like :meth:`sign`, as lowercase base32 (letters and digits 2-7): safe in the local
        part of an address, whose case a mail server may change."""
        return base64.b32encode(self._signed(namespace, ids)).rstrip(b"=").decode("ascii").lower()

    def verify_lower(self, namespace: str, token: str) -> tuple[int, ...]:
        """The ids inside a :meth:`sign_lower` token (in any letter case); :class:`TokenError`
        if it is not genuine for ``namespace``."""
        return self._verified(namespace, _decode_b32(token))

    def keyed_digest(self, namespace: str, data: bytes) -> bytes:
        """HMAC-SHA256 of ``data`` in ``namespace`` with the current key: deterministic for
        whoever holds the key, unpredictable for everyone else (e.g. our Message-IDs)."""
        h = self._macs[self._current].copy()
        h.update(b"nurture-digest\x00" + namespace.encode("utf-8") + b"\x00" + data)
        return h.digest()

    def _signed(self, namespace: str, ids: tuple[int, ...]) -> bytes:
        expected = ARITY.get(namespace)
        if expected is not None and len(ids) != expected:
            raise ValueError(f"namespace {namespace!r} takes {expected} ids, not {len(ids)}")
        body = bytearray(self._prefix)
        for i in ids:
            if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i <= MAX_ID:
                raise ValueError(f"token ids must be integers in 0..2**63-1, not {i!r}")
            _put_varint(body, i)
        body += self._mac(self._current, namespace, body)
        return bytes(body)

    def verify(self, namespace: str, token: str) -> tuple[int, ...]:
        """The ids inside ``token``; :class:`TokenError` if it is not genuine for ``namespace``."""
        return self._verified(namespace, _decode(token))

    def _verified(self, namespace: str, raw: bytes) -> tuple[int, ...]:
        if len(raw) < 2 + 1 + MAC_BYTES or raw[0] != VERSION:
            raise TokenError("malformed token")
        kid_len = raw[1]
        if not 1 <= kid_len <= MAX_KID or len(raw) < 2 + kid_len + MAC_BYTES:
            raise TokenError("malformed token")
        kid = raw[2 : 2 + kid_len]
        if kid not in self._macs:
            raise TokenError("token signed with an unknown key")
        body, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(kid, namespace, body)):
            raise TokenError("bad token signature")
        ids = _read_varints(body, 2 + kid_len)
        expected = ARITY.get(namespace)
        if expected is not None and len(ids) != expected:
            raise TokenError("malformed token")
        return ids

    def _mac(self, kid: bytes, namespace: str, body: bytes | bytearray) -> bytes:
        # The key and namespace prefix are hashed once; each token only adds its body.
        state = self._states.get((kid, namespace))
        if state is None:
            state = self._macs[kid].copy()
            state.update(b"nurture-token\x00" + namespace.encode("utf-8") + b"\x00")
            if len(self._states) < 64:
                self._states[(kid, namespace)] = state
        h = state.copy()
        h.update(body)
        return h.digest()[:MAC_BYTES]


def _decode(token: object) -> bytes:
    if not isinstance(token, str) or not 0 < len(token) <= _MAX_TOKEN_CHARS:
        raise TokenError("malformed token")
    if not _B64_CHARS.issuperset(token) or len(token) % 4 == 1:
        raise TokenError("malformed token")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise TokenError("malformed token") from None
    # Reject non-canonical encodings (stray low bits in the last character): its unused low
    # bits (4 after 2 characters of a group, 2 after 3) must be zero.
    tail = len(token) % 4
    if tail and _B64_INDEX[token[-1]] & (0x0F if tail == 2 else 0x03):
        raise TokenError("malformed token")
    return raw


_B32_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz234567")


def _decode_b32(token: object) -> bytes:
    if not isinstance(token, str) or not 0 < len(token) <= _MAX_TOKEN_CHARS:
        raise TokenError("malformed token")
    low = token.lower()
    if not _B32_CHARS.issuperset(low) or len(low) % 8 in (1, 3, 6):
        raise TokenError("malformed token")
    try:
        raw = base64.b32decode(low.upper() + "=" * (-len(low) % 8))
    except (binascii.Error, ValueError):
        raise TokenError("malformed token") from None
    # Canonical only: re-encoding must give the same characters (no stray low bits).
    if base64.b32encode(raw).rstrip(b"=").decode("ascii").lower() != low:
        raise TokenError("malformed token")
    return raw


def _put_varint(out: bytearray, n: int) -> None:
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


def _read_varints(body: bytes, start: int) -> tuple[int, ...]:
    ids: list[int] = []
    n = shift = 0
    pos = start
    if pos >= len(body):
        raise TokenError("malformed token")
    while pos < len(body):
        byte = body[pos]
        pos += 1
        n |= (byte & 0x7F) << shift
        shift += 7
        if byte & 0x80:
            if shift >= 63 + 7:
                raise TokenError("malformed token")
            continue
        # A final zero byte after other bytes is a non-canonical (padded) encoding.
        if byte == 0 and shift > 7:
            raise TokenError("malformed token")
        if n > MAX_ID:
            raise TokenError("malformed token")
        ids.append(n)
        n = shift = 0
    if shift:
        raise TokenError("malformed token")
    return tuple(ids)


def tagged_address(signer: Signer, namespace: str, send_id: int, *, address: str) -> str:
    """``local+<token>@domain`` for ``address`` = ``local@domain``: the token is ``send_id``
    signed in ``namespace`` (lowercase, see :meth:`Signer.sign_lower`). The VERP return
    paths and reply addresses of :mod:`nurture.inbound.verp` are made here, so rendering
    needs nothing above this module."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"{address!r} is not an address such as bounces@bounce.acme.example")
    return f"{local}+{signer.sign_lower(namespace, send_id)}@{domain.lower()}"
