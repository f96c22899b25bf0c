"""Scale regression guards that are not timed: the query plans of the hot paths.

Every statement the scheduler tick, the sender's claim and marks, the tracker's writes and
lookups, the settle pass and follow-up run is captured with a trace callback and explained.
None may scan a large table in full; none may sort all candidates to keep a few (a ``LIMIT``
query needing ``USE TEMP B-TREE FOR ORDER BY``: at a million rows that is a sort of everything
due, on every batch); and none may reach a large table through an index whose equality
columns are only low-cardinality ones (status, verdict …) without a ``LIMIT``: that reads every
human click of the week, or every queued send, to answer a question about one contact. (That
last one is how bench/scale.py found follow-up handling 4 clicks a second at 100,000 clicks.)
Capturing the real statements, rather than copies of their SQL, keeps the guard true when the
store changes.

Other guards live with their modules: the due query's index (tests/test_scheduler.py
``test_due_query_uses_the_index``), a tick over 100,000 enrollments
(``test_tick_is_fast_with_many_enrollments``), and the import's memory bound under
tracemalloc for 200,000 rows (tests/test_contacts.py ``test_import_streams_in_bounded_memory``).
bench/scale.py measures the same paths at a million contacts.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Iterator
from datetime import timedelta

import pytest

from nurture.campaigns import load_campaigns
from nurture.contacts import import_contacts
from nurture.followup import process_clicks
from nurture.scheduler import enroll, tick
from nurture.settle import settle_clicks
from nurture.store import Store, open_store
from nurture.store.tracking import NewClick

#: Tables that grow with contacts, mail and clicks. Scanning one whole is O(n) per call.
BIG = {"contacts", "enrollments", "sends", "clicks", "tasks", "events", "suppressions"}
_SKIP = re.compile(r"\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|PRAGMA|CREATE|INSERT INTO _)", re.I)
_TABLE = re.compile(r"\b(?:FROM|JOIN|UPDATE|INTO)\s+(\w+)(?:\s+(?:AS\s+)?(?!ON\b|WHERE\b|SET\b|JOIN\b|LEFT\b"
                    r"|GROUP\b|ORDER\b|LIMIT\b|VALUES\b|USING\b|INNER\b|CROSS\b)(\w+))?", re.I)
#: Columns with a handful of values: an index search on these alone still reads a slice of the table.
LOW_CARDINALITY = {"status", "state", "verdict", "kind", "handled", "honeypot", "method"}
_SEARCH = re.compile(r"SEARCH (\w+) USING (?:COVERING )?INDEX \w+ \((.*)\)")
#: Plans allowed to say SCAN: why, by statement shape.
ALLOWED = {
    # Round robin's "who got the last task": rowid order from the newest end, stopping at the
    # first task with a rep, which with reps configured is the newest task. Without reps every
    # task has none, so follow-up must not ask (test_no_reps_no_round_robin_lookup).
    "SELECT rep_id FROM tasks WHERE rep_id IS NOT NULL ORDER BY id DESC LIMIT": "reads from the newest end",
}


@contextlib.contextmanager
def traced(store: Store) -> Iterator[list[str]]:
    """Every statement ``store`` runs inside the block, with its parameters bound."""
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    try:
        yield statements
    finally:
        store.conn.set_trace_callback(None)


def shape(sql: str) -> str:
    """The statement with its values blanked, so one shape is explained once."""
    s = re.sub(r"'(?:[^']|'')*'|\b\d+(?:\.\d+)?\b", "?", " ".join(sql.split()))
    return re.sub(r"\?(?:\s*,\s*\?)+", "?…", s)


def problems(conn: sqlite3.Connection, statements: list[str]) -> list[str]:
    """Full scans of big tables and top-N sorts, one line per offending statement."""
    out: list[str] = []
    seen: set[str] = set()
    for sql in statements:
        key = shape(sql)
        if _SKIP.match(sql) or key in seen:
            continue
        seen.add(key)
        if any(key.startswith(a) for a in ALLOWED):
            continue
        aliases = {}
        for table, alias in _TABLE.findall(sql):
            aliases[table] = table
            if alias:
                aliases[alias] = table
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql)]
        bad = []
        for line in plan:
            m = re.match(r"SCAN (\w+)", line)
            if m and aliases.get(m.group(1), m.group(1)) in BIG:
                bad.append(line)
            limited = re.search(r"\bLIMIT\b", sql, re.I) is not None
            if "TEMP B-TREE FOR ORDER BY" in line and limited:
                bad.append(line)
            m = _SEARCH.match(line)
            if m and aliases.get(m.group(1), m.group(1)) in BIG and not limited:
                eq = [c.split("=")[0] for c in m.group(2).split(" AND ") if c.endswith("=?")]
                if eq and all(col in LOW_CARDINALITY for col in eq):
                    bad.append(line)
        if bad:
            out.append(f"{key[:200]}\n    " + "\n    ".join(plan))
    return out


@pytest.fixture
def campaigns(root):
    return {c.id: c for c in load_campaigns(root / "campaigns")}


@pytest.fixture
def world(tmp_path, make_settings, campaigns, now):
    """A store with contacts imported from CSV, enrolled in both shipped campaigns."""
    settings = make_settings(tracking={"settle": "0s"})
    store = open_store(str(tmp_path / "guard.db"))
    csv = tmp_path / "contacts.csv"
    csv.write_text("email,company,timezone\n" + "".join(
        f"u{i}@shop{i}.example,Shop {i},{'Europe/London' if i % 2 else ''}\n" for i in range(40)))
    yield store, settings, csv
    store.close()


# The shipped campaigns' windows overlap 08:00–09:00 UTC on weekdays (London and Tokyo).
def _open(now):
    return now.replace(hour=8, minute=30)


def test_import_and_enroll_use_keys_and_id_ranges(world, campaigns, now):
    store, _, csv = world
    with traced(store) as statements:
        import_contacts(store, csv, now=now, batch_size=16)
        for c in campaigns.values():
            enroll(store, c, now=_open(now) - timedelta(hours=1), all_contacts=True)
    assert store.count_contacts() == 40
    assert any("INSERT OR IGNORE INTO enrollments" in s for s in statements)
    assert not problems(store.conn, statements), "\n".join(problems(store.conn, statements))


def test_scheduler_tick_and_sender_claim_use_indexes(world, campaigns, now):
    store, _, csv = world
    import_contacts(store, csv, now=now)
    for c in campaigns.values():
        enroll(store, c, now=_open(now) - timedelta(hours=1), all_contacts=True)
    t = _open(now)
    with traced(store) as statements:
        r = tick(store, campaigns, now=t)
        claimed = store.claim_sends(owner="guard", now=t, lease=timedelta(minutes=5), limit=16)
        for s in claimed[:8]:
            store.mark_sent(s.id, now=t)
        store.mark_retry(claimed[8].id, next_at=t + timedelta(minutes=5), code=451, error="try later")
        store.mark_failed(claimed[9].id, now=t, code=550, enhanced="5.1.1", error="no such user")
        store.release_sends([s.id for s in claimed[10:]], owner="guard")
        # The next step of ec-payments has a condition: the tick reads the clicks for it.
        r2 = tick(store, campaigns, now=t + timedelta(days=7))
    assert r.queued >= 40 and len(claimed) == 16
    assert r2.queued + r2.skipped + r2.deferred > 0
    claim_sql = [s for s in statements
                 if "lease_owner" in s and s.lstrip().upper().startswith("UPDATE SENDS SET STATUS = 'SENDING'")]
    assert claim_sql, "the claim statement was not seen"
    found = problems(store.conn, statements)
    assert not found, "\n".join(found)


def test_claim_does_not_sort_everything_due(world, campaigns, now):
    """The claim takes ``limit`` rows in due order straight from an index, however many wait."""
    store, _, csv = world
    import_contacts(store, csv, now=now)
    for c in campaigns.values():
        enroll(store, c, now=_open(now) - timedelta(hours=1), all_contacts=True)
    t = _open(now)
    tick(store, campaigns, now=t)
    first = store.claim_sends(owner="a", now=t, lease=timedelta(seconds=1), limit=5)
    store.mark_retry(first[0].id, next_at=t - timedelta(hours=1), code=451, error="earlier")
    with traced(store) as statements:
        # Leases of "a" have expired by now: those rows are due again, with the retry first.
        rows = store.claim_sends(owner="b", now=t + timedelta(seconds=5), lease=timedelta(minutes=5), limit=6)
    assert [r.id for r in rows][0] == first[0].id
    assert {r.id for r in first} <= {r.id for r in rows}
    found = problems(store.conn, statements)
    assert not found, "\n".join(found)


def test_tracker_settle_and_follow_up_use_indexes(world, campaigns, now):
    store, settings, csv = world
    import_contacts(store, csv, now=now)
    enroll(store, campaigns["industry-news"], now=_open(now) - timedelta(hours=1), all_contacts=True)
    t = _open(now)
    tick(store, campaigns, now=t)
    sends = store.claim_sends(owner="guard", now=t, lease=timedelta(minutes=5), limit=40)
    for s in sends:
        store.mark_sent(s.id, now=t)
    link = store.link_id("industry-news", "issue-1", "latest", "https://acme.example/news", False)
    later = t + timedelta(hours=1)
    with traced(store) as statements:
        store.record_clicks([NewClick(send_id=s.id, link_id=link, at=later, method="GET", ip=f"192.0.2.{i + 1}",
                                      user_agent="Mozilla/5.0 (Macintosh) Safari/605.1.15")
                             for i, s in enumerate(sends)])
        store.click_context(sends[0].id)
        store.get_link(link)
        settled = settle_clicks(store, settings, now=later + timedelta(seconds=1))
        tasks = process_clicks(store, campaigns, settings, now=later + timedelta(seconds=2))
        store.unsubscribe(sends[1].id, now=later)
    assert settled.human == 40 and len(tasks) == 40
    found = problems(store.conn, statements)
    assert not found, "\n".join(found)


def test_the_guard_itself_catches_a_full_scan(world):
    store, _, _ = world
    bad = ["SELECT * FROM sends WHERE last_error = 'x' ORDER BY queued_at LIMIT 5",
           "SELECT e.id FROM enrollments e WHERE e.exit_reason = 'x'"]
    found = problems(store.conn, bad)
    assert len(found) == 2 and "SCAN" in found[0]
    assert not problems(store.conn, ["SELECT * FROM sends WHERE id = 3"])


def test_no_reps_no_round_robin_lookup(tmp_path, make_settings, campaigns, now):
    """With no reps configured, a new task must not look for "the last rep assigned": that
    walks every task (bench/scale.py: 4 clicks a second at 10,000 tasks)."""
    settings = make_settings(tracking={"settle": "0s"}, reps=[])
    store = open_store(str(tmp_path / "noreps.db"))
    csv = tmp_path / "c.csv"
    csv.write_text("email\n" + "".join(f"n{i}@shop.example\n" for i in range(5)))
    import_contacts(store, csv, now=now)
    enroll(store, campaigns["industry-news"], now=_open(now) - timedelta(hours=1), all_contacts=True)
    t = _open(now)
    tick(store, campaigns, now=t)
    sends = store.claim_sends(owner="g", now=t, lease=timedelta(minutes=5), limit=5)
    for s in sends:
        store.mark_sent(s.id, now=t)
    link = store.link_id("industry-news", "issue-1", "latest", "https://acme.example/news", False)
    store.record_clicks([NewClick(send_id=s.id, link_id=link, at=t + timedelta(hours=1), method="GET",
                                  ip=f"192.0.2.{i + 1}", user_agent="Mozilla/5.0 (Macintosh) Safari/605.1.15")
                         for i, s in enumerate(sends)])
    settle_clicks(store, settings, now=t + timedelta(hours=2))
    with traced(store) as statements:
        tasks = process_clicks(store, campaigns, settings, now=t + timedelta(hours=2))
    store.close()
    assert len(tasks) == 5
    assert not [q for q in statements if "ORDER BY id DESC" in q and "FROM tasks" in q]
