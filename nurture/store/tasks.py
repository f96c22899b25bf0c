"""Store: follow-up tasks, lead scores, rep tokens and sessions, webhook deliveries.

Every statement the follow-up part (``nurture.followup``, ``nurture.outcomes``, ``nurture.cards``,
``nurture.repauth``, ``nurture.webhooks``, ``nurture.web.reps``) runs lives here. Priorities are
stored as integers (0 urgent .. 3 low).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

from nurture.errors import NotFound
from nurture.models import PRIORITIES, Outcome, Priority, SendStatus, Task, TaskKind, TaskLoad
from nurture.store.base import StoreBase, dt, dt_required, inserted_id, ts

_TASK_COLS = ("id, contact_id, campaign_id, rep_id, kind, priority, status, due_at, created_at, "
              "updated_at, reason, context, outcome, notes, bant, snooze_until, escalated_at, done_at, "
              "attempts, cadence, attempt_log")


#: Which tasks :meth:`TasksMixin.list_tasks` lists.
TaskFilter = Literal["open", "done", "overdue", "all"]
TASK_FILTERS: tuple[TaskFilter, ...] = get_args(TaskFilter)
#: A webhook delivery: ``pending`` until the receiver answers 2xx (``delivered``) or the
#: attempts run out (``failed``).
DeliveryStatus = Literal["pending", "delivered", "failed"]


@dataclass(frozen=True, slots=True)
class HumanClick:
    """A human click not yet turned into a task (:meth:`TasksMixin.unhandled_human_clicks`),
    with its send and link. ``link_name``/``link_url`` are None when the link row is gone."""

    click_id: int
    at: datetime
    send_id: int
    link_id: int | None
    contact_id: int
    campaign_id: str
    step_id: str
    sent_at: datetime | None
    link_name: str | None
    link_url: str | None
    honeypot: bool


@dataclass(frozen=True, slots=True)
class ContactSend:
    """One mail of a contact's history (:meth:`TasksMixin.contact_sends`)."""

    id: int
    campaign_id: str
    step_id: str
    status: SendStatus
    queued_at: datetime | None
    sent_at: datetime | None


@dataclass(frozen=True, slots=True)
class ContactClick:
    """One human click of a contact (:meth:`TasksMixin.contact_clicks`); ``link``/``url`` are
    None when the link row is gone."""

    id: int
    at: datetime
    campaign_id: str
    step_id: str
    link: str | None
    url: str | None


@dataclass(frozen=True, slots=True)
class DueDelivery:
    """A webhook delivery due now (:meth:`TasksMixin.due_deliveries`), with its event."""

    event_id: int
    url: str
    attempts: int
    at: datetime
    kind: str
    payload: Mapping[str, Any]


def task_from_row(row: Mapping[str, Any]) -> Task:
    return Task(
        id=row["id"], contact_id=row["contact_id"], campaign_id=row["campaign_id"],
        kind=row["kind"], priority=PRIORITIES[row["priority"]], status=row["status"],
        due_at=dt_required(row["due_at"]), created_at=dt_required(row["created_at"]), rep_id=row["rep_id"],
        reason=row["reason"], context=json.loads(row["context"] or "{}"), outcome=row["outcome"],
        notes=row["notes"], snooze_until=dt(row["snooze_until"]), escalated_at=dt(row["escalated_at"]),
        done_at=dt(row["done_at"]), attempts=int(row["attempts"] or 0),
        max_attempts=int(json.loads(row["cadence"] or "{}").get("attempts") or 3),
        attempt_log=tuple(json.loads(row["attempt_log"] or "[]")),
    )


def task_cadence(row_cadence: str | None) -> dict[str, Any]:
    """The stored cadence JSON of a task ({} for tasks raised before attempts existed)."""
    return dict(json.loads(row_cadence or "{}"))


@dataclass(frozen=True, slots=True)
class RepDays:
    """One rep's tasks per day number (0: today, from their local midnight): open ones by the
    day due (overdue on 0), done ones by the day done."""

    open: Mapping[int, int]
    done: Mapping[int, int]


