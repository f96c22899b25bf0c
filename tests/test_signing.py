"""Tokens: round trips, and every kind of damage or forgery is a TokenError."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nurture.errors import TokenError
from nurture.signing import MAC_BYTES, Signer

KEYS = {"k1": b"first-secret", "k2": b"second-secret"}


@pytest.fixture
def signer() -> Signer:
    return Signer(KEYS, current="k2")


def _raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def _enc(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize("ids", [(0, 0), (1, 2), (127, 128), (16383, 16384), (2**40, 7), (2**63 - 1, 1)])
def test_round_trip_click(signer: Signer, ids: tuple[int, int]) -> None:
    token = signer.sign("click", *ids)
    assert signer.verify("click", token) == ids
    assert "=" not in token and "/" not in token and "+" not in token


@given(st.integers(0, 2**63 - 1))
def test_round_trip_unsubscribe_property(send_id: int) -> None:
    s = Signer(KEYS, current="k1")
    assert s.verify("unsubscribe", s.sign("unsubscribe", send_id)) == (send_id,)


def test_token_is_short_and_opaque(signer: Signer) -> None:
    token = signer.sign("click", 1_000_000, 1234)
    assert len(token) <= 32
    # layout: version, kid length, kid, varints, mac
    raw = _raw(token)
    assert raw[0] == 1 and raw[1] == 2 and raw[2:4] == b"k2"
    assert len(raw) == 4 + 3 + 2 + MAC_BYTES


def test_every_single_bit_flip_is_rejected(signer: Signer) -> None:
    token = signer.sign("click", 42, 7)
    raw = _raw(token)
    for i in range(len(raw) * 8):
        damaged = bytearray(raw)
        damaged[i // 8] ^= 1 << (i % 8)
        with pytest.raises(TokenError):
            signer.verify("click", _enc(bytes(damaged)))


def test_every_truncation_and_extension_is_rejected(signer: Signer) -> None:
    token = signer.sign("click", 42, 7)
    for n in range(len(token)):
        with pytest.raises(TokenError):
            signer.verify("click", token[:n])
    for extra in ("A", "AA", "AAAA", "x" * 200):
        with pytest.raises(TokenError):
            signer.verify("click", token + extra)


def test_other_namespace_is_rejected(signer: Signer) -> None:
    unsub = signer.sign("unsubscribe", 42)
    opened = signer.sign("open", 42)
    with pytest.raises(TokenError):
        signer.verify("open", unsub)
    with pytest.raises(TokenError):
        signer.verify("unsubscribe", opened)
    with pytest.raises(TokenError):
        signer.verify("click", unsub)


def test_other_key_is_rejected(signer: Signer) -> None:
    stranger = Signer({"k2": b"someone-else"}, current="k2")
    with pytest.raises(TokenError):
        signer.verify("click", stranger.sign("click", 1, 2))
    unknown_kid = Signer({"k9": b"first-secret"}, current="k9")
    with pytest.raises(TokenError):
        signer.verify("click", unknown_kid.sign("click", 1, 2))


@pytest.mark.parametrize("garbage", [
    "", "=", "====", "not a token", "AAAA", "////", "++++", "é" * 8, "A" * 129, "\x00" * 30,
    "AQJrMgECAAAAAAAAAAAAAAAA", None, 42, b"AQJrMg",
])
def test_garbage_is_token_error(signer: Signer, garbage: object) -> None:
    with pytest.raises(TokenError):
        signer.verify("click", garbage)  # type: ignore[arg-type]


@given(st.text(max_size=80))
def test_arbitrary_text_only_ever_raises_token_error(text: str) -> None:
    s = Signer(KEYS, current="k1")
    with pytest.raises(TokenError):
        s.verify("click", text)


def test_non_canonical_varint_with_valid_mac_is_rejected() -> None:
    # Even a correctly signed padded varint must not verify: one token per id tuple.
    import hashlib
    import hmac

    body = bytes([1, 2]) + b"k1" + bytes([0x81, 0x00]) + bytes([0x05])
    mac = hmac.new(KEYS["k1"], b"nurture-token\x00click\x00" + body, hashlib.sha256).digest()[:MAC_BYTES]
    with pytest.raises(TokenError):
        Signer(KEYS, current="k1").verify("click", _enc(body + mac))
    good = bytes([1, 2]) + b"k1" + bytes([0x01, 0x05])
    mac = hmac.new(KEYS["k1"], b"nurture-token\x00click\x00" + good, hashlib.sha256).digest()[:MAC_BYTES]
    assert Signer(KEYS, current="k1").verify("click", _enc(good + mac)) == (1, 5)


def test_key_rotation() -> None:
    old = Signer({"k1": b"first-secret"}, current="k1")
    old_token = old.sign("click", 5, 6)
    rotated = Signer(KEYS, current="k2")
    assert rotated.verify("click", old_token) == (5, 6)  # old key still verifies
    new_token = rotated.sign("click", 5, 6)
    assert _raw(new_token)[2:4] == b"k2" and new_token != old_token
    with pytest.raises(TokenError):
        old.verify("click", new_token)  # a signer without k2 cannot check new tokens
    retired = Signer({"k2": b"second-secret"}, current="k2")
    with pytest.raises(TokenError):
        retired.verify("click", old_token)  # dropping k1 retires its tokens


def test_arity_and_bad_ids() -> None:
    s = Signer(KEYS, current="k1")
    with pytest.raises(ValueError):
        s.sign("click", 1)
    with pytest.raises(ValueError):
        s.sign("open", -1)
    with pytest.raises(ValueError):
        s.sign("open", 2**63)
    with pytest.raises(ValueError):
        Signer(KEYS, current="nope")
    # other namespaces take any number of ids
    assert s.verify("custom", s.sign("custom", 1, 2, 3)) == (1, 2, 3)


def test_validly_signed_token_with_wrong_arity_is_rejected() -> None:
    import hashlib
    import hmac

    body = bytes([1, 2]) + b"k1" + bytes([0x07])  # one id where click needs two
    mac = hmac.new(KEYS["k1"], b"nurture-token\x00click\x00" + body, hashlib.sha256).digest()[:MAC_BYTES]
    with pytest.raises(TokenError):
        Signer(KEYS, current="k1").verify("click", _enc(body + mac))


def test_from_settings(settings) -> None:
    s = Signer.from_settings(settings.tracking)
    assert s.current == settings.tracking.current_key
    assert s.verify("open", s.sign("open", 9)) == (9,)


def test_keyed_digest_is_deterministic_per_key_and_namespace() -> None:
    a = Signer({"k1": b"one"}, current="k1")
    assert a.keyed_digest("message-id", b"x") == Signer({"k1": b"one"}, current="k1").keyed_digest("message-id", b"x")
    assert a.keyed_digest("message-id", b"x") != Signer({"k1": b"two"}, current="k1").keyed_digest("message-id", b"x")
    assert a.keyed_digest("message-id", b"x") != a.keyed_digest("other", b"x")
    assert len(a.keyed_digest("message-id", b"")) == 32
