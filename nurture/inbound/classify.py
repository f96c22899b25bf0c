"""What a message that came back is: a bounce, a complaint, an automatic reply, an unsubscribe
request, a person's reply, or unknown. Pure functions over :class:`email.message.EmailMessage`:
no I/O, no clock (the year of a return date comes from the message's ``Date``), and never an
exception for a malformed message (it is ``unknown``, with the reason).

The order of the checks, first match wins:

1. delivery status notifications: RFC 3464 ``multipart/report; report-type=delivery-status``
   (any ``message/delivery-status`` part), then the common non-standard bounce texts (qmail's
   "failure notice", Exim's and Sendmail's transcripts) sent by a ``MAILER-DAEMON``;
   ``Action: failed`` with a 5.x.x status (RFC 3463) is a hard bounce, except the codes that
   say nothing about the address (5.7.x policy, 5.2.2 mailbox full, 5.3.4 / 5.2.3 too big),
   which are soft like 4.x.x and ``Action: delayed``;
2. feedback reports: RFC 5965 ``multipart/report; report-type=feedback-report`` (ARF) with
   ``Feedback-Type: abuse`` / ``fraud`` / ``virus`` / ``other`` → complaint;
3. automatic replies: RFC 3834 ``Auto-Submitted`` (anything but ``no``), ``X-Autoreply``,
   ``X-Autorespond``, ``Precedence: auto_reply`` / ``bulk`` / ``junk`` / ``list``, Exchange's
   ``X-Auto-Response-Suppress`` with an automatic subject, subjects such as "Automatic reply",
   "Out of Office", 「自動返信」「不在」; an out-of-office's return date in English or Japanese;
4. anything else is written by a person: its new text (quoted history stripped) is an
   unsubscribe request when that is all it says, else a reply.
"""

from __future__ import annotations

import contextlib
import functools
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from email.message import EmailMessage, Message
from email.utils import getaddresses, parseaddr, parsedate_to_datetime
from typing import Literal, Protocol

Kind = Literal["hard_bounce", "soft_bounce", "complaint", "auto_reply", "unsubscribe", "reply", "unknown"]
KINDS: tuple[Kind, ...] = ("hard_bounce", "soft_bounce", "complaint", "auto_reply", "unsubscribe", "reply",
                           "unknown")

__all__ = ["KINDS", "Classification", "Kind", "classify", "new_text_of", "return_date_in"]

#: Characters of body text looked at (quoted history and bounce transcripts are cut here).
MAX_TEXT = 20_000
#: A return date further ahead than this is not believed.
MAX_RETURN = timedelta(days=366)


@dataclass(frozen=True, slots=True)
class Classification:
    """What a message is, and what in it identifies the send it answers.

    ``recipient`` is the failed or complaining address (bounces, complaints); ``status`` the
    RFC 3463 code; ``return_date`` an out-of-office's return date; ``new_text`` a person's new
    text without the quoted history; ``message_ids`` the Message-IDs it refers to (In-Reply-To,
    References, and the original message's inside a DSN or ARF report); ``verp_recipients``
    the plus-addressed addresses it was sent to (candidates: only a valid token counts).
    """

    kind: Kind
    recipient: str | None = None
    status: str | None = None
    return_date: date | None = None
    new_text: str = ""
    reasons: tuple[str, ...] = ()
    message_ids: tuple[str, ...] = ()
    verp_recipients: tuple[str, ...] = ()
    #: An automatic reply that says its author is away (it pauses, it never raises a task).
    out_of_office: bool = False
    #: The report's diagnostic (``Diagnostic-Code``) or ``Feedback-Type``, for the record.
    diagnostic: str | None = None
    subject: str = ""
    sender: str | None = None


def classify(message: EmailMessage, *, today: date | None = None) -> Classification:
    """Classify one message. ``today`` is the fallback reference for return dates when the
    message has no usable ``Date`` header (without either, a return date without a year is
    not guessed)."""
    try:
        return _classify(message, today)
    except Exception as e:  # noqa: BLE001 - hostile input must never break the pipe transport
        return Classification("unknown", reasons=(f"cannot be read: {type(e).__name__}: {str(e)[:200]}",))


