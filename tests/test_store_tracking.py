"""TrackingMixin on a real SQLite file: the ledger, settling inputs, verdicts, unsubscribe."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from nurture.store import Store, open_store
from nurture.store.tracking import NewClick, SettledVerdict

LINKS = (("pricing", "https://acme.example/pricing?utm_source=nurture"),
         ("case-study", "https://acme.example/case/ec"),
         ("docs", "https://docs.acme.example/start"))


@dataclass(frozen=True)
class Seeded:
    contact_ids: list[int]
    send_ids: list[int]
    link_ids: dict[str, int]  # name → id, "honeypot" included
    campaign_id: str = "ec-payments"
    step_id: str = "case-study"


def seed(store: Store, *, now: datetime, contacts: int = 1, delivered: datetime | None = None,
         queued: bool = False) -> Seeded:
    """Contacts, one active enrollment and one send each (delivered at ``delivered``), and
    the step's three visible links plus the honeypot. Fixture rows, written directly."""
    t = now.timestamp()
    sent_at = (delivered or now).timestamp()
    cids, sids = [], []
    with store.transaction() as db:
        for i in range(contacts):
            cid = db.table("contacts").insert({
                "email": f"Buyer{i}@Merchant{i}.example", "email_key": f"buyer{i}@merchant{i}.example",
                "first_name": "Buyer", "company": f"Merchant {i}", "created_at": t, "updated_at": t,
            }).last_pk
            eid = db.table("enrollments").insert({
                "campaign_id": "ec-payments", "contact_id": cid, "state": "active",
                "next_step": "service-page", "enrolled_at": t, "updated_at": t,
            }).last_pk
            sid = db.table("sends").insert({
                "enrollment_id": eid, "campaign_id": "ec-payments", "step_id": "case-study",
                "contact_id": cid, "status": "queued" if queued else "sent",
                "next_attempt_at": t, "queued_at": t - 60, "sent_at": None if queued else sent_at,
            }).last_pk
            cids.append(cid)
            sids.append(sid)
        links = {}
        for name, url in LINKS:
            links[name] = db.table("links").insert({"campaign_id": "ec-payments", "step_id": "case-study",
                                              "name": name, "url": url}).last_pk
        links["honeypot"] = db.table("links").insert({"campaign_id": "ec-payments", "step_id": "case-study",
                                                "name": "honeypot", "url": "https://acme.example/",
                                                "honeypot": 1}).last_pk
        # A link of another step: a token pairing it with these sends must not redirect.
        links["other-step"] = db.table("links").insert({"campaign_id": "ec-payments", "step_id": "webinar",
                                                  "name": "register", "url": "https://acme.example/webinar"}).last_pk
    return Seeded(cids, sids, links)


def test_record_clicks_in_one_transaction_and_read_back(db_path, now):
    store = open_store(db_path)
    s = seed(store, now=now)
    ids = store.record_clicks([
        NewClick(send_id=s.send_ids[0], link_id=s.link_ids["pricing"], at=now, method="GET",
                 ip="198.51.100.7", user_agent="Mozilla/5.0"),
        NewClick(send_id=s.send_ids[0], link_id=s.link_ids["docs"], at=now, method="HEAD",
                 ip="40.107.1.2", user_agent=None, verdict="scanner", score=1.0, reasons=("HEAD",)),
    ])
    assert len(ids) == 2 and ids[1] == ids[0] + 1
    first, second = store.get_click(ids[0]), store.get_click(ids[1])
    assert (first.verdict, first.ip, first.method, first.link_id) == (
        "pending", "198.51.100.7", "GET", s.link_ids["pricing"])
    assert first.at == now
    assert (second.verdict, second.reasons) == ("scanner", ("HEAD",))
    rows = store.query("SELECT settled_at FROM clicks ORDER BY id")
    assert rows[0]["settled_at"] is None and rows[1]["settled_at"] == now.timestamp()


def test_record_clicks_rolls_back_whole_batch(db_path, now):
    store = open_store(db_path)
    s = seed(store, now=now)
    good = NewClick(send_id=s.send_ids[0], link_id=s.link_ids["pricing"], at=now, method="GET")
    bad = NewClick(send_id=s.send_ids[0], link_id=None, at=now, method=None)  # type: ignore[arg-type]
    # The NOT NULL constraint refuses the second row (PostgreSQL's error is raised as sqlite3's).
    with pytest.raises(sqlite3.IntegrityError, match=r"(?i)not[ -]null"):
        store.record_clicks([good, bad])
    assert store.query("SELECT count(*) AS n FROM clicks")[0]["n"] == 0


