"""Store: tracking. Links, the click ledger, verdicts, and unsubscribes from the tracker."""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from nurture.models import Click, ClickKind, ClickVerdict, Link
from nurture.store.base import dt, dt_required, inserted_id, ts
from nurture.store.contacts import ContactsMixin
from nurture.store.enrollments import EnrollmentsMixin


@dataclass(frozen=True, slots=True)
class NewClick:
    """A click (or open) as the tracker saw it, before it has a row id."""

    send_id: int
    link_id: int | None
    at: datetime
    method: str
    ip: str | None = None
    user_agent: str | None = None
    kind: ClickKind = "click"  # unsubscribe: a GET of the unsubscribe page, evidence only
    verdict: ClickVerdict = "pending"
    score: float = 0.0
    reasons: tuple[str, ...] = ()
    #: The link's campaign and step: the click is only recorded if its send has the same.
    campaign_id: str | None = None
    step_id: str | None = None


@dataclass(frozen=True, slots=True)
class ClickContext:
    """What the tracker and the judge need to know about one send."""

    send_id: int
    campaign_id: str
    step_id: str
    contact_id: int
    email: str
    delivered_at: datetime | None  # sends.sent_at: the SMTP accept time


@dataclass(frozen=True, slots=True)
class JudgeInput:
    """One pending click with everything :func:`nurture.clicks.judge` needs."""

    click: Click
    kind: ClickKind
    delivered_at: datetime | None
    other_clicks: tuple[Click, ...]
    honeypot_link: bool
    honeypot_hit: bool
    ip_recipients: int
    link_count: int
    honeypot_ids: frozenset[int] = frozenset()  # the hidden links among ``other_clicks``


@dataclass(frozen=True, slots=True)
class SettledVerdict:
    click_id: int
    verdict: ClickVerdict
    score: float
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ListedClick:
    """One row of :meth:`TrackingMixin.list_clicks`: a click (or open) with its send, link and
    recipient, for ``nurture clicks``. ``link``/``url`` are None for an open."""

    id: int
    at: datetime
    kind: ClickKind
    method: str
    ip: str | None
    user_agent: str | None
    verdict: ClickVerdict
    score: float
    reasons: tuple[str, ...]
    settled_at: datetime | None
    handled: bool
    send_id: int
    campaign_id: str
    step_id: str
    sent_at: datetime | None
    email: str
    link: str | None
    url: str | None
    honeypot: bool


_INSERT_CLICKS = """INSERT INTO clicks (send_id, link_id, kind, at, ip, user_agent, method,
                                    verdict, score, reasons, settled_at) VALUES """
_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_CHUNK = 2000  # 11 parameters a row, under SQLite's 32766 limit

#: How far around a click to look for the same IP clicking for other recipients.
IP_WINDOW = timedelta(minutes=10)
#: Recipients per IP are counted up to this (enough to call it a shared scanner).
IP_COUNT_CAP = 50