def _classify(msg: EmailMessage, today: date | None) -> Classification:
    subject = _header(msg, "Subject")
    sender = _address(_header(msg, "From"))
    common = Classification("unknown", subject=subject[:300], sender=sender,
                            verp_recipients=_verp_candidates(msg), message_ids=_referenced_ids(msg))

    report = _report_type(msg)
    if report == "delivery-status" or _find_part(msg, "message/delivery-status") is not None:
        return _dsn(msg, common)
    if report == "feedback-report" or _find_part(msg, "message/feedback-report") is not None:
        return _arf(msg, common)
    if _looks_like_bounce(msg, sender, subject):
        return _text_bounce(msg, common)

    auto = _auto_reasons(msg, subject)
    text = _body_text(msg)
    if auto:
        ooo = _is_out_of_office(subject, text)
        reasons = list(auto)
        returns = None
        if ooo:
            reasons.append("out of office")
            returns = return_date_in(f"{subject}\n{text}", reference=_date_of(msg) or today)
            reasons.append(f"back on {returns.isoformat()}" if returns else "no return date found")
        return replace(common, kind="auto_reply", return_date=returns, out_of_office=ooo, reasons=tuple(reasons),
                       new_text=new_text_of(text)[:2000])

    new = new_text_of(text)
    if not new:
        return replace(common, reasons=("no new text (empty, or only quoted history)",))
    if is_unsubscribe_request(new):
        return replace(common, kind="unsubscribe", new_text=new, reasons=("asks to be removed",))
    return replace(common, kind="reply", new_text=new, reasons=("written by a person",))


# -- delivery status notifications (RFC 3464) --------------------------------------------------

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
#: 5.x.x codes that say nothing about the address: not a reason to suppress it at once.
_SOFT_PERMANENT = ("5.7.", "5.2.2", "5.2.3", "5.3.4")


def _dsn(msg: EmailMessage, common: Classification) -> Classification:
    part = _find_part(msg, "message/delivery-status")
    reasons = ["delivery status notification (RFC 3464)"]
    blocks = _status_blocks(part) if part is not None else []
    # The per-recipient blocks follow the per-message one; the worst recipient decides.
    recipients = [b for b in blocks if "final-recipient" in b or "action" in b]
    if not recipients:
        return _text_bounce(msg, common, reasons=reasons + ["no recipient fields"])
    rank = {"failed": 0, "delayed": 1}
    worst = min(recipients, key=lambda b: rank.get(b.get("action", "").lower(), 2))
    action = worst.get("action", "").lower()
    status_m = _STATUS.search(worst.get("status", ""))
    status = ".".join(status_m.groups()) if status_m else None
    recipient = _typed_address(worst.get("original-recipient")) or _typed_address(worst.get("final-recipient"))
    diagnostic = worst.get("diagnostic-code")
    reasons.append(f"Action: {action or '(none)'}")
    if status:
        reasons.append(f"Status: {status}")
    # Exim reports every remote refusal as 5.0.0 / 4.0.0; the remote's own code is in the diagnostic.
    detail = _STATUS.search(diagnostic or "") if status and status.endswith(".0.0") else None
    if status and detail and detail.group(1) == status[0] and not detail.group(0).endswith(".0.0"):
        status = ".".join(detail.groups())
        reasons.append(f"{status} from the Diagnostic-Code (the Status is generic)")
    if diagnostic:
        reasons.append(f"Diagnostic-Code: {_clip(diagnostic)}")
    ids = tuple(dict.fromkeys([*_original_ids(msg), *common.message_ids]))
    kind = _bounce_kind(action, status, diagnostic)
    if kind == "unknown":
        reasons.append(f"the report says {action or 'nothing'}: no failure")
    elif status and kind == "soft_bounce" and status.startswith("5."):
        reasons.append(f"{status} is about the message or the sender, not the address")
    if len(recipients) > 1:
        reasons.append(f"{len(recipients)} recipients in the report; the worst counts")
    return replace(common, kind=kind, recipient=recipient, status=status, diagnostic=diagnostic,
                   reasons=tuple(reasons), message_ids=ids)


def _bounce_kind(action: str, status: str | None, diagnostic: str | None) -> Kind:
    if action in ("delivered", "relayed", "expanded"):
        return "unknown"
    if action == "delayed" or (status or "").startswith("4."):
        return "soft_bounce"
    if status is None and diagnostic:
        m = re.search(r"\b([245])\d\d\b", diagnostic)
        status = f"{m.group(1)}.0.0" if m else None
    if status is None:
        return "soft_bounce" if action != "failed" else "hard_bounce"
    if status.startswith("5."):
        return "soft_bounce" if status.startswith(_SOFT_PERMANENT) else "hard_bounce"
    return "soft_bounce"


