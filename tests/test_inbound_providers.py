"""SNS and SendGrid signatures with keys and certificates the tests make; SES and SendGrid events."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from conftest import NOW
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from nurture.inbound.providers import (
    SignatureError,
    SnsVerifier,
    check_sns_url,
    sendgrid_events,
    sendgrid_public_key,
    ses_events,
    sns_string_to_sign,
    verify_sendgrid,
)

CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem"
TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-bounces"


class SnsSigner:
    """Plays Amazon SNS: a key, a certificate, and signed messages."""

    def __init__(self, *, not_before: datetime = NOW - timedelta(days=30),
                 not_after: datetime = NOW + timedelta(days=300)) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(not_before).not_valid_after(not_after)
                     .sign(self.key, hashes.SHA256()))
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM)
        self.fetched: list[str] = []

    async def fetch(self, url: str) -> bytes:
        self.fetched.append(url)
        return self.pem

    def sign(self, doc: dict[str, object], *, version: str = "2") -> dict[str, object]:
        doc = {**doc, "SignatureVersion": version, "SigningCertURL": doc.get("SigningCertURL", CERT_URL)}
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.key.sign(sns_string_to_sign(doc), padding.PKCS1v15(), algorithm)
        return {**doc, "Signature": base64.b64encode(signature).decode()}


def notification(message: object, *, message_id: str = "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
                 subject: str | None = None) -> dict[str, object]:
    doc: dict[str, object] = {
        "Type": "Notification", "MessageId": message_id, "TopicArn": TOPIC,
        "Message": message if isinstance(message, str) else json.dumps(message),
        "Timestamp": "2026-11-24T09:59:58.123Z",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x"}
    if subject is not None:
        doc["Subject"] = subject
    return doc


def ses_bounce(kind: str = "Permanent", *recipients: str) -> dict[str, object]:
    return {
        "notificationType": "Bounce",
        "bounce": {"bounceType": kind, "bounceSubType": "General", "timestamp": "2026-11-24T09:59:50.000Z",
                   "feedbackId": "0100018c-feedback",
                   "bouncedRecipients": [{"emailAddress": r, "action": "failed", "status": "5.1.1",
                                          "diagnosticCode": "smtp; 550 5.1.1 user unknown"}
                                         for r in recipients or ("gone@shop.example",)]},
        "mail": {"messageId": "0100018c-ses-id", "source": "bounces+abc@bounce.acme.example",
                 "commonHeaders": {"messageId": "<send-1.ec-payments@acme.example>"},
                 "headers": [{"name": "Message-ID", "value": "<send-1.ec-payments@acme.example>"}]},
    }


# -- SNS -----------------------------------------------------------------------------------------

def test_string_to_sign_follows_the_documented_field_order() -> None:
    doc = notification("hello\nworld", subject="Amazon SES Email Event Notification")
    assert sns_string_to_sign(doc) == (
        b"Message\nhello\nworld\nMessageId\n22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324\n"
        b"Subject\nAmazon SES Email Event Notification\nTimestamp\n2026-11-24T09:59:58.123Z\n"
        b"TopicArn\n" + TOPIC.encode() + b"\nType\nNotification\n")
    assert b"Subject" not in sns_string_to_sign(notification("x"))
    confirm = {"Type": "SubscriptionConfirmation", "MessageId": "m", "Token": "t", "TopicArn": TOPIC,
               "Message": "You have chosen to subscribe", "SubscribeURL": "https://sns.us-east-1.amazonaws.com/?x",
               "Timestamp": "2026-11-24T09:00:00Z"}
    assert sns_string_to_sign(confirm).decode().split("\n")[::2] == [
        "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type", ""]


@pytest.mark.parametrize("version", ["1", "2"])
async def test_a_signed_notification_verifies_with_either_signature_version(version: str) -> None:
    sns = SnsSigner()
    verifier = SnsVerifier(fetch=sns.fetch)
    doc = sns.sign(notification(ses_bounce(), subject="Bounce"), version=version)
    message = await verifier.verify(json.dumps(doc).encode(), now=NOW)
    assert message.type == "Notification" and message.topic_arn == TOPIC
    assert message.timestamp == datetime(2026, 11, 24, 9, 59, 58, 123000, tzinfo=UTC)
    await verifier.verify(json.dumps(doc).encode(), now=NOW)
    assert sns.fetched == [CERT_URL]  # cached


@pytest.mark.parametrize("change", [
    lambda d: d.update(Message=d["Message"].replace("gone@", "someone-else@")),
    lambda d: d.update(TopicArn="arn:aws:sns:us-east-1:999999999999:other"),
    lambda d: d.update(Subject="Not the subject that was signed"),
    lambda d: d.update(Type="SubscriptionConfirmation"),
    lambda d: d.update(SignatureVersion="1"),  # signed as 2
    lambda d: d.update(SignatureVersion="3"),
    lambda d: d.pop("Signature"),
    lambda d: d.update(Signature="not base64!"),
    lambda d: d.update(Signature=base64.b64encode(b"\0" * 256).decode()),
], ids=["message", "topic", "subject", "type", "version", "unknown-version", "unsigned", "garbage", "zeros"])
async def test_a_tampered_or_unsigned_message_is_refused(change) -> None:
    sns = SnsSigner()
    doc = sns.sign(notification(ses_bounce(), subject="Bounce"))
    change(doc)
    with pytest.raises(SignatureError):
        await SnsVerifier(fetch=sns.fetch).verify(json.dumps(doc).encode(), now=NOW)


async def test_a_message_signed_by_another_key_is_refused() -> None:
    real, forger = SnsSigner(), SnsSigner()
    doc = forger.sign(notification(ses_bounce()))
    with pytest.raises(SignatureError, match="does not verify"):
        await SnsVerifier(fetch=real.fetch).verify(json.dumps(doc).encode(), now=NOW)


@pytest.mark.parametrize("url", [
    "http://sns.us-east-1.amazonaws.com/cert.pem",
    "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem",
    "https://evil.example/sns.us-east-1.amazonaws.com/cert.pem",
    "https://sns.amazonaws.com/cert.pem",
    "https://s3.amazonaws.com/sns.us-east-1/cert.pem",
    "https://user@sns.us-east-1.amazonaws.com/cert.pem",
    "https://sns.us-east-1.amazonaws.com:8443/cert.pem",
    "https://sns.us-east-1.amazonaws.com@evil.example/cert.pem",
    "file:///etc/passwd",
])
async def test_the_certificate_is_fetched_only_from_amazon_sns(url: str) -> None:
    sns = SnsSigner()
    doc = sns.sign({**notification(ses_bounce()), "SigningCertURL": url})
    with pytest.raises(SignatureError, match="not an https URL of Amazon SNS"):
        await SnsVerifier(fetch=sns.fetch).verify(json.dumps(doc).encode(), now=NOW)
    assert sns.fetched == []


def test_sns_hosts_of_every_region_pass() -> None:
    for url in ("https://sns.eu-west-1.amazonaws.com/a.pem", "https://sns.cn-north-1.amazonaws.com.cn/a.pem",
                "https://SNS.ap-northeast-1.amazonaws.com/a.pem"):
        assert check_sns_url(url) == url


async def test_an_expired_certificate_is_refused() -> None:
    sns = SnsSigner(not_before=NOW - timedelta(days=400), not_after=NOW - timedelta(days=1))
    doc = sns.sign(notification(ses_bounce()))
    with pytest.raises(SignatureError, match="not valid now"):
        await SnsVerifier(fetch=sns.fetch).verify(json.dumps(doc).encode(), now=NOW)


async def test_not_json_is_refused() -> None:
    with pytest.raises(SignatureError):
        await SnsVerifier(fetch=SnsSigner().fetch).verify(b"\xff<xml/>", now=NOW)


# -- SES events ----------------------------------------------------------------------------------

async def verified(doc: dict[str, object]):
    sns = SnsSigner()
    return await SnsVerifier(fetch=sns.fetch).verify(json.dumps(sns.sign(doc)).encode(), now=NOW)


async def test_a_permanent_bounce_is_a_hard_bounce_per_recipient() -> None:
    events = ses_events(await verified(notification(ses_bounce("Permanent", "a@shop.example", "B@shop.example"))))
    assert [(e.provider, e.kind, e.recipient, e.status) for e in events] == [
        ("ses", "hard_bounce", "a@shop.example", "5.1.1"), ("ses", "hard_bounce", "B@shop.example", "5.1.1")]
    assert events[0].message_id == "<send-1.ec-payments@acme.example>"
    assert events[0].at == datetime(2026, 11, 24, 9, 59, 50, tzinfo=UTC)
    assert len({e.event_id for e in events}) == 2
    assert events[0].raw["mail"]["source"] == "bounces+abc@bounce.acme.example"  # type: ignore[index]


async def test_the_same_sns_message_gives_the_same_event_ids() -> None:
    doc = notification(ses_bounce())
    first, again = ses_events(await verified(doc)), ses_events(await verified(doc))
    assert [e.event_id for e in first] == [e.event_id for e in again]  # an SNS retry is one event


async def test_transient_undetermined_complaint_delivery_and_delay() -> None:
    [soft] = ses_events(await verified(notification(ses_bounce("Transient"))))
    [unknown] = ses_events(await verified(notification(ses_bounce("Undetermined"))))
    complaint = {"notificationType": "Complaint", "mail": {"messageId": "x"},
                 "complaint": {"complainedRecipients": [{"emailAddress": "angry@shop.example"}],
                               "timestamp": "2026-11-24T09:00:00Z", "complaintFeedbackType": "abuse"}}
    [c] = ses_events(await verified(notification(complaint)))
    delivery = {"eventType": "Delivery", "mail": {"messageId": "x"},
                "delivery": {"recipients": ["ok@shop.example"], "timestamp": "2026-11-24T09:00:01Z"}}
    [d] = ses_events(await verified(notification(delivery)))
    delay = {"eventType": "DeliveryDelay", "mail": {"messageId": "x"},
             "deliveryDelay": {"delayedRecipients": [{"emailAddress": "slow@shop.example", "status": "4.4.7"}],
                               "timestamp": "2026-11-24T09:00:02Z"}}
    [late] = ses_events(await verified(notification(delay)))
    assert (soft.kind, unknown.kind, c.kind, d.kind, late.kind) == (
        "soft_bounce", "unknown", "complaint", "delivered", "soft_bounce")
    assert c.recipient == "angry@shop.example" and c.message_id is None
    assert late.status == "4.4.7"


async def test_ses_noise_gives_no_events() -> None:
    for message in ("not json", {"eventType": "Open", "mail": {}}, [1, 2], {"notificationType": "Bounce"},
                    {"notificationType": "Bounce", "bounce": {"bouncedRecipients": [{"emailAddress": "no-at"}]}}):
        assert ses_events(await verified(notification(message))) == []


# -- SendGrid ------------------------------------------------------------------------------------

class SendGridSigner:
    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.public_der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

    def headers(self, body: bytes, *, at: datetime = NOW) -> dict[str, str]:
        ts = str(int(at.timestamp()))
        sig = self.key.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(sig).decode(),
                "X-Twilio-Email-Event-Webhook-Timestamp": ts}


SENDGRID_BODY = json.dumps([
    {"email": "gone@shop.example", "timestamp": 1795514390, "event": "bounce", "type": "bounce",
     "status": "5.1.1", "reason": "550 5.1.1 unknown", "sg_event_id": "ZmFrZS1ib3VuY2U",
     "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
     "smtp-id": "<send-1.ec-payments@acme.example>"},
    {"email": "full@shop.example", "timestamp": 1795514391, "event": "bounce", "type": "blocked",
     "status": "4.2.2", "sg_event_id": "ZmFrZS1ibG9ja2Vk"},
    {"email": "slow@shop.example", "timestamp": 1795514392, "event": "deferred", "sg_event_id": "ZmFrZS1kZWY"},
    {"email": "angry@shop.example", "timestamp": 1795514393, "event": "spamreport", "sg_event_id": "c3BhbQ"},
    {"email": "ok@shop.example", "timestamp": 1795514394, "event": "delivered", "sg_event_id": "ZGVs"},
    {"email": "ok@shop.example", "timestamp": 1795514395, "event": "open", "sg_event_id": "b3Blbg"},
    {"email": "ok@shop.example", "timestamp": 1795514396, "event": "click", "sg_event_id": "Y2xpY2s"},
    {"email": "x@shop.example", "timestamp": 1795514397, "event": "dropped", "reason": "Bounced Address",
     "sg_event_id": "ZHJvcA"},
], separators=(",", ":")).encode()


def test_a_signed_sendgrid_post_verifies() -> None:
    sg = SendGridSigner()
    h = sg.headers(SENDGRID_BODY)
    verify_sendgrid(key=sendgrid_public_key(sg.public_der), body=SENDGRID_BODY,
                    signature=h["X-Twilio-Email-Event-Webhook-Signature"],
                    timestamp=h["X-Twilio-Email-Event-Webhook-Timestamp"], now=NOW, tolerance=300)


@pytest.mark.parametrize("case", ["tampered", "unsigned", "no-timestamp", "other-key", "old", "future",
                                  "timestamp-changed", "garbage"])
def test_a_bad_sendgrid_signature_is_refused(case: str) -> None:
    sg = SendGridSigner()
    body, h = SENDGRID_BODY, sg.headers(SENDGRID_BODY)
    sig, ts = h["X-Twilio-Email-Event-Webhook-Signature"], h["X-Twilio-Email-Event-Webhook-Timestamp"]
    key = sendgrid_public_key(sg.public_der)
    if case == "tampered":
        body = body.replace(b"gone@shop.example", b"ceo@rival.example")
    elif case == "unsigned":
        sig = ""
    elif case == "no-timestamp":
        ts = ""
    elif case == "other-key":
        key = sendgrid_public_key(SendGridSigner().public_der)
    elif case == "old":
        o = sg.headers(body, at=NOW - timedelta(minutes=10))
        sig, ts = o["X-Twilio-Email-Event-Webhook-Signature"], o["X-Twilio-Email-Event-Webhook-Timestamp"]
    elif case == "future":
        o = sg.headers(body, at=NOW + timedelta(minutes=10))
        sig, ts = o["X-Twilio-Email-Event-Webhook-Signature"], o["X-Twilio-Email-Event-Webhook-Timestamp"]
    elif case == "timestamp-changed":
        ts = str(int(ts) + 1)
    elif case == "garbage":
        sig = "%%%"
    with pytest.raises(SignatureError):
        verify_sendgrid(key=key, body=body, signature=sig, timestamp=ts, now=NOW, tolerance=300)


def test_sendgrid_key_must_be_p256() -> None:
    other = ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(ValueError, match="P-256"):
        sendgrid_public_key(other)


def test_sendgrid_events_map_to_provider_events() -> None:
    events = sendgrid_events(SENDGRID_BODY, now=NOW)
    assert [(e.kind, e.recipient) for e in events] == [
        ("hard_bounce", "gone@shop.example"), ("soft_bounce", "full@shop.example"),
        ("soft_bounce", "slow@shop.example"), ("complaint", "angry@shop.example"),
        ("delivered", "ok@shop.example"), ("unknown", "x@shop.example")]  # open and click: not ours to count
    hard = events[0]
    assert hard.provider == "sendgrid" and hard.event_id == "ZmFrZS1ib3VuY2U"
    assert hard.message_id == "<send-1.ec-payments@acme.example>" and hard.status == "5.1.1"
    assert hard.at == datetime.fromtimestamp(1795514390, UTC)
    assert events[1].message_id is None


def test_sendgrid_garbage_gives_no_events_and_ids_are_stable_without_sg_event_id() -> None:
    assert sendgrid_events(b"{not json", now=NOW) == [] and sendgrid_events(b'{"a": 1}', now=NOW) == []
    assert sendgrid_events(b'[1, "x", {"event": "bounce"}]', now=NOW) == []
    body = b'[{"email": "a@shop.example", "event": "bounce"}]'
    [one], [two] = sendgrid_events(body, now=NOW), sendgrid_events(body, now=NOW)
    assert one.event_id == two.event_id and one.event_id.startswith("sha:") and one.at == NOW