def test_record_clicks_rejects_unknown_or_foreign_sends(db_path, now):
    store = open_store(db_path)
    s = seed(store, now=now)
    sid, link = s.send_ids[0], s.link_ids["pricing"]
    ids = store.record_clicks([
        NewClick(send_id=sid, link_id=link, at=now, method="GET", campaign_id="ec-payments", step_id="case-study"),
        NewClick(send_id=sid, link_id=link, at=now, method="GET", campaign_id="ec-payments", step_id="webinar"),
        NewClick(send_id=9999, link_id=link, at=now, method="GET"),
        NewClick(send_id=sid, link_id=None, at=now, method="GET", kind="open"),
    ])
    assert ids[1] is None and ids[2] is None
    assert ids[0] is not None and ids[3] == ids[0] + 1
    assert [r["kind"] for r in store.query("SELECT kind FROM clicks ORDER BY id")] == ["click", "open"]


def test_click_context_and_links(db_path, now):
    store = open_store(db_path)
    s = seed(store, now=now, delivered=now - timedelta(minutes=3))
    ctx = store.click_context(s.send_ids[0])
    assert ctx.email == "Buyer0@Merchant0.example"
    assert (ctx.campaign_id, ctx.step_id, ctx.delivered_at) == ("ec-payments", "case-study", now - timedelta(minutes=3))
    assert store.click_context(9999) is None
    link = store.get_link(s.link_ids["honeypot"])
    assert link.honeypot and link.step_id == "case-study"
    assert store.get_link(9999) is None


def test_pending_clicks_gathers_judge_inputs(db_path, now):
    store = open_store(db_path)
    s = seed(store, now=now, contacts=4)
    ip = "203.0.113.9"
    store.record_clicks([
        NewClick(send_id=sid, link_id=s.link_ids["pricing"], at=now + timedelta(seconds=i), method="GET", ip=ip)
        for i, sid in enumerate(s.send_ids)
    ] + [NewClick(send_id=s.send_ids[0], link_id=s.link_ids["honeypot"], at=now, method="GET", ip=ip,
                  verdict="scanner", score=1.0)])
    items = store.pending_clicks(before=now + timedelta(minutes=1))
    assert len(items) == 4  # the honeypot hit is already judged
    first = items[0]
    assert first.honeypot_hit and not first.honeypot_link
    assert first.ip_recipients == 4
    assert first.link_count == 3
    assert first.delivered_at == now
    # The honeypot's click is among the siblings, named as hidden, for the burst rules.
    assert [c.link_id for c in first.other_clicks] == [s.link_ids["honeypot"]]
    assert first.honeypot_ids == frozenset({s.link_ids["honeypot"]})
    assert store.pending_clicks(before=now - timedelta(seconds=1)) == []


def test_opens_and_unsubscribe_pages_are_evidence_never_clicks(db_path, now):
    """An open and a GET of the unsubscribe page are siblings for the judge, never pending
    clicks to settle, and never counted: not as human clicks, nor as recipients of an IP."""
    store = open_store(db_path)
    s = seed(store, now=now, contacts=3)
    sid = s.send_ids[0]
    ip = "203.0.113.9"
    store.record_clicks([
        NewClick(send_id=sid, link_id=s.link_ids["pricing"], at=now, method="GET", ip=ip),
        NewClick(send_id=sid, link_id=None, at=now + timedelta(seconds=0.3), method="GET", ip=ip, kind="open"),
        NewClick(send_id=sid, link_id=None, at=now + timedelta(seconds=0.6), method="GET", ip=ip, kind="unsubscribe"),
    ] + [NewClick(send_id=other, link_id=None, at=now, method="GET", ip=ip, kind=kind)
         for other, kind in zip(s.send_ids[1:], ("open", "unsubscribe"), strict=True)])
    (item,) = store.pending_clicks(before=now + timedelta(minutes=1))
    assert sorted(c.kind for c in item.other_clicks) == ["open", "unsubscribe"]
    assert item.ip_recipients == 1  # the other recipients only opened / fetched the page
    # Even marked human by hand, evidence rows count for nothing.
    store.conn.execute("UPDATE clicks SET verdict = 'human' WHERE kind != 'click'")
    assert store.unhandled_human_clicks() == []
    assert store.human_click_count(s.contact_ids[0], since=now - timedelta(days=1)) == 0
    assert [r.kind for r in store.list_clicks(kind="unsubscribe")] == ["unsubscribe"] * 2


