"""nurture.dkim_sign: RSA-SHA256 and Ed25519-SHA256 signatures that dkimpy and Mail::DKIM
(Debian's libmail-dkim-perl, public keys served locally) both verify; oversigned headers."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import time
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from hypothesis import given
from hypothesis import strategies as st

from nurture.dkim_sign import DkimSigner, canonical_body, canonical_header, load_key
from nurture.errors import ConfigError
from nurture.render_mime import build_message

PERL_VERIFIER = Path(__file__).with_name("_dkim_verify.pl")
HAS_MAIL_DKIM = shutil.which("perl") is not None and subprocess.run(
    ["perl", "-MMail::DKIM::Verifier", "-e", "1"], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def keys() -> dict[str, bytes]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed_key = ed25519.Ed25519PrivateKey.generate()
    pem = serialization.Encoding.PEM
    pkcs8 = serialization.PrivateFormat.PKCS8
    none = serialization.NoEncryption()
    rsa_pub = rsa_key.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    ed_pub = ed_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"rsa": rsa_key.private_bytes(pem, pkcs8, none), "ed": ed_key.private_bytes(pem, pkcs8, none),
            "rsa_record": b"v=DKIM1; k=rsa; p=" + base64.b64encode(rsa_pub),
            "ed_record": b"v=DKIM1; k=ed25519; p=" + base64.b64encode(ed_pub)}


def records(keys: dict[str, bytes]) -> dict[bytes, bytes]:
    return {b"rsa1._domainkey.acme.example.": keys["rsa_record"],
            b"ed1._domainkey.acme.example.": keys["ed_record"]}


def message() -> bytes:
    headers = [("From", "Acme Payments <hello@acme.example>"), ("To", "Kim Lee <kim@shop.example>"),
               ("Subject", "決済をひとつに: How Shop 1 cut checkout drop-off by 23%"),
               ("Date", "Tue, 24 Nov 2026 10:00:00 +0000"), ("Message-ID", "<1.abc@acme.example>"),
               ("List-Unsubscribe", "<https://t.acme.example/u/abcdef>"),
               ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")]
    return build_message(headers=headers, text="Hello Kim,\n\nsee  the  case\t study.  \n\n\n",
                         html="<p>Hello   Kim</p>\n", seed="<1.abc@acme.example>")


def signer(keys: dict[str, bytes], *, ed: bool = True) -> DkimSigner:
    ks = [load_key("rsa1", keys["rsa"])] + ([load_key("ed1", keys["ed"])] if ed else [])
    return DkimSigner(domain="acme.example", keys=ks)


def dkimpy_results(raw: bytes, keys: dict[str, bytes]) -> list[bool]:
    recs = records(keys)
    n = len(re.findall(rb"^DKIM-Signature:", raw, re.M))
    out = []
    for i in range(n):
        try:
            out.append(bool(dkim.DKIM(raw).verify(idx=i, dnsfunc=lambda name, timeout=5: recs.get(name))))
        except dkim.ValidationError:  # e.g. "body hash mismatch"
            out.append(False)
    return out


def mail_dkim(raw: bytes, keys: dict[str, bytes]) -> str:
    args = [f"{k.decode().rstrip('.')}={v.decode()}" for k, v in records(keys).items()]
    out = subprocess.run(["perl", str(PERL_VERIFIER), *args], input=raw, capture_output=True, check=True)
    return out.stdout.decode()


def test_relaxed_canonicalisation_follows_rfc_6376() -> None:
    # RFC 6376 §3.4.6's example
    assert canonical_header(b"A", b" X\r\n") == b"a:X\r\n"
    assert canonical_header(b"B ", b" Y\t\r\n\tZ  ") == b"b:Y Z\r\n"
    assert canonical_body(b" C \r\nD \t E\r\n\r\n\r\n") == b" C\r\nD E\r\n"
    assert canonical_body(b"") == b"" and canonical_body(b"\r\n\r\n") == b""
    assert canonical_body(b"no newline  ") == b"no newline\r\n"


@given(st.lists(st.sampled_from([b"a", b"b", b" ", b"  ", b"\t", b"\r\n", b"=", b"<td>"]), max_size=60))
def test_the_fast_body_canonicalisation_is_the_rfc_s(pieces: list[bytes]) -> None:
    # The RFC 6376 §3.4.4 rules applied literally: the fast path (spaces only) must agree.
    body = b"".join(pieces)
    expected = body if not body or body.endswith(b"\r\n") else body + b"\r\n"
    expected = re.sub(rb"[ \t]+\r\n", b"\r\n", re.sub(rb"[ \t]+", b" ", expected))
    expected = re.sub(rb"(\r\n)+$", b"\r\n", expected)
    if expected == b"\r\n":
        expected = b""
    assert canonical_body(body) == expected


def test_both_signatures_verify_in_dkimpy(keys: dict[str, bytes]) -> None:
    raw = signer(keys).sign(message())
    assert raw.startswith(b"DKIM-Signature: v=1; a=ed25519-sha256;")
    assert dkimpy_results(raw, keys) == [True, True]
    assert signer(keys).sign(message()) == raw  # deterministic: a re-render gives the same bytes


def test_every_header_is_signed_once_and_the_key_ones_are_oversigned(keys: dict[str, bytes]) -> None:
    raw = signer(keys, ed=False).sign(message())
    sig = raw.split(b"\r\n\r\n")[0].decode()
    h = re.search(r"h=([^;]+);", sig).group(1)
    names = [n.strip() for n in re.sub(r"\s+", "", h).split(":")]
    assert names == ["from", "from", "to", "subject", "subject", "date", "message-id", "list-unsubscribe",
                     "list-unsubscribe", "list-unsubscribe-post", "list-unsubscribe-post", "mime-version",
                     "content-type"]
    assert max(len(line) for line in sig.split("\r\n")) <= 78


@pytest.mark.parametrize("added", [b"From: Mallory <boss@acme.example>\r\n", b"Subject: Urgent: pay now\r\n",
                                   b"List-Unsubscribe: <https://evil.example/u>\r\n"])
def test_a_second_copy_of_an_oversigned_header_breaks_both_signatures(keys: dict[str, bytes], added: bytes) -> None:
    raw = signer(keys).sign(message())
    tampered = raw.replace(b"MIME-Version:", added + b"MIME-Version:", 1)
    assert dkimpy_results(tampered, keys) == [False, False]


def test_a_changed_body_breaks_it(keys: dict[str, bytes]) -> None:
    raw = signer(keys).sign(message())
    assert dkimpy_results(raw.replace(b"Hello Kim", b"Hello Bob", 1), keys) == [False, False]


@pytest.mark.skipif(not HAS_MAIL_DKIM, reason="Mail::DKIM (libmail-dkim-perl) is not installed")
def test_mail_dkim_verifies_rsa_and_fails_a_second_from(keys: dict[str, bytes]) -> None:
    raw = signer(keys, ed=False).sign(message())
    out = mail_dkim(raw, keys)
    assert "result: pass" in out and "signature: rsa-sha256 s=rsa1 pass" in out
    tampered = raw.replace(b"MIME-Version:", b"From: Mallory <boss@acme.example>\r\nMIME-Version:", 1)
    out = mail_dkim(tampered, keys)
    assert "result: fail" in out and "signature: rsa-sha256 s=rsa1 fail" in out


@pytest.mark.skipif(not HAS_MAIL_DKIM, reason="Mail::DKIM (libmail-dkim-perl) is not installed")
def test_mail_dkim_passes_the_pair_whether_or_not_it_knows_ed25519(keys: dict[str, bytes]) -> None:
    # Debian 12's Mail::DKIM (1.20230212) predates Ed25519: a receiver like it skips that
    # signature and passes the message on the RSA one, which is why both are sent.
    out = mail_dkim(signer(keys).sign(message()), keys)
    assert "result: pass" in out and "signature: rsa-sha256 s=rsa1 pass" in out
    assert ("signature: ed25519-sha256 s=ed1 pass" in out
            or "signature: ed25519-sha256 s=ed1 invalid (unsupported algorithm ed25519-sha256)" in out)


def test_unusable_keys_are_config_errors(keys: dict[str, bytes]) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_key("s", b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    small = subprocess.run(["openssl", "genrsa", "512"], check=True, capture_output=True).stdout
    with pytest.raises(ConfigError, match="1024 bits"):
        load_key("s", small)


def test_signing_costs_well_under_a_millisecond_of_cpu(keys: dict[str, bytes]) -> None:
    s, msg = signer(keys, ed=False), message()
    s.sign(msg)
    t0 = time.process_time()
    for _ in range(200):
        s.sign(msg)
    per = (time.process_time() - t0) / 200
    assert per < 0.003, per  # generous for a shared machine; bench/send.py --dkim measures it