class TasksMixin(StoreBase):
    """Tasks, scores, rep tokens/sessions and webhook deliveries."""

    # -- clicks waiting for the follow-up rules ---------------------------------------------

    def unhandled_human_clicks(self, *, limit: int = 500) -> list[HumanClick]:
        """Human clicks not yet turned into tasks, oldest first, with send and link facts.

        On PostgreSQL the clicks are locked until the caller's transaction ends and clicks
        another process holds are skipped: follow-up loops on several machines (one per
        ``nurture serve``) never handle the same click twice."""
        lock = self.dialect.skip_locked_of("c")
        rows = self.query(
            f"""
            SELECT c.id AS click_id, c.at, c.send_id, c.link_id, s.contact_id, s.campaign_id,
                   s.step_id, s.sent_at, l.name AS link_name, l.url AS link_url,
                   l.honeypot AS honeypot
            FROM clicks c
            JOIN sends s ON s.id = c.send_id
            LEFT JOIN links l ON l.id = c.link_id
            WHERE c.handled = 0 AND c.verdict = 'human' AND c.kind = 'click'
            ORDER BY c.id LIMIT ?{lock}
            """,
            (limit,),
        )
        return [HumanClick(click_id=r["click_id"], at=dt_required(r["at"]), send_id=r["send_id"],
                           link_id=r["link_id"], contact_id=r["contact_id"], campaign_id=r["campaign_id"],
                           step_id=r["step_id"], sent_at=dt(r["sent_at"]), link_name=r["link_name"],
                           link_url=r["link_url"], honeypot=bool(r["honeypot"]))
                for r in rows]

    def mark_clicks_handled(self, click_ids: Iterable[int]) -> None:
        ids = list(click_ids)
        if ids:
            self.conn.executemany(
                "UPDATE clicks SET handled = 1 WHERE id = ?", [(i,) for i in ids])

    def human_click_count(self, contact_id: int, *, since: datetime) -> int:
        """Human clicks by this contact (any campaign) since ``since``."""
        row = self.query_one(
            """SELECT count(*) AS n FROM clicks c JOIN sends s ON s.id = c.send_id
               WHERE s.contact_id = ? AND c.verdict = 'human' AND c.kind = 'click' AND c.at >= ?""",
            (contact_id, ts(since)),
        )
        return int(row["n"]) if row else 0

    def contact_blocked(self, contact_id: int) -> bool:
        """True when the contact unsubscribed, bounced or is on the suppression list."""
        row = self.query_one(
            """SELECT c.status != 'active' OR EXISTS (
                   SELECT 1 FROM suppressions p WHERE p.email_key = c.email_key) AS blocked
               FROM contacts c WHERE c.id = ?""",
            (contact_id,),
        )
        return bool(row is None or row["blocked"])

    # -- tasks ---------------------------------------------------------------------------------

    def open_task_for(self, contact_id: int, campaign_id: str) -> Task | None:
        row = self.query_one(
            f"SELECT {_TASK_COLS} FROM tasks WHERE contact_id = ? AND campaign_id = ? AND status = 'open'",
            (contact_id, campaign_id),
        )
        return task_from_row(row) if row else None

    def open_task_for_contact(self, contact_id: int) -> Task | None:
        """The contact's most urgent open task in any campaign."""
        row = self.query_one(
            f"""SELECT {_TASK_COLS} FROM tasks WHERE contact_id = ? AND status = 'open'
                ORDER BY priority, due_at LIMIT 1""",
            (contact_id,),
        )
        return task_from_row(row) if row else None

    def insert_task(
        self, *, contact_id: int, campaign_id: str, rep_id: str | None, kind: TaskKind, priority: Priority,
        due_at: datetime, reason: str, context: Mapping[str, Any], now: datetime,
        cadence: Mapping[str, Any] | None = None,
    ) -> int:
        cur = self.conn.execute(
            """INSERT INTO tasks (contact_id, campaign_id, rep_id, kind, priority, status, due_at,
                                  created_at, updated_at, reason, context, cadence)
               VALUES (?, ?, ?, ?, ?, 'open', ?, ?, ?, ?, ?, ?)""",
            (contact_id, campaign_id, rep_id, kind, PRIORITIES.index(priority), ts(due_at),
             ts(now), ts(now), reason, json.dumps(context, default=str),
             json.dumps(dict(cadence)) if cadence is not None else None),
        )
        task_id = inserted_id(cur)
        self.task_changed(task_id, now=now)
        return task_id

    def get_task_cadence(self, task_id: int) -> dict[str, Any]:
        """The cadence stored with the task ({} when it predates attempts)."""
        row = self.query_one("SELECT cadence FROM tasks WHERE id = ?", (task_id,))
        if row is None:
            raise NotFound(f"no task with id {task_id}")
        return task_cadence(row["cadence"])

    def record_attempt(self, task_id: int, *, outcome: str, notes: str | None, next_at: datetime,
                       now: datetime) -> int:
        """One unanswered call: count it, log it, and bring the task back at ``next_at``
        (hidden from the list until then, like a snooze). Returns the attempts so far."""
        n, log = self._attempt_logged(task_id, outcome=outcome, notes=notes, next_at=next_at, now=now)
        self.conn.execute(
            """UPDATE tasks SET attempts = ?, attempt_log = ?, outcome = ?, notes = coalesce(?, notes),
                                snooze_until = ?, due_at = ?, escalated_at = NULL, updated_at = ?
               WHERE id = ?""",
            (n, log, outcome, notes, ts(next_at), ts(next_at), ts(now), task_id),
        )
        self.task_changed(task_id, now=now)
        return n

    def log_final_attempt(self, task_id: int, *, outcome: str, notes: str | None, now: datetime) -> int:
        """The last unanswered call of the cadence: logged and counted (the caller closes the task)."""
        n, log = self._attempt_logged(task_id, outcome=outcome, notes=notes, next_at=None, now=now)
        self.conn.execute(
            "UPDATE tasks SET attempts = ?, attempt_log = ?, updated_at = ? WHERE id = ?",
            (n, log, ts(now), task_id))
        return n

    def _attempt_logged(self, task_id: int, *, outcome: str, notes: str | None, next_at: datetime | None,
                        now: datetime) -> tuple[int, str]:
        """The task's attempt count with one more call, and its log (JSON) with that call added."""
        row = self.query_one("SELECT attempts, attempt_log FROM tasks WHERE id = ?", (task_id,))
        if row is None:
            raise NotFound(f"no task with id {task_id}")
        n = int(row["attempts"] or 0) + 1
        log = [*json.loads(row["attempt_log"] or "[]"),
               {"n": n, "at": now.isoformat(), "outcome": outcome, "notes": notes,
                "next_at": next_at.isoformat() if next_at is not None else None}]
        return n, json.dumps(log)

    def restart_enrollment_at(self, *, campaign_id: str, contact_id: int, step_id: str,
                              now: datetime) -> bool:
        """An unreachable contact's fallback: their enrollment continues at ``step_id`` now
        (an enrollment that ended by exit stays ended). True when one was moved."""
        cur = self.conn.execute(
            """UPDATE enrollments SET state = 'active', next_step = ?, next_at = ?, next_wait = NULL,
                                      updated_at = ?
               WHERE campaign_id = ? AND contact_id = ? AND state IN ('active', 'completed')""",
            (step_id, ts(now), ts(now), campaign_id, contact_id))
        return bool(cur.rowcount == 1)

    def update_open_task(
        self, task_id: int, *, kind: TaskKind, priority: Priority, due_at: datetime, reason: str,
        context: Mapping[str, Any], now: datetime,
    ) -> None:
        self.conn.execute(
            """UPDATE tasks SET kind = ?, priority = ?, due_at = ?, reason = ?, context = ?,
                                updated_at = ? WHERE id = ?""",
            (kind, PRIORITIES.index(priority), ts(due_at), reason,
             json.dumps(context, default=str), ts(now), task_id),
        )
        self.task_changed(task_id, now=now)

    def set_task_priority(self, task_id: int, priority: Priority, *, now: datetime) -> None:
        self.conn.execute(
            "UPDATE tasks SET priority = ?, updated_at = ? WHERE id = ?",
            (PRIORITIES.index(priority), ts(now), task_id),
        )
        self.task_changed(task_id, now=now)

    def get_task(self, task_id: int) -> Task:
        row = self.query_one(f"SELECT {_TASK_COLS} FROM tasks WHERE id = ?", (task_id,))
        if row is None:
            raise NotFound(f"no task with id {task_id}")
        return task_from_row(row)

    def task_bant(self, task_id: int) -> dict[str, str]:
        row = self.query_one("SELECT bant FROM tasks WHERE id = ?", (task_id,))
        if row is None:
            raise NotFound(f"no task with id {task_id}")
        bant: dict[str, str] = json.loads(row["bant"] or "{}")
        return bant

    def set_task_bant(self, task_id: int, bant: Mapping[str, str], *, now: datetime) -> None:
        self.conn.execute(
            "UPDATE tasks SET bant = ?, updated_at = ? WHERE id = ?",
            (json.dumps(dict(bant), sort_keys=True), ts(now), task_id),
        )
        self.task_changed(task_id, now=now)

    def list_tasks(
        self, *, now: datetime, rep_id: str | None = None, status: TaskFilter = "open",
        include_snoozed: bool = True, limit: int = 1000,
    ) -> list[Task]:
        """Tasks sorted for calling: overdue first, then priority, then due time.

        ``status`` is ``open``, ``done``, ``overdue`` (open and past due) or ``all``.
        """
        where: list[str] = []
        params: list[Any] = []
        if status in ("open", "overdue"):
            where.append("status = 'open'")
            if status == "overdue":
                where.append("due_at < ?")
                params.append(ts(now))
        elif status == "done":
            where.append("status = 'done'")
        elif status != "all":
            raise ValueError(f'"{status}" is not a task status (use open, done, overdue or all)')
        if rep_id is not None:
            where.append("rep_id = ?")
            params.append(rep_id)
        if not include_snoozed:
            where.append("(snooze_until IS NULL OR snooze_until <= ?)")
            params.append(ts(now))
        sql = f"SELECT {_TASK_COLS} FROM tasks"
        if where:
            sql += " WHERE " + " AND ".join(where)
        if status == "done":
            sql += " ORDER BY done_at DESC"
        else:
            sql += " ORDER BY (status = 'open' AND due_at < ?) DESC, priority, due_at, id"
            params.append(ts(now))
        rows = self.query(sql + " LIMIT ?", [*params, limit])
        return [task_from_row(r) for r in rows]

    def complete_task(
        self, task_id: int, *, outcome: Outcome, notes: str | None, now: datetime,
        snooze_until: datetime | None = None,
    ) -> None:
        """Record an outcome: ``snoozed`` keeps the task open until ``snooze_until``."""
        if outcome == "snoozed":
            self.conn.execute(
                """UPDATE tasks SET outcome = ?, notes = coalesce(?, notes), snooze_until = ?,
                                    due_at = ?, escalated_at = NULL, updated_at = ? WHERE id = ?""",
                (outcome, notes, ts(snooze_until), ts(snooze_until), ts(now), task_id),
            )
        else:
            self.conn.execute(
                """UPDATE tasks SET status = 'done', outcome = ?, notes = coalesce(?, notes),
                                    done_at = ?, updated_at = ? WHERE id = ?""",
                (outcome, notes, ts(now), ts(now), task_id),
            )
        self.task_changed(task_id, now=now)

    # -- the change sequence the reps' app streams (GET /api/stream) -------------------------

    def task_changed(self, task_id: int, *, now: datetime, rep_id: str | None = None) -> None:
        """Append a change of ``task_id`` for its rep's list (or ``rep_id``'s, e.g. the rep a
        reassigned task left). Joins the caller's transaction."""
        if rep_id is None:
            self.conn.execute(
                "INSERT INTO task_changes (task_id, rep_id, at) SELECT id, rep_id, ? FROM tasks WHERE id = ?",
                (ts(now), task_id))
        else:
            self.conn.execute(
                "INSERT INTO task_changes (task_id, rep_id, at) VALUES (?, ?, ?)", (task_id, rep_id, ts(now)))

    def last_task_change(self) -> int:
        """The id of the newest task change (0 when there is none)."""
        row = self.query_one("SELECT coalesce(max(id), 0) AS n FROM task_changes")
        return int(row["n"]) if row else 0

    def task_changes_after(self, after_id: int, *, rep_id: str | None = None,
                           limit: int = 200) -> list[tuple[int, int]]:
        """(change id, task id) after ``after_id``, oldest first; only ``rep_id``'s list
        when given (None: every list, the manager's)."""
        sql = "SELECT id, task_id FROM task_changes WHERE id > ?"
        params: list[Any] = [after_id]
        if rep_id is not None:
            sql += " AND rep_id = ?"
            params.append(rep_id)
        rows = self.query(sql + " ORDER BY id LIMIT ?", [*params, limit])
        return [(int(r["id"]), int(r["task_id"])) for r in rows]

    def prune_task_changes(self, *, before: datetime) -> int:
        """Forget changes older than ``before`` (a page reconnecting later reloads the list)."""
        cur = self.conn.execute("DELETE FROM task_changes WHERE at < ?", (ts(before),))
        return int(cur.rowcount)

    def reassign_task(self, task_id: int, rep_id: str, *, now: datetime) -> str | None:
        """Give an open task to ``rep_id``; returns the rep it had. Both lists hear of it."""
        row = self.query_one("SELECT rep_id, status FROM tasks WHERE id = ?", (task_id,))
        if row is None or row["status"] != "open":
            raise NotFound(f"no open task with id {task_id}")
        self.conn.execute(
            "UPDATE tasks SET rep_id = ?, updated_at = ? WHERE id = ?", (rep_id, ts(now), task_id))
        old: str | None = row["rep_id"]
        if old is not None and old != rep_id:
            self.task_changed(task_id, now=now, rep_id=old)
        self.task_changed(task_id, now=now)
        return old

    def overdue_unescalated(self, *, now: datetime) -> list[Task]:
        rows = self.query(
            f"""SELECT {_TASK_COLS} FROM tasks
                WHERE status = 'open' AND due_at < ? AND escalated_at IS NULL ORDER BY due_at""",
            (ts(now),),
        )
        return [task_from_row(r) for r in rows]

    def mark_escalated(self, task_id: int, *, now: datetime) -> bool:
        cur = self.conn.execute(
            "UPDATE tasks SET escalated_at = ?, updated_at = ? WHERE id = ? AND escalated_at IS NULL",
            (ts(now), ts(now), task_id),
        )
        if cur.rowcount == 1:
            self.task_changed(task_id, now=now)
        return cur.rowcount == 1

    def assigned_since(self, since_by_rep: Mapping[str, datetime]) -> dict[str, int]:
        """Tasks assigned to each rep since that rep's given moment (their local midnight)."""
        out: dict[str, int] = {}
        for rep_id, since in since_by_rep.items():
            row = self.query_one(
                "SELECT count(*) AS n FROM tasks WHERE rep_id = ? AND created_at >= ?",
                (rep_id, ts(since)),
            )
            out[rep_id] = int(row["n"]) if row else 0
        return out

    def task_loads(self, rep_ids: Iterable[str], *, since: datetime) -> list[TaskLoad]:
        """What uses the reps' capacity (the day plan): their open tasks, and the tasks they
        finished since ``since`` (the earliest of their local midnights)."""
        ids = list(rep_ids)
        if not ids:
            return []
        rows = self.conn.execute(
            f"SELECT rep_id, due_at, done_at, priority FROM tasks WHERE rep_id IN ({','.join('?' * len(ids))})"
            " AND (status = 'open' OR (status = 'done' AND done_at >= ?))", [*ids, ts(since)]).fetchall()
        return [TaskLoad(rep_id=r[0], due_at=dt_required(r[1]), done_at=dt(r[2]), priority=PRIORITIES[int(r[3])])
                for r in rows]

    def task_day_counts(self, starts: Mapping[str, datetime]) -> dict[str, RepDays]:
        """Per rep, what fills their days (the day plan), counted in whole days from that rep's
        ``starts`` moment (their local midnight: day 0 is today): open tasks by the day they
        are due (overdue ones on day 0), tasks done since by the day they were done. Two
        aggregates per rep through ``tasks_rep``, however many tasks are open."""
        out: dict[str, RepDays] = {}
        for rep_id, start in starts.items():
            s0 = int(start.timestamp())
            # Whole seconds and integer division: the same day number on SQLite and PostgreSQL.
            open_ = self.conn.execute(
                "SELECT (CAST(CASE WHEN due_at < ? THEN ? ELSE due_at END AS BIGINT) - ?) / 86400, count(*)"
                " FROM tasks WHERE rep_id = ? AND status = 'open' GROUP BY 1", (s0, s0, s0, rep_id)).fetchall()
            done = self.conn.execute(
                "SELECT (CAST(done_at AS BIGINT) - ?) / 86400, count(*) FROM tasks"
                " WHERE rep_id = ? AND status = 'done' AND done_at >= ? GROUP BY 1", (s0, rep_id, s0)).fetchall()
            out[rep_id] = RepDays(open={int(d): int(n) for d, n in open_}, done={int(d): int(n) for d, n in done})
        return out

    def last_assigned_rep(self) -> str | None:
        row = self.query_one(
            "SELECT rep_id FROM tasks WHERE rep_id IS NOT NULL ORDER BY id DESC LIMIT 1")
        return str(row["rep_id"]) if row else None

    def queue_counts(self, *, now: datetime, since: datetime) -> dict[str | None, dict[str, int]]:
        """Per rep: open, overdue, snoozed and done-since counts (the manager view)."""
        rows = self.query(
            """SELECT rep_id,
                      sum(status = 'open') AS open,
                      sum(status = 'open' AND due_at < ?) AS overdue,
                      sum(status = 'open' AND snooze_until > ?) AS snoozed,
                      sum(status = 'done' AND done_at >= ?) AS done
               FROM tasks GROUP BY rep_id""",
            (ts(now), ts(now), ts(since)),
        )
        return {r["rep_id"]: {k: int(r[k] or 0) for k in ("open", "overdue", "snoozed", "done")}
                for r in rows}

    # -- what a rep sees on a task ---------------------------------------------------------------

    def contact_sends(self, contact_id: int, *, limit: int = 50) -> list[ContactSend]:
        """The contact's mail, newest first (by sent time, else queue time)."""
        rows = self.conn.execute(
            """SELECT id, campaign_id, step_id, status, queued_at, sent_at FROM sends
               WHERE contact_id = ? ORDER BY coalesce(sent_at, queued_at) DESC LIMIT ?""",
            (contact_id, limit),
        )
        return [ContactSend(id=i, campaign_id=c, step_id=s, status=st, queued_at=dt(q), sent_at=dt(sent))
                for i, c, s, st, q, sent in rows]

    def contact_clicks(self, contact_id: int, *, limit: int = 50) -> list[ContactClick]:
        """Human clicks by the contact, newest first."""
        rows = self.conn.execute(
            """SELECT c.id, c.at, s.campaign_id, s.step_id, l.name AS link, l.url
               FROM clicks c JOIN sends s ON s.id = c.send_id LEFT JOIN links l ON l.id = c.link_id
               WHERE s.contact_id = ? AND c.verdict = 'human' AND c.kind = 'click'
               ORDER BY c.at DESC LIMIT ?""",
            (contact_id, limit),
        )
        return [ContactClick(id=i, at=dt_required(at), campaign_id=c, step_id=s, link=link, url=url)
                for i, at, c, s, link, url in rows]

    # -- lead score ----------------------------------------------------------------------------

    def contact_score(self, contact_id: int) -> tuple[float, datetime | None, bool]:
        """The stored (undecayed) score, when it was stored, and the hot flag."""
        row = self.query_one(
            "SELECT score, score_at, hot FROM contacts WHERE id = ?", (contact_id,))
        if row is None:
            raise NotFound(f"no contact with id {contact_id}")
        return float(row["score"]), dt(row["score_at"]), bool(row["hot"])

    def set_contact_score(self, contact_id: int, *, score: float, hot: bool, now: datetime) -> None:
        self.conn.execute(
            "UPDATE contacts SET score = ?, score_at = ?, hot = ?, updated_at = ? WHERE id = ?",
            (score, ts(now), int(hot), ts(now), contact_id),
        )

    # -- rep tokens and sessions -------------------------------------------------------------

    def add_rep_token(self, *, token_hash: str, rep_id: str, now: datetime) -> None:
        self.conn.execute(
            "INSERT INTO rep_tokens (token_hash, rep_id, created_at) VALUES (?, ?, ?)",
            (token_hash, rep_id, ts(now)),
        )

    def rep_for_token(self, token_hash: str) -> str | None:
        row = self.query_one(
            "SELECT rep_id FROM rep_tokens WHERE token_hash = ? AND revoked_at IS NULL", (token_hash,))
        return str(row["rep_id"]) if row else None

    def revoke_rep_tokens(self, rep_id: str, *, now: datetime) -> int:
        cur = self.conn.execute(
            "UPDATE rep_tokens SET revoked_at = ? WHERE rep_id = ? AND revoked_at IS NULL",
            (ts(now), rep_id),
        )
        self.conn.execute("DELETE FROM rep_sessions WHERE rep_id = ?", (rep_id,))
        return cur.rowcount

    def rep_token_counts(self) -> dict[str, int]:
        rows = self.query(
            "SELECT rep_id, count(*) AS n FROM rep_tokens WHERE revoked_at IS NULL GROUP BY rep_id")
        return {r["rep_id"]: r["n"] for r in rows}

    def add_session(self, *, session_hash: str, rep_id: str, csrf: str, now: datetime,
                    expires_at: datetime) -> None:
        self.conn.execute("DELETE FROM rep_sessions WHERE expires_at <= ?", (ts(now),))
        self.conn.execute(
            """INSERT INTO rep_sessions (session_hash, rep_id, csrf, created_at, expires_at)
               VALUES (?, ?, ?, ?, ?)""",
            (session_hash, rep_id, csrf, ts(now), ts(expires_at)),
        )

    def get_session(self, session_hash: str, *, now: datetime) -> tuple[str, str] | None:
        """(rep_id, csrf token) for a live session."""
        row = self.query_one(
            "SELECT rep_id, csrf FROM rep_sessions WHERE session_hash = ? AND expires_at > ?",
            (session_hash, ts(now)),
        )
        return (row["rep_id"], row["csrf"]) if row else None

    def delete_session(self, session_hash: str) -> None:
        self.conn.execute("DELETE FROM rep_sessions WHERE session_hash = ?", (session_hash,))

    # -- webhook deliveries --------------------------------------------------------------------

    def webhook_cursor(self, url: str) -> int:
        row = self.query_one("SELECT last_event_id FROM webhook_cursor WHERE url = ?", (url,))
        return int(row["last_event_id"]) if row else 0

    def enqueue_deliveries(self, *, url: str, event_ids: Iterable[int], last_event_id: int,
                           now: datetime) -> None:
        """Queue deliveries of these events to ``url`` and move its cursor, atomically."""
        with self.transaction():
            self.conn.executemany(
                """INSERT OR IGNORE INTO webhook_deliveries (event_id, url, status, attempts, next_at)
                   VALUES (?, ?, 'pending', 0, ?)""",
                [(e, url, ts(now)) for e in event_ids],
            )
            self.conn.execute(
                """INSERT INTO webhook_cursor (url, last_event_id) VALUES (?, ?)
                   ON CONFLICT (url) DO UPDATE SET last_event_id = excluded.last_event_id""",
                (url, last_event_id),
            )

    def due_deliveries(self, *, now: datetime, limit: int = 50) -> list[DueDelivery]:
        """Pending deliveries whose time has come, oldest first."""
        rows = self.conn.execute(
            """SELECT d.event_id, d.url, d.attempts, e.at, e.kind, e.payload
               FROM webhook_deliveries d JOIN events e ON e.id = d.event_id
               WHERE d.status = 'pending' AND d.next_at <= ? ORDER BY d.next_at, d.event_id LIMIT ?""",
            (ts(now), limit),
        )
        return [DueDelivery(event_id=e, url=u, attempts=n, at=dt_required(at), kind=k, payload=json.loads(p))
                for e, u, n, at, k, p in rows]

    def next_delivery_at(self) -> datetime | None:
        row = self.query_one(
            "SELECT min(next_at) AS t FROM webhook_deliveries WHERE status = 'pending'")
        return dt(row["t"]) if row and row["t"] is not None else None

    def mark_delivery(self, *, event_id: int, url: str, status: DeliveryStatus, attempts: int,
                      next_at: datetime, error: str | None = None) -> None:
        self.conn.execute(
            """UPDATE webhook_deliveries SET status = ?, attempts = ?, next_at = ?, last_error = ?
               WHERE event_id = ? AND url = ?""",
            (status, attempts, ts(next_at), error, event_id, url),
        )

    def deliveries(self, *, url: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT event_id, url, status, attempts, next_at, last_error FROM webhook_deliveries"
        params: tuple[str, ...] = ()
        if url:
            sql += " WHERE url = ?"
            params = (url,)
        return self.query(sql + " ORDER BY event_id", params)
