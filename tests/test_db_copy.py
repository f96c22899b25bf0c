"""nurture db copy: SQLite → PostgreSQL → SQLite keeps every row and id; ids continue after."""

from __future__ import annotations

from datetime import timedelta

import pytest
from _send_worker import seed
from click.testing import CliRunner

from nurture.cli import main
from nurture.store import open_store
from nurture.store.copy import copy_database
from nurture.store.tracking import NewClick

pytestmark = pytest.mark.postgres


def _fill(path: str, now) -> dict[str, int]:
    s = open_store(path)
    ids = seed(s, n=120, now=now, steps=("s1", "s2"))
    sent = s.claim_sends(owner="t", now=now, lease=timedelta(minutes=5), limit=50)
    for x in sent[:40]:
        s.mark_sent(x.id, now=now)
    link = s.link_id("c1", "s1", "pricing", "https://acme.example/pricing")
    s.record_clicks([NewClick(send_id=ids[i], link_id=link, at=now, method="GET", ip="192.0.2.1",
                              user_agent="Mozilla/5.0 \u00e9t\u00e9 'quoted' %s ?")
                     for i in range(30)])
    s.suppress("user7@example.com", "manual", now=now)
    counts = {t: s.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
              for t in ("contacts", "enrollments", "sends", "links", "clicks", "events", "suppressions")}
    s.close()
    return counts


def test_sqlite_to_postgres_and_back_keeps_rows_and_ids(tmp_path, pg_url, now):
    src = str(tmp_path / "src.db")
    counts = _fill(src, now)
    a, b = open_store(src), open_store(pg_url)
    copied = {c.table: c for c in copy_database(source=a, dest=b, batch=17)}
    for table, n in counts.items():
        assert copied[table].rows == n == copied[table].dest_rows, table
    # same rows, same ids, same text (quotes, %, ?, non-ASCII survive)
    q = "SELECT id, send_id, user_agent, at FROM clicks ORDER BY id"
    assert [tuple(r) for r in a.conn.execute(q).fetchall()] == [tuple(r) for r in b.conn.execute(q).fetchall()]
    # the identity sequence continues after the copied ids
    new_link = b.link_id("c1", "s9", "demo", "https://acme.example/demo")
    assert new_link == a.query_one("SELECT max(id) AS m FROM links")["m"] + 1
    assert b.is_suppressed("USER7@example.com")
    back = str(tmp_path / "back.db")
    c = open_store(back)
    copy_database(source=b, dest=c)
    assert c.outbox_counts() == b.outbox_counts() == a.outbox_counts()
    assert c.query("SELECT * FROM sends ORDER BY id") == a.query("SELECT * FROM sends ORDER BY id")
    for s in (a, b, c):
        s.close()


def test_copy_refuses_a_destination_with_rows(tmp_path, pg_url, now):
    src = str(tmp_path / "src.db")
    _fill(src, now)
    dest = open_store(pg_url)
    seed(dest, n=1, now=now)
    dest.close()
    result = CliRunner().invoke(main, ["db", "copy", src, pg_url])
    assert result.exit_code == 1
    assert "not empty" in result.output and "Traceback" not in result.output


def test_cli_copy_prints_verified_counts(tmp_path, pg_url, now):
    src = str(tmp_path / "src.db")
    counts = _fill(src, now)
    result = CliRunner().invoke(main, ["db", "copy", src, pg_url, "--batch", "50"])
    assert result.exit_code == 0, result.output
    assert "sends" in result.output and str(counts["sends"]) in result.output
    assert "differs" not in result.output
    missing = CliRunner().invoke(main, ["db", "copy", str(tmp_path / "nope.db"), pg_url])
    assert missing.exit_code == 1 and "no database file" in missing.output


def test_tables_come_after_the_tables_their_foreign_keys_name(tmp_path, pg_url):
    from nurture.store.copy import tables

    for path in (str(tmp_path / "x.db"), pg_url):
        s = open_store(path)
        order = tables(s)
        assert order.index("contacts") < order.index("enrollments") < order.index("sends")
        assert order.index("contacts") < order.index("tasks")
        assert not any(t.startswith("_") for t in order) and "rate_state" in order
        s.close()
