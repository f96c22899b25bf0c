"""Right to erasure: ``forget`` leaves no trace of the person in any table, and the address stays suppressed."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from support import add_click, add_link, add_send, make_campaign

from nurture.config import Webhook
from nurture.contacts import ERASED_MESSAGE, import_contacts
from nurture.erasure import erased_filter, erased_key, forget, is_erased
from nurture.errors import NotFound
from nurture.followup import process_clicks
from nurture.outcomes import record_outcome
from nurture.store.copy import tables
from nurture.webhooks import fan_out

KEYS = {"k1": b"test-secret"}
ADDRESS = "Yui.Sato@Kumo-Tea.example"
TRACES = ("yui.sato@kumo-tea.example", "Yui", "Sato", "Kumo Tea", "5555 0101", "203.0.113.9", "Mozilla/5.0",
          "ready to buy")


def _csv(tmp_path: Path, rows: str, name: str = "c.csv") -> Path:
    p = tmp_path / name
    p.write_text("Email,First Name,Last Name,Company Name,Phone Number,Country/Region,Favourite Tea\n" + rows,
                 encoding="utf-8")
    return p


def text_columns(store) -> dict[str, list[str]]:
    out = {}
    for t in tables(store):
        if store.dialect.name == "postgres":
            cols = [r["column_name"] for r in store.query(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
                " AND table_name = ? AND data_type = 'text'", (t,))]
        else:
            cols = [r["name"] for r in store.query(f"SELECT name, type FROM pragma_table_info('{t}')")
                    if r["type"].upper() == "TEXT"]
        out[t] = cols
    return out


def traces(store, needles) -> list[tuple[str, str, str]]:
    """(table, column, needle) for every text value that holds a needle, in any letter case."""
    found = []
    for table, cols in text_columns(store).items():
        for col in cols:
            for needle in needles:
                if store.query(f"SELECT 1 FROM {table} WHERE lower({col}) LIKE ? LIMIT 1", (f"%{needle.lower()}%",)):
                    found.append((table, col, needle))
    return found


@pytest.fixture
def lived(store, tmp_path, now, settings):
    """A contact with a whole history: imported, mailed (one failure text naming the address),
    clicked (IP, user agent), a task with a rendered note, notes and BANT, an unsubscribe, events
    and a webhook delivery not yet sent. Beside them, another contact that must stay whole."""
    import_contacts(store, _csv(tmp_path, f"{ADDRESS},Yui,Sato,Kumo Tea KK,+81 3 5555 0101,Japan,Sencha\n"
                                          "sam@harbor.example,Sam,Jones,Harbor Books,,United Kingdom,Earl Grey\n"),
                    now=now)
    yui = store.get_contact_by_email(ADDRESS)
    send = add_send(store, yui.id)
    second = add_send(store, yui.id, step_id="webinar")
    store.conn.execute("UPDATE sends SET status = 'failed', error_code = 550, last_error = ? WHERE id = ?",
                       (f"550 5.1.1 <{ADDRESS.lower()}>: mailbox full", second))
    add_click(store, send, add_link(store, "pricing"), at=now - timedelta(minutes=4))
    campaign = make_campaign(follow_up=(make_campaign().follow_up[0].__class__(
        when=make_campaign().follow_up[1].when, task="call_now", priority="high", due=timedelta(hours=1),
        note="Call {{ contact.first_name }} {{ contact.last_name }} of {{ contact.company }}"),))
    (task_id,) = process_clicks(store, {"ec-payments": campaign}, settings, now=now)
    assert "Yui Sato of Kumo Tea KK" in store.get_task(task_id).reason
    record_outcome(store, task_id=task_id, outcome="connected", now=now, notes="Yui Sato is ready to buy",
                   bant={"budget": "Yui: 2M yen", "timeline": "Q1"})
    store.unsubscribe(send, now=now)
    hooks = (Webhook(url="http://127.0.0.1:9/hook"),)
    assert fan_out(store, hooks, now=now) >= 2
    sam = store.get_contact_by_email("sam@harbor.example")
    return yui, sam, task_id


def test_forget_leaves_no_trace_in_any_table_and_the_address_stays_suppressed(store, lived, now):
    yui, sam, task_id = lived
    assert {t for t, _, _ in traces(store, TRACES)} >= {"contacts", "sends", "clicks", "tasks", "events"}
    before = {t: store.query(f"SELECT count(*) AS n FROM {t}")[0]["n"] for t in text_columns(store)}
    done = forget(store, email=ADDRESS.upper(), keys=KEYS, key_id="k1", now=now)
    assert done.contact_id == yui.id
    assert done.counts["clicks"] == 1 and done.counts["tasks"] == 1 and done.counts["send_errors"] == 1
    assert done.counts["events"] >= 3 and done.counts["webhook_deliveries_cancelled"] >= 2
    assert any("keyed hash" in line for line in done.lines())

    assert traces(store, TRACES) == []
    # Counts for reports stay: no row went away.
    after = {t: store.query(f"SELECT count(*) AS n FROM {t}")[0]["n"] for t in text_columns(store)}
    assert after == before
    task = store.get_task(task_id)
    assert task.outcome == "connected" and task.notes is None and store.task_bant(task_id) == {}
    assert store.query_one("SELECT count(*) AS n FROM webhook_deliveries WHERE status = 'pending'")["n"] == 0
    # The other contact is untouched.
    assert store.get_contact_by_email("sam@harbor.example") == sam

    # Still suppressed: by hash, in the suppression list and the scheduler's joins.
    assert is_erased(store, ADDRESS, keys=KEYS)
    key = erased_key(ADDRESS, keys=KEYS, key_id="k1")
    assert store.query_one("SELECT reason FROM suppressions WHERE email_key = ?", (key,))["reason"] == "unsubscribed"
    gone = store.get_contact(yui.id)
    assert gone.email == key and gone.status == "erased" and gone.first_name == "" and dict(gone.attributes) == {}
    assert store.contact_blocked(yui.id)
    with pytest.raises(NotFound, match="already erased"):
        forget(store, email=ADDRESS, keys=KEYS, key_id="k1", now=now)


def test_an_erased_address_is_refused_when_imported_again(store, lived, tmp_path, now):
    forget(store, email=ADDRESS, keys=KEYS, key_id="k1", now=now)
    again = _csv(tmp_path, "new@shop.example,New,,,,,\n" + f"{ADDRESS.lower()},Yui,Sato,Kumo Tea KK,,Japan,Sencha\n",
                 "again.csv")
    s = import_contacts(store, again, now=now, display_name="again.csv", erased=erased_filter(store, keys=KEYS))
    assert [str(e) for e in s.errors] == [f"again.csv:3: email: {ERASED_MESSAGE}"]
    assert (s.new, s.skipped) == (1, 1)
    assert store.get_contact_by_email(ADDRESS) is None
    assert traces(store, ("yui.sato@kumo-tea.example", "Sato")) == []
    # Under a rotated key the old hash still matches while the old key is configured.
    assert is_erased(store, ADDRESS, keys={"k2": b"new-secret", **KEYS})


@pytest.mark.sqlite_only("free pages and the WAL are SQLite's; PostgreSQL needs VACUUM (documented)")
def test_forget_leaves_no_copy_in_the_database_file(store, lived, now, db_path):
    forget(store, email=ADDRESS, keys=KEYS, key_id="k1", now=now)
    raw = b"".join(p.read_bytes() for p in Path(db_path).parent.glob(Path(db_path).name + "*"))
    assert b"yui.sato@kumo-tea.example" not in raw.lower()
    assert b"Kumo Tea" not in raw


def test_no_erasure_no_import_check(store):
    assert erased_filter(store, keys=KEYS) is None
