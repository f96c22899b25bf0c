"""Small helpers shared by several test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import queue
import re
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from nurture.models import Campaign, Condition, FollowUpRule, ScoreRule, Scoring, Step
from nurture.store.base import ts


class Clock:
    """A clock the test sets by hand (``clock.now = later``), for code that takes ``now()``."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def worker_result(proc: asyncio.subprocess.Process, *, timeout: float,
                        tail: int = 2000) -> dict[str, float]:
    """Wait for a worker script (tests/_send_worker.py, _scaleout_worker.py) to exit 0 and
    return the dict of numbers it printed after ``done``; stderr's last ``tail`` characters
    explain a failure."""
    out, err = await asyncio.wait_for(proc.communicate(), timeout=timeout)
    assert proc.returncode == 0, err.decode()[-tail:]
    m = re.search(rb"done (\{.*\})", out)
    assert m, out
    return eval(m.group(1))  # the worker prints a dict of numbers


# -- follow-up: SQL fixture helpers (contacts, sends, links, clicks) and a test campaign -----------

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)  # Tuesday; London reps on shift, Tokyo off

def add_contact(store, email, **fields) -> int:
    cols = {"first_name": "", "last_name": "", "company": "", "phone": "", "timezone": None,
            "owner": None, "territory": None, "status": "active", **fields}
    cur = store.conn.execute(
        """INSERT INTO contacts (email, email_key, first_name, last_name, company, phone, timezone,
                                 owner, territory, status, created_at, updated_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (email, email.lower(), cols["first_name"], cols["last_name"], cols["company"], cols["phone"],
         cols["timezone"], cols["owner"], cols["territory"], cols["status"], ts(NOW), ts(NOW)))
    return cur.lastrowid

def add_send(store, contact_id, campaign_id="ec-payments", step_id="case-study", *, sent_at=None) -> int:
    store.conn.execute(
        """INSERT OR IGNORE INTO enrollments (campaign_id, contact_id, state, enrolled_at, updated_at)
           VALUES (?, ?, 'active', ?, ?)""", (campaign_id, contact_id, ts(NOW), ts(NOW)))
    enr = store.query_one("SELECT id FROM enrollments WHERE campaign_id = ? AND contact_id = ?",
                          (campaign_id, contact_id))["id"]
    sent = sent_at or NOW - timedelta(hours=2)
    store.conn.execute(
        """INSERT OR IGNORE INTO sends (enrollment_id, campaign_id, step_id, contact_id, status,
                                        attempts, next_attempt_at, queued_at, sent_at)
           VALUES (?, ?, ?, ?, 'sent', 1, ?, ?, ?)""",
        (enr, campaign_id, step_id, contact_id, ts(sent), ts(sent), ts(sent)))
    return store.query_one("SELECT id FROM sends WHERE enrollment_id = ? AND step_id = ?",
                           (enr, step_id))["id"]

def add_link(store, name, campaign_id="ec-payments", step_id="case-study", *, honeypot=False) -> int:
    cur = store.conn.execute(
        "INSERT INTO links (campaign_id, step_id, name, url, honeypot) VALUES (?, ?, ?, ?, ?)",
        (campaign_id, step_id, name, f"https://acme.example/{name}", int(honeypot)))
    return cur.lastrowid

def add_click(store, send_id, link_id, *, at=None, verdict="human") -> int:
    cur = store.conn.execute(
        """INSERT INTO clicks (send_id, link_id, kind, at, ip, user_agent, method, verdict)
           VALUES (?, ?, 'click', ?, '203.0.113.9', 'Mozilla/5.0', 'GET', ?)""",
        (send_id, link_id, ts(at or NOW - timedelta(minutes=4)), verdict))
    return cur.lastrowid

def make_campaign(**kw) -> Campaign:
    defaults = dict(
        id="ec-payments", name="Checkout payments", path="campaigns/ec-payments.yaml",
        timezone="Asia/Tokyo",
        steps=(Step(id="case-study", subject="How {{ similar_company }} cut checkout drop-off",
                    template="x.html", wait=timedelta(0)),
               Step(id="webinar", subject="Webinar: payments that convert", template="y.html",
                    wait=timedelta(days=7))),
        follow_up=(
            FollowUpRule(when=Condition(clicked="any"), task="call", priority="normal",
                         due=timedelta(days=2)),
            FollowUpRule(when=Condition(clicked="pricing"), task="call_now", priority="high",
                         due=timedelta(hours=1),
                         note="Opened the {{ link.name }} page from '{{ step.subject }}', "
                              "{{ minutes_ago }} min ago; {{ clicks_this_week | ordinal }} click this week"),
        ),
        scoring=Scoring(rules=(ScoreRule(Condition("pricing"), 30), ScoreRule(Condition("any"), 5)),
                        half_life=timedelta(days=14), hot_threshold=60),
    )
    defaults.update(kw)
    c = Campaign(**defaults)
    return c

def seed_click(store, link="pricing", *, email="ken@shop.example", at=None, verdict="human",
               step="case-study", **contact):
    cid = store.query_one("SELECT id FROM contacts WHERE email_key = ?", (email,))
    fields = {"first_name": "Ken", "last_name": "Mori", "company": "ShopCo",
              "phone": "+81 3 1234 5678", **contact}
    cid = cid["id"] if cid else add_contact(store, email, **fields)
    send = add_send(store, cid, step_id=step)
    lid = store.query_one("SELECT id FROM links WHERE name = ? AND step_id = ?", (link, step))
    lid = lid["id"] if lid else add_link(store, link, step_id=step)
    return cid, add_click(store, send, lid, at=at, verdict=verdict)


class ChildOutput:
    """A child process's stdout (text), read line by line on a thread, so a child that stops
    printing cannot hang the test and a chatty one never blocks on a full pipe.

    :meth:`ready` parses whole lines only, never a search in the stream: when several
    processes share one pipe (``nurture serve --workers 2``), a line torn by another writer
    fails to match instead of being read as a wrong value (``http://127.0.0.1:33227reps'``).
    """

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        self.proc = proc
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._eof = False
        stdout = proc.stdout

        def read() -> None:
            for line in stdout:
                self._queue.put(line)
            self._queue.put(None)

        threading.Thread(target=read, daemon=True).start()

    def _next(self, deadline: float) -> str | None:
        if self._eof:
            return None
        try:
            line = self._queue.get(timeout=max(0.001, deadline - time.monotonic()))
        except queue.Empty:
            return None
        if line is None:
            self._eof = True
        else:
            self.lines.append(line)
        return line

    def ready(self, pattern: str, *, count: int = 1, timeout: float = 20.0,
              key: Callable[[re.Match[str]], object] | None = None) -> list[re.Match[str]]:
        """Wait for ``count`` lines that each, whole, match ``pattern`` (``re.fullmatch`` on
        the line without its end; with ``key``, one per distinct key, e.g. per worker) and
        return their matches. On timeout or exit, kills the child and fails with its output."""
        regex = re.compile(pattern)
        found: dict[object, re.Match[str]] = {}
        for line in self.lines:  # lines read by an earlier call count too
            if m := regex.fullmatch(line.rstrip("\r\n")):
                found.setdefault(key(m) if key else len(found), m)
        deadline = time.monotonic() + timeout
        while len(found) < count and time.monotonic() < deadline:
            line = self._next(deadline)
            if line is None:
                if self._eof:
                    break
                continue
            if m := regex.fullmatch(line.rstrip("\r\n")):
                found.setdefault(key(m) if key else len(found), m)
        if len(found) < count:
            self.proc.kill()
            err = self.proc.stderr.read() if self.proc.stderr is not None else ""
            raise AssertionError(f"{len(found)} of {count} lines matching {pattern!r}; "
                                 f"stdout: {''.join(self.lines)!r}; stderr: {(err or '')[-2000:]}")
        return list(found.values())

    def finish(self, *, timeout: float = 30.0) -> str:
        """Everything the child printed, once it has closed its stdout (exited)."""
        deadline = time.monotonic() + timeout
        while not self._eof and time.monotonic() < deadline:
            self._next(deadline)
        assert self._eof, f"the child did not exit; stdout so far: {''.join(self.lines)!r}"
        return "".join(self.lines)