def test_settle_queue_index_holds_only_clicks(db_path):
    store = open_store(db_path)
    if db_path.startswith("postgres"):
        rows = store.query("SELECT indexdef AS sql FROM pg_indexes WHERE indexname = 'clicks_pending'")
    else:
        rows = store.query("SELECT sql FROM sqlite_master WHERE name = 'clicks_pending'")
    (sql,) = [r["sql"] for r in rows]
    assert "kind" in sql and "'click'" in sql and "'pending'" in sql


def test_save_verdicts_only_over_pending(db_path, now):
    store = open_store(db_path)
    s = seed(store, now=now)
    (cid,) = store.record_clicks([NewClick(send_id=s.send_ids[0], link_id=s.link_ids["docs"], at=now, method="GET")])
    later = now + timedelta(minutes=2)
    assert store.save_verdicts([SettledVerdict(cid, "human", 0.0, ("no scanner signal",))], now=later) == 1
    assert store.save_verdicts([SettledVerdict(cid, "scanner", 1.0, ("late",))], now=later) == 0
    c = store.get_click(cid)
    assert (c.verdict, c.reasons) == ("human", ("no scanner signal",))
    listed = store.list_clicks(verdict="human")
    assert [r.id for r in listed] == [cid]
    assert (listed[0].link, listed[0].settled_at, listed[0].reasons) == ("docs", later, ("no scanner signal",))
    assert (listed[0].at, listed[0].email, listed[0].handled, listed[0].honeypot) == \
        (now, "Buyer0@Merchant0.example", False, False)
    assert store.list_clicks(verdict="scanner") == []
    assert store.list_clicks(campaign_id="other") == []


def test_unsubscribe_suppresses_exits_and_logs_once(db_path, now):
    store = open_store(db_path)
    s = seed(store, now=now, queued=True)
    assert store.unsubscribe(s.send_ids[0], now=now) == "Buyer0@Merchant0.example"
    assert store.unsubscribe(s.send_ids[0], now=now) == "Buyer0@Merchant0.example"
    assert store.query("SELECT reason FROM suppressions") == [{"reason": "unsubscribed"}]
    enr = store.query("SELECT state, exit_reason FROM enrollments")
    assert enr == [{"state": "exited", "exit_reason": "unsubscribed"}]
    assert store.query("SELECT status FROM contacts") == [{"status": "unsubscribed"}]
    # The queued send will never go out: its enrollment exited, and the address is suppressed.
    assert store.query("SELECT status FROM sends") == [{"status": "skipped"}]
    assert store.is_suppressed("buyer0@merchant0.example")
    events = store.events(kind="contact.unsubscribed")
    assert len(events) == 1 and events[0].payload["send_id"] == s.send_ids[0]
    assert store.unsubscribe(12345, now=now) is None


def test_clicks_command_json_and_table(db_path, now, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from nurture.cli import main

    # Through COLUMNS: setting console.width would pin the shared console at whatever width
    # monkeypatch restores (80), and later CLI tests that pass COLUMNS=200 would wrap.
    monkeypatch.setenv("COLUMNS", "240")

    store = open_store(db_path)
    s = seed(store, now=now, delivered=now - timedelta(hours=2))
    store.record_clicks([
        NewClick(send_id=s.send_ids[0], link_id=s.link_ids["pricing"], at=now, method="HEAD",
                 ip="40.107.1.2", verdict="scanner", score=1.0, reasons=("HEAD request",)),
        NewClick(send_id=s.send_ids[0], link_id=s.link_ids["docs"], at=now - timedelta(hours=1),
                 method="GET", ip="198.51.100.4", user_agent="Mozilla/5.0 (Macintosh) Firefox/140.0"),
    ])
    store.close()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"database: {db_path}\n")
    runner = CliRunner()
    out = runner.invoke(main, ["--config", str(cfg), "clicks", "--json", "--settle"])
    assert out.exit_code == 0, out.output
    import json
    rows = json.loads(out.stdout)
    assert [(r["link"], r["verdict"]) for r in rows] == [("pricing", "scanner"), ("docs", "human")]
    assert rows[0]["reasons"] == ["HEAD request"] and rows[1]["reasons"]
    out = runner.invoke(main, ["--config", str(cfg), "clicks", "--verdict", "scanner"])
    assert out.exit_code == 0 and "HEAD request" in out.output and "docs" not in out.output
    out = runner.invoke(main, ["--config", str(cfg), "clicks", "--campaign", "nope"])
    assert out.exit_code == 0 and "no clicks" in out.output