def _status_blocks(part: Message) -> list[dict[str, str]]:
    """The field blocks of a ``message/delivery-status`` part, field names lower-cased."""
    blocks: list[dict[str, str]] = []
    payload = part.get_payload()
    if isinstance(payload, list):  # the email package parses each block as a header set
        for block in payload:
            if isinstance(block, Message):
                blocks.append({k.lower(): _unfold(str(v)) for k, v in _items(block)})
        if blocks:
            return blocks
    raw = part.get_payload(decode=True)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload)
    for chunk in re.split(r"\r?\n\s*\r?\n", text):
        fields: dict[str, str] = {}
        last = None
        for line in chunk.splitlines():
            if line[:1] in (" ", "\t") and last:
                fields[last] += " " + line.strip()
                continue
            name, sep, value = line.partition(":")
            if sep and name.strip():
                last = name.strip().lower()
                fields[last] = value.strip()
        if fields:
            blocks.append(fields)
    return blocks


def _typed_address(value: str | None) -> str | None:
    """``rfc822; gone@shop.example`` → ``gone@shop.example``."""
    if not value:
        return None
    addr = value.partition(";")[2] if ";" in value else value
    addr = addr.strip().strip("<>").strip()
    return addr.lower() if "@" in addr else None


# -- non-standard bounces ------------------------------------------------------------------------

_DAEMON = re.compile(r"^(mailer-daemon|postmaster|mail-daemon|mailerdaemon)@", re.I)
_BOUNCE_SUBJECT = re.compile(
    r"(undeliver|undelivered mail|delivery status notification|delivery (has )?failed|failure notice"
    r"|returned mail|mail delivery (failed|failure|subsystem)|returning message to sender"
    r"|delivery failure|could not be delivered|non[- ]?delivery|配信不能|配送失敗|送信できませんでした"
    r"|warning: could not send message|delayed mail|delivery delayed)", re.I)


def _looks_like_bounce(msg: EmailMessage, sender: str | None, subject: str) -> bool:
    if sender and _DAEMON.match(sender):
        return True
    if _header(msg, "X-Failed-Recipients"):
        return True
    return bool(_BOUNCE_SUBJECT.search(subject)) and not _header(msg, "In-Reply-To")


def _text_bounce(msg: EmailMessage, common: Classification, *, reasons: list[str] | None = None) -> Classification:
    reasons = list(reasons or []) + ["a bounce in plain text (no RFC 3464 report)"]
    text = _all_text(msg)[:MAX_TEXT]
    failed = _header(msg, "X-Failed-Recipients")
    recipient = _address(failed.split(",")[0]) if failed else None
    if recipient is None:
        # qmail: "<gone@shop.example>:" on a line of its own; Exim: the address indented.
        m = re.search(r"^\s*<?([^\s<>@:]+@[^\s<>@:]+?)>?:?\s*$", text, re.M)
        recipient = m.group(1).lower() if m else None
    if recipient:
        reasons.append(f"failed recipient {recipient}")
    status_m = _STATUS.search(text)
    status = ".".join(status_m.groups()) if status_m else None
    code_m = re.search(r"\b([45]\d\d)[ -]", text)
    delayed = bool(re.search(r"\b(delayed|will (continue|keep) trying|not yet been delivered|retry)\b", text, re.I))
    if status:
        reasons.append(f"status {status} in the text")
    elif code_m:
        reasons.append(f"SMTP code {code_m.group(1)} in the text")
    if status is None and code_m:
        status_guess: str | None = f"{code_m.group(1)[0]}.0.0"
    else:
        status_guess = status
    ids = tuple(dict.fromkeys([*_original_ids(msg), *common.message_ids]))
    if status_guess is None and not delayed and recipient is None:
        return replace(common, reasons=(*reasons, "no status code and no recipient found"), message_ids=ids)
    kind = _bounce_kind("delayed" if delayed and not (status_guess or "").startswith("5.") else "failed",
                        status_guess, None)
    return replace(common, kind=kind, recipient=recipient, status=status, reasons=tuple(reasons), message_ids=ids)


# -- feedback reports (RFC 5965 ARF) ------------------------------------------------------------

_COMPLAINT_TYPES = ("abuse", "fraud", "virus", "other")


