"""VERP addresses: signed, lowercase-safe, one namespace per kind, forgeries refused."""

from __future__ import annotations

import pytest

from nurture.inbound import parse_recipient, reply_address, return_path
from nurture.signing import Signer

SIGNER = Signer({"k1": b"verp-test-secret"}, current="k1")


@pytest.mark.parametrize("send_id", [0, 1, 127, 128, 10**6, 2**40])
def test_round_trip_in_any_letter_case(send_id: int):
    address = return_path(SIGNER, send_id, address="bounces@Bounce.Acme.example")
    local, _, domain = address.partition("@")
    assert address == address.lower() and domain == "bounce.acme.example"
    assert len(local) <= 64  # RFC 5321 4.5.3.1.1
    for form in (address, address.upper(), f"<{address}>", f" {address.title()} "):
        assert parse_recipient(SIGNER, form) == ("bounce", send_id)
    assert parse_recipient(SIGNER, reply_address(SIGNER, send_id, domain="reply.acme.example")) == ("reply", send_id)


def test_the_local_part_before_the_plus_does_not_matter_the_signature_does():
    address = return_path(SIGNER, 42, address="nurture-bounces@b.example")
    assert parse_recipient(SIGNER, address.replace("nurture-bounces+", "anything+")) == ("bounce", 42)


def test_forgeries_and_other_namespaces_are_refused():
    good = return_path(SIGNER, 42, address="bounces@b.example")
    token = good.split("+")[1].split("@")[0]
    tampered = token[:-1] + ("a" if token[-1] != "a" else "b")
    other_key = return_path(Signer({"k1": b"another"}, current="k1"), 42, address="bounces@b.example")
    click = f"bounces+{SIGNER.sign_lower('click', 42, 1)}@b.example"
    for address in (f"bounces+{tampered}@b.example", other_key, click, "bounces@b.example", "bounces+@b.example",
                    "not an address", f"bounces+{token}x@b.example", f"bounces+{token}=@b.example", ""):
        assert parse_recipient(SIGNER, address) is None, address


def test_old_keys_still_verify_after_rotation():
    old = return_path(SIGNER, 7, address="bounces@b.example")
    rotated = Signer({"k1": b"verp-test-secret", "k2": b"new"}, current="k2")
    assert parse_recipient(rotated, old) == ("bounce", 7)
    assert return_path(rotated, 7, address="bounces@b.example") != old


def test_bad_return_path_setting_is_an_error():
    with pytest.raises(ValueError):
        return_path(SIGNER, 1, address="no-at-sign")