class TrackingMixin(ContactsMixin, EnrollmentsMixin):
    """Links, clicks and their verdicts, and the tracker's unsubscribe (which suppresses the
    address and exits enrollments: the contacts and enrollments mixins are its bases)."""

    # -- lookups for the tracker -----------------------------------------------------------------

    def get_link(self, link_id: int) -> Link | None:
        row = self.query_one("SELECT * FROM links WHERE id = ?", (link_id,))
        if row is None:
            return None
        return Link(id=row["id"], campaign_id=row["campaign_id"], step_id=row["step_id"],
                    name=row["name"], url=row["url"], honeypot=bool(row["honeypot"]))

    def click_context(self, send_id: int) -> ClickContext | None:
        """The send behind a token: campaign, step, contact, address and delivery time."""
        row = self.query_one(
            """SELECT s.id, s.campaign_id, s.step_id, s.contact_id, s.sent_at, c.email
               FROM sends s JOIN contacts c ON c.id = s.contact_id WHERE s.id = ?""",
            (send_id,),
        )
        if row is None:
            return None
        return ClickContext(send_id=row["id"], campaign_id=row["campaign_id"], step_id=row["step_id"],
                            contact_id=row["contact_id"], email=row["email"],
                            delivered_at=dt(row["sent_at"]))

    # -- the ledger ----------------------------------------------------------------------------------

    def record_clicks(self, clicks: Sequence[NewClick]) -> list[int | None]:
        """Insert every click in one transaction (the tracker's group commit); their ids.

        A click whose send does not exist, or (when the click names them) belongs to another
        campaign or step than its link, is not recorded: its id is None, and the tracker
        answers 404. Checking here saves the tracker a database read per click."""
        out: list[int | None] = [None] * len(clicks)
        with self.transaction():
            sends: dict[int, tuple[str, str]] = {}
            wanted = sorted({c.send_id for c in clicks if c.send_id is not None})
            for start in range(0, len(wanted), _INSERT_CHUNK):
                chunk = wanted[start:start + _INSERT_CHUNK]
                for sid, camp, step in self.conn.execute(
                        f"SELECT id, campaign_id, step_id FROM sends WHERE id IN ({','.join('?' * len(chunk))})",
                        chunk):
                    sends[sid] = (camp, step)
            keep = [i for i, c in enumerate(clicks) if c.send_id in sends and (
                c.campaign_id is None or sends[c.send_id] == (c.campaign_id, c.step_id))]
            rows = [_row(clicks[i]) for i in keep]
            # One multi-row INSERT per chunk: SQLite runs it in a single step, so the writer
            # thread takes the GIL back a few times per batch instead of once per click.
            pg = self.dialect.name == "postgres"
            for start in range(0, len(rows), _INSERT_CHUNK):
                batch = rows[start:start + _INSERT_CHUNK]
                sql = _INSERT_CLICKS + ",".join([_ROW] * len(batch))
                params = [v for row in batch for v in row]
                if pg:  # concurrent inserts may interleave sequence values: ask for each id
                    got = [int(r[0]) for r in self.conn.execute(sql + " RETURNING id", params).fetchall()]
                else:
                    # Rowids of one INSERT are consecutive: we hold the write lock, rowid = max + 1.
                    last = inserted_id(self.conn.execute(sql, params))
                    got = list(range(last - len(batch) + 1, last + 1))
                for i, row_id in zip(keep[start:start + _INSERT_CHUNK], got, strict=True):
                    out[i] = row_id
        return out

    def get_click(self, click_id: int) -> Click | None:
        row = self.query_one("SELECT * FROM clicks WHERE id = ?", (click_id,))
        return _click(row) if row else None

    # -- settling --------------------------------------------------------------------------------

    def pending_clicks(self, *, before: datetime, limit: int = 500) -> list[JudgeInput]:
        """Pending clicks (not opens) made at or before ``before``, oldest first, each with every
        other request of its message (clicks, the honeypot's among them, opens and
        unsubscribe-page fetches: evidence for the judge), honeypot hits by the same IP, how
        many recipients clicked from that IP around then (counted up to :data:`IP_COUNT_CAP`),
        and the link count."""
        rows = self.query(
            """SELECT c.*, s.sent_at, s.campaign_id, s.step_id, s.contact_id,
                      coalesce(l.honeypot, 0) AS is_honeypot
               FROM clicks c JOIN sends s ON s.id = c.send_id LEFT JOIN links l ON l.id = c.link_id
               WHERE c.verdict = 'pending' AND c.kind = 'click' AND c.at <= ?
               ORDER BY c.at LIMIT ?""",
            (ts(before), limit),
        )
        if not rows:
            return []
        siblings: dict[int, list[dict[str, Any]]] = {}
        send_ids = sorted({r["send_id"] for r in rows})
        for i in range(0, len(send_ids), 500):
            chunk = send_ids[i:i + 500]
            for o in self.query(
                    f"""SELECT c.*, coalesce(l.honeypot, 0) AS is_honeypot FROM clicks c
                        LEFT JOIN links l ON l.id = c.link_id
                        WHERE c.send_id IN ({",".join("?" * len(chunk))})
                        ORDER BY c.at""", chunk):
                siblings.setdefault(o["send_id"], []).append(o)
        link_counts: dict[tuple[str, str], int] = {}
        by_ip = self._ip_timelines(rows)
        out: list[JudgeInput] = []
        for r in rows:
            key = (r["campaign_id"], r["step_id"])
            if key not in link_counts:
                link_counts[key] = self._visible_link_count(*key)
            sib = siblings.get(r["send_id"], [])
            honeypot_hit = bool(r["ip"]) and any(o["is_honeypot"] and o["ip"] == r["ip"] for o in sib)
            out.append(JudgeInput(
                click=_click(r), kind=r["kind"], delivered_at=dt(r["sent_at"]),
                other_clicks=tuple(_click(o) for o in sib if o["id"] != r["id"]),
                honeypot_link=bool(r["is_honeypot"]), honeypot_hit=honeypot_hit,
                ip_recipients=_recipients_near(by_ip.get(r["ip"]), r["at"]), link_count=link_counts[key],
                honeypot_ids=frozenset(o["link_id"] for o in sib if o["is_honeypot"]),
            ))
        return out

    def _visible_link_count(self, campaign_id: str, step_id: str) -> int:
        # Links rendered for this step (each link id is per campaign+step, not per message).
        row = self.query_one(
            "SELECT count(DISTINCT name) AS n FROM links WHERE campaign_id = ? AND step_id = ? AND honeypot = 0",
            (campaign_id, step_id))
        return int(row["n"]) if row else 0

    def _ip_timelines(self, rows: list[dict[str, Any]]) -> dict[str, tuple[list[float], list[int]]]:
        """Per IP of ``rows``: (times, contact ids) of its clicks, sorted, around those rows."""
        w = IP_WINDOW.total_seconds()
        spans: dict[str, tuple[float, float]] = {}
        for r in rows:
            if r["ip"]:
                lo, hi = spans.get(r["ip"], (r["at"], r["at"]))
                spans[r["ip"]] = (min(lo, r["at"]), max(hi, r["at"]))
        out: dict[str, tuple[list[float], list[int]]] = {}
        for ip, (lo, hi) in spans.items():
            pts = self.query(
                """SELECT c.at, s.contact_id FROM clicks c JOIN sends s ON s.id = c.send_id
                   WHERE c.ip = ? AND c.at BETWEEN ? AND ? AND c.kind = 'click' ORDER BY c.at""",
                (ip, lo - w, hi + w))
            out[ip] = ([p["at"] for p in pts], [p["contact_id"] for p in pts])
        return out

    def save_verdicts(self, verdicts: Iterable[SettledVerdict], *, now: datetime) -> int:
        """Store settled verdicts (only over clicks still pending); how many changed."""
        n = 0
        with self.transaction():
            for v in verdicts:
                if v.verdict == "pending":
                    self.conn.execute(
                        "UPDATE clicks SET score = ?, reasons = ? WHERE id = ? AND verdict = 'pending'",
                        (v.score, json.dumps(list(v.reasons)), v.click_id))
                    continue
                cur = self.conn.execute(
                    """UPDATE clicks SET verdict = ?, score = ?, reasons = ?, settled_at = ?
                       WHERE id = ? AND verdict = 'pending'""",
                    (v.verdict, v.score, json.dumps(list(v.reasons)), ts(now), v.click_id))
                n += cur.rowcount
        return n

    # -- reading -----------------------------------------------------------------------------------

    def list_clicks(self, *, campaign_id: str | None = None, verdict: ClickVerdict | None = None,
                    kind: ClickKind | None = "click", limit: int = 200) -> list[ListedClick]:
        """Clicks newest first, with campaign, step, link and recipient (for ``nurture clicks``)."""
        sql = """SELECT c.id, c.at, c.kind, c.method, c.ip, c.user_agent, c.verdict, c.score,
                        c.reasons, c.settled_at, c.handled, c.send_id, s.campaign_id, s.step_id,
                        s.sent_at, co.email, l.name AS link, l.url, coalesce(l.honeypot, 0) AS honeypot
                 FROM clicks c JOIN sends s ON s.id = c.send_id JOIN contacts co ON co.id = s.contact_id
                 LEFT JOIN links l ON l.id = c.link_id WHERE 1 = 1"""
        params: list[Any] = []
        for col, value in (("s.campaign_id", campaign_id), ("c.verdict", verdict), ("c.kind", kind)):
            if value:
                sql += f" AND {col} = ?"
                params.append(value)
        rows = self.query(sql + " ORDER BY c.at DESC, c.id DESC LIMIT ?", [*params, limit])
        return [ListedClick(
            id=r["id"], at=dt_required(r["at"]), kind=r["kind"], method=r["method"], ip=r["ip"],
            user_agent=r["user_agent"], verdict=r["verdict"], score=r["score"],
            reasons=tuple(json.loads(r["reasons"] or "[]")), settled_at=dt(r["settled_at"]),
            handled=bool(r["handled"]), send_id=r["send_id"], campaign_id=r["campaign_id"],
            step_id=r["step_id"], sent_at=dt(r["sent_at"]), email=r["email"], link=r["link"], url=r["url"],
            honeypot=bool(r["honeypot"])) for r in rows]

    # -- unsubscribe ---------------------------------------------------------------------------------

    def unsubscribe(self, send_id: int, *, now: datetime) -> str | None:
        """Unsubscribe the recipient of ``send_id`` at once, in one transaction: suppress the
        address (contact status ``unsubscribed``), exit every active enrollment (their queued
        sends become ``skipped``), and log ``contact.unsubscribed`` once. Returns the address,
        or None for an unknown send. Repeating it changes nothing."""
        with self.transaction():
            row = self.query_one(
                """SELECT s.contact_id, s.campaign_id, c.email, c.email_key FROM sends s
                   JOIN contacts c ON c.id = s.contact_id WHERE s.id = ?""", (send_id,))
            if row is None:
                return None
            already = self.query_one(
                "SELECT reason FROM suppressions WHERE email_key = ?", (row["email_key"],))
            self.suppress(row["email"], "unsubscribed", now=now)
            # A contact suppressed earlier for another reason still leaves as "unsubscribed".
            self.conn.execute(
                "UPDATE contacts SET status = 'unsubscribed', updated_at = ? WHERE id = ? AND status = 'active'",
                (ts(now), row["contact_id"]))
            exited = self.exit_enrollments(row["contact_id"], reason="unsubscribed", now=now)
            if already is None or exited:
                self.append_event("contact.unsubscribed", {
                    "contact_id": row["contact_id"], "email": row["email"], "send_id": send_id,
                    "campaign_id": row["campaign_id"], "source": "tracker"}, now=now)
        return str(row["email"])


def _row(c: NewClick) -> tuple[Any, ...]:
    return (c.send_id, c.link_id, c.kind, ts(c.at), c.ip, c.user_agent, c.method, c.verdict, c.score,
            json.dumps(list(c.reasons)) if c.reasons else "[]",
            None if c.verdict == "pending" else ts(c.at))


def _recipients_near(timeline: tuple[list[float], list[int]] | None, at: float) -> int:
    if timeline is None:
        return 0
    times, contacts = timeline
    w = IP_WINDOW.total_seconds()
    seen: set[int] = set()
    for i in range(bisect.bisect_left(times, at - w), bisect.bisect_right(times, at + w)):
        seen.add(contacts[i])
        if len(seen) >= IP_COUNT_CAP:
            break
    return len(seen)


def _click(row: Mapping[str, Any]) -> Click:
    return Click(id=row["id"], send_id=row["send_id"], link_id=row["link_id"], at=dt_required(row["at"]),
                 ip=row["ip"], user_agent=row["user_agent"], method=row["method"],
                 verdict=row["verdict"], score=row["score"],
                 reasons=tuple(json.loads(row["reasons"] or "[]")), kind=row.get("kind") or "click")