def _arf(msg: EmailMessage, common: Classification) -> Classification:
    part = _find_part(msg, "message/feedback-report")
    fields = _status_blocks(part)[0] if part is not None and _status_blocks(part) else {}
    ftype = fields.get("feedback-type", "").lower().strip()
    reasons = ["feedback report (RFC 5965 ARF)", f"Feedback-Type: {ftype or '(none)'}"]
    original = _original_headers(msg)
    recipient = _address(fields.get("original-rcpt-to", "")) or (
        _address(_header(original, "To")) if original is not None else None)
    if fields.get("user-agent"):
        reasons.append(f"from {_clip(fields['user-agent'], 80)}")
    if recipient:
        reasons.append(f"about {recipient}")
    ids = tuple(dict.fromkeys([*_original_ids(msg), *common.message_ids]))
    verp = common.verp_recipients
    if original is not None:  # the original's Return-Path carries our VERP token
        verp = tuple(dict.fromkeys([*verp, *_verp_in(original, ("Return-Path", "To"))]))
    kind: Kind = "complaint" if ftype in _COMPLAINT_TYPES else "unknown"
    if kind == "unknown":
        reasons.append(f'"{ftype or "no type"}" is not a complaint')
    return replace(common, kind=kind, recipient=recipient, diagnostic=ftype or None, reasons=tuple(reasons),
                   message_ids=ids, verp_recipients=verp)


# -- automatic replies (RFC 3834) ---------------------------------------------------------------

_AUTO_SUBJECT = re.compile(
    r"^\s*(automatic reply|auto[- ]?reply|autoreply|auto[- ]?response|out of (the )?office|ooo\b|away from"
    r"|on vacation|vacation reply|abwesenheit|réponse automatique|respuesta automática|risposta automatica"
    r"|自動返信|自動応答|不在|休暇)", re.I)
_OOO = re.compile(
    r"(out of (the )?office|\booo\b|away from (the |my )?(office|desk|email)|on (vacation|holiday|leave|annual leave)"
    r"|on parental leave|annual leave|limited access to (my )?e-?mail|abwesenheit|vacances|不在|休暇|出張|休業|留守)",
    re.I)


def _auto_reasons(msg: EmailMessage, subject: str) -> list[str]:
    reasons = []
    auto = _header(msg, "Auto-Submitted").strip().lower()
    if auto and auto.split(";")[0].strip() != "no":
        reasons.append(f"Auto-Submitted: {auto} (RFC 3834)")
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-Autogenerated"):
        if _header(msg, name):
            reasons.append(f"{name} header")
    precedence = _header(msg, "Precedence").strip().lower()
    if precedence in ("auto_reply", "bulk", "junk", "list"):
        reasons.append(f"Precedence: {precedence}")
    if _header(msg, "X-Auto-Response-Suppress") and _AUTO_SUBJECT.search(subject):
        reasons.append("Exchange automatic reply")
    if _AUTO_SUBJECT.search(subject):
        reasons.append(f"subject says automatic: {_clip(subject, 60)}")
    if _header(msg, "List-Id"):
        reasons.append("mailing-list mail (List-Id)")
    return reasons


def _is_out_of_office(subject: str, text: str) -> bool:
    return bool(_OOO.search(subject) or _OOO.search(text[:3000]))


_MONTHS = {m: i + 1 for i, names in enumerate((
    "january jan", "february feb", "march mar", "april apr", "may", "june jun", "july jul",
    "august aug", "september sep sept", "october oct", "november nov", "december dec")) for m in names.split()}
_MONTH = r"(january|february|march|april|may|june|july|august|september|october|november|december" \
         r"|jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec)\.?"
_WEEKDAY = r"(?:(?:mon|tues?|wed(?:nes)?|thu(?:rs)?|fri|sat(?:ur)?|sun)(?:day)?\.?,?\s+)?"
_LEAD = r"(?:back|return(?:ing)?|returns|in the office|in office|available|reachable|until|till|through)" \
        r"(?:\s+(?:to\s+the\s+office|to\s+work|in\s+the\s+office))?\s+(?:on\s+|from\s+|by\s+|again\s+on\s+)?"
_EN_DMY = re.compile(_LEAD + _WEEKDAY + r"(?:the\s+)?(\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?" + _MONTH
                     + r"(?:,?\s+(\d{4}))?", re.I)
_EN_MDY = re.compile(_LEAD + _WEEKDAY + _MONTH + r"\s+(\d{1,2})(?:st|nd|rd|th)?(?:,?\s+(\d{4}))?", re.I)
_ISO = re.compile(_LEAD + r"(\d{4})-(\d{2})-(\d{2})", re.I)
# After NFKC: 12月14日(月)まで, 2026年12月14日より, 12/14まで.
_JA = re.compile(r"(?:(\d{4})\s*年\s*)?(\d{1,2})\s*月\s*(\d{1,2})\s*日(?:\s*\(\s*[月火水木金土日]\s*\))?"
                 r"(?:\s*\d{1,2}:\d{2})?\s*(まで|迄|より|から|以降|に(?:は)?(?:戻|帰|出社|復帰)|(?:から|より)?出社|(?:から|より)?復帰)")
_JA_SLASH = re.compile(r"(?:(\d{4})/)?(\d{1,2})/(\d{1,2})(?:\s*\(\s*[月火水木金土日]\s*\))?\s*"
                       r"(まで|迄|より|から|以降|に(?:は)?(?:戻|帰|出社|復帰))")


def return_date_in(text: str, *, reference: date | None) -> date | None:
    """The return date an out-of-office text gives, or None.

    English: "back on 14 December", "returning Monday, December 14th", "until 2026-12-14".
    Japanese: 「12月14日まで不在」 (away through the 14th: back the day after), 「12月14日より出社」,
    「12/14に戻ります」. A date without a year is the next one on or after ``reference`` (the
    message's date); without a reference only dates with a year count. Dates in the past or
    more than a year ahead are not believed.
    """
    text = unicodedata.normalize("NFKC", text[:MAX_TEXT])
    found: list[tuple[int, date]] = []
    for m in _EN_DMY.finditer(text):
        _add(found, m.start(), m.group(3), _MONTHS.get(m.group(2).lower().rstrip(".")), m.group(1), reference)
    for m in _EN_MDY.finditer(text):
        _add(found, m.start(), m.group(3), _MONTHS.get(m.group(1).lower().rstrip(".")), m.group(2), reference)
    for m in _ISO.finditer(text):
        _add(found, m.start(), m.group(1), int(m.group(2)), m.group(3), reference)
    for rx in (_JA, _JA_SLASH):
        for m in rx.finditer(text):
            through = m.group(4) in ("まで", "迄")
            _add(found, m.start(), m.group(1), int(m.group(2)), m.group(3), reference, through=through)
    return min(found)[1] if found else None


def _add(found: list[tuple[int, date]], at: int, year: str | None, month: int | None, day: str | None,
         reference: date | None, *, through: bool = False) -> None:
    if month is None or day is None:
        return
    try:
        if year:
            d = date(int(year), month, int(day))
        elif reference is None:
            return
        else:
            d = date(reference.year, month, int(day))
            if d < reference - timedelta(days=1):
                d = date(reference.year + 1, month, int(day))
    except ValueError:
        return
    if through:
        d += timedelta(days=1)
    if reference is not None and not (reference - timedelta(days=1) <= d <= reference + MAX_RETURN):
        return
    found.append((at, d))


# -- a person's text -----------------------------------------------------------------------------

# Where quoted history starts, when mail-parser-reply has left it in.
_QUOTE_START = re.compile(
    r"^(?:"
    r"-{2,}\s*(?:original message|forwarded message|元のメッセージ|転送メッセージ)\s*-{2,}"
    r"|_{20,}"
    r"|on .{4,200}\bwrote:"
    r"|.{0,80}\d{4}年\d{1,2}月\d{1,2}日.{0,120}(?:wrote|書きました|のメッセージ)?:"
    r"|(?:from|差出人|送信者|送信元)\s*[:：].+"
    r"|>.*"
    r")\s*$", re.I | re.M)
_SIGN_OFF = re.compile(r"^(?:sent from my \w+.*|get outlook for \w+.*|iphoneから送信|androidから送信|"
                       r"my (?:iphone|android)から送信)\s*$", re.I | re.M)
# Cut HTML at the start of the quoted part: Gmail, Apple Mail, Outlook (web and desktop), Thunderbird, Yahoo.
_HTML_QUOTE = re.compile(
    r"<(?:div|blockquote)[^>]*\bclass=\"?[^\">]*\b(?:gmail_quote|gmail_attr|yahoo_quoted|moz-cite-prefix)\b"
    r"|<blockquote[^>]*\btype=\"?cite"
    r"|<div[^>]*\bid=\"?(?:divRplyFwdMsg|appendonsend|mail-editor-reference-message-container)\b"
    r"|<hr[^>]*\bid=\"?stopSpelling"
    r"|<div[^>]*style=\"[^\"]*border-top:\s*solid\s*#(?:E1E1E1|B5C4DF)", re.I)


def new_text_of(text: str) -> str:
    """The new text of a message body: quoted history, reply headers ("On … wrote:",
    「…のメッセージ:」, Outlook's From:/差出人: blocks) and mobile sign-offs stripped."""
    text = text[:MAX_TEXT].replace("\r\n", "\n").replace("\u3000", " ")
    if not text.strip():
        return ""
    parsed = _reply_parser().parse_reply(text=text)
    out = parsed if isinstance(parsed, str) else text
    m = _QUOTE_START.search(out)
    if m:
        out = out[:m.start()]
    out = _SIGN_OFF.sub("", out)
    lines = [line.rstrip() for line in out.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


class _ReplyParser(Protocol):
    def parse_reply(self, text: str) -> str | None: ...


@functools.cache
def _reply_parser() -> _ReplyParser:
    from mailparser_reply import EmailReplyParser  # no type information

    parser: _ReplyParser = EmailReplyParser(languages=["en", "ja", "de", "fr", "es"])
    return parser


_UNSUBSCRIBE = {
    "unsubscribe", "unsubscribe me", "unsubscribe please", "please unsubscribe", "please unsubscribe me",
    "remove", "remove me", "please remove me", "remove me please", "remove me from your list",
    "please remove me from your list", "remove me from this list", "take me off", "take me off your list",
    "please take me off your list", "stop", "stop sending", "stop emailing me", "opt out", "opt me out",
    "no more emails", "no thanks unsubscribe",
    "配信停止", "配信停止でお願いします", "配信停止をお願いします", "配信停止してください", "配信を停止してください",
    "配信停止希望", "配信解除", "配信解除でお願いします", "配信解除をお願いします", "配信不要", "メール不要", "解除",
    "登録解除", "登録解除してください",
}


def is_unsubscribe_request(new_text: str) -> bool:
    """True when the whole new text asks to be removed ("unsubscribe", "remove me", 「配信停止」),
    allowing a short sign-off line or two after it."""
    lines = [line.strip() for line in new_text.strip().splitlines() if line.strip()]
    if not lines:
        return False
    if _norm(" ".join(lines)) in _UNSUBSCRIBE:
        return True
    rest = lines[1:]
    return _norm(lines[0]) in _UNSUBSCRIBE and len(rest) <= 2 and sum(len(x) for x in rest) <= 40


def _norm(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"[\s\.\!\?,;:。、！？・「」『』()\-—–~〜]+", " ", text).strip()
    return re.sub(r"^(hi|hello|thanks|thank you)\s+", "", text)


# -- message plumbing ----------------------------------------------------------------------------

def _header(msg: Message | None, name: str) -> str:
    if msg is None:
        return ""
    try:
        value = msg.get(name)
        return "" if value is None else _unfold(str(value))
    except Exception:  # noqa: BLE001 - a header the parser cannot decode
        with contextlib.suppress(Exception):
            raw = msg.get_all(name, failobj=[])
            return _unfold(" ".join(str(v) for v in raw)) if raw else ""
        return ""


def _items(msg: Message) -> Iterator[tuple[str, str]]:
    for key in msg.keys():
        yield key, _header(msg, key)


def _unfold(value: str) -> str:
    return " ".join(value.split())


def _address(value: str) -> str | None:
    addr = parseaddr(value)[1].strip().lower()
    return addr if "@" in addr else None


def _clip(text: str, n: int = 200) -> str:
    return text if len(text) <= n else text[:n - 1] + "…"


def _report_type(msg: Message) -> str | None:
    if msg.get_content_type() != "multipart/report":
        return None
    param = msg.get_param("report-type")
    return str(param).lower() if isinstance(param, str) else None


def _walk(msg: Message, *, limit: int = 200) -> Iterator[Message]:
    """The parts, depth-first, at most ``limit`` (a hostile message may nest thousands)."""
    for n, part in enumerate(msg.walk()):
        if n >= limit:
            return
        yield part


def _find_part(msg: Message, content_type: str) -> Message | None:
    return next((p for p in _walk(msg) if p.get_content_type() == content_type), None)


def _original_headers(msg: Message) -> Message | None:
    """The returned message inside a report: ``message/rfc822`` / ``message/rfc822-headers`` /
    ``text/rfc822-headers`` (RFC 6522), parsed."""
    for part in _walk(msg):
        ctype = part.get_content_type()
        if part is msg:
            continue
        if ctype in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        if ctype in ("text/rfc822-headers", "message/rfc822-headers", "message/global-headers"):
            from email import message_from_bytes, policy

            raw = part.get_payload(decode=True)
            if isinstance(raw, bytes):
                return message_from_bytes(raw.split(b"\n\n")[0] + b"\n\n", policy=policy.default)
    return None


_MID = re.compile(r"<[^<>\s]{1,250}@[^<>\s]{1,250}>")


def _original_ids(msg: Message) -> list[str]:
    """The Message-ID of the message a report returns: from its enclosed headers, else from a
    ``Message-ID:`` line quoted in a text bounce."""
    original = _original_headers(msg)
    ids = []
    if original is not None:
        m = _MID.search(_header(original, "Message-ID"))
        if m:
            ids.append(m.group(0))
    if not ids:
        for m in re.finditer(r"^\s*Message-ID:\s*(<[^<>\s]+@[^<>\s]+>)", _all_text(msg)[:MAX_TEXT * 5], re.I | re.M):
            ids.append(m.group(1))
    return ids


def _referenced_ids(msg: Message) -> tuple[str, ...]:
    ids: list[str] = []
    for name in ("In-Reply-To", "References"):
        ids += _MID.findall(_header(msg, name))
    return tuple(dict.fromkeys(ids[-50:]))


_VERP_HEADERS = ("To", "Cc", "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "X-Rcpt-To")


def _verp_candidates(msg: Message) -> tuple[str, ...]:
    return _verp_in(msg, _VERP_HEADERS)


def _verp_in(msg: Message, names: tuple[str, ...]) -> tuple[str, ...]:
    out: list[str] = []
    for name in names:
        try:
            values = [str(v) for v in msg.get_all(name, failobj=[])]
        except Exception:  # noqa: BLE001
            continue
        for _, addr in getaddresses(values):
            local = addr.rpartition("@")[0]
            if "+" in local:
                out.append(addr.strip().lower())
    return tuple(dict.fromkeys(out[:20]))


def _date_of(msg: Message) -> date | None:
    value = _header(msg, "Date")
    if not value:
        return None
    try:
        moment: datetime = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return moment.date()


def _text_of(part: Message) -> str:
    try:
        # A legacy Message (not parsed with the default policy) has no get_content: payload below.
        content = part.get_content() if isinstance(part, EmailMessage) else None
        if isinstance(content, str):
            return content
    except Exception:  # noqa: BLE001 - unknown charset or broken transfer encoding
        pass
    raw = part.get_payload(decode=True)
    if isinstance(raw, bytes):
        charset = part.get_content_charset() or "utf-8"
        try:
            return raw.decode(charset, "replace")
        except LookupError:
            return raw.decode("utf-8", "replace")
    return ""


def _body_text(msg: EmailMessage) -> str:
    """The person's text: the text/plain body, else the HTML body (quoted part cut) as text."""
    plain = html = None
    for part in _walk(msg):
        if part.is_multipart() or part.get_content_disposition() == "attachment":
            continue
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            break  # a forwarded message is not the new text
        if ctype == "text/plain" and plain is None:
            plain = part
        elif ctype == "text/html" and html is None:
            html = part
    if plain is not None:
        return _text_of(plain)[:MAX_TEXT * 5]
    if html is not None:
        return html_to_text(_text_of(html)[:MAX_TEXT * 10])
    return ""


def html_to_text(html: str) -> str:
    """An HTML body as text, without the quoted original (Gmail, Apple Mail, Outlook markers)."""
    m = _HTML_QUOTE.search(html)
    if m:
        html = html[:m.start()]
    import html2text

    conv = html2text.HTML2Text()
    conv.body_width = 0
    conv.ignore_images = True
    conv.ignore_links = True
    conv.ignore_emphasis = True
    conv.unicode_snob = True
    return str(conv.handle(html)).strip()


def _all_text(msg: Message) -> str:
    out = []
    for part in _walk(msg):
        if part.get_content_maintype() == "text":
            out.append(_text_of(part))
            if sum(len(x) for x in out) > MAX_TEXT * 5:
                break
    return "\n".join(out)
