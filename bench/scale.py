"""Benchmark: a million contacts on one machine.

    python bench/scale.py [--contacts 1000000] [--quick] [--due 10000] [--clicks 100000]

Generates a contacts CSV, then runs each step in a fresh Python process so that its time and
its own peak RSS (``os.wait4`` rusage of that child) are measured alone:

1. ``nurture contacts import FILE`` (the real CLI, in the child process),
2. ``nurture enroll industry-news --all``,
3. setup (not a target): every enrollment waits a year, except exactly ``--due`` of them,
   spread evenly over the id range, which are due a minute before the bench clock,
4. one scheduler tick at the bench clock (a Tuesday 10:00 UTC, inside the campaign's
   London send window) that must find and queue exactly those ``--due``,
5. ``nurture send --once`` of the queued rows to a counting aiosmtpd sink in its own process,
6. ``--clicks`` clicks written through ``Store.record_clicks`` in batches of ``--click-batch``
   (what the tracker's group-commit ledger calls; the HTTP side is bench/tracker.py),
7. the settle pass (``nurture.web.ledger.settle_clicks``) over those clicks, and
8. follow-up (``nurture.followup.process_clicks``) turning the human ones into tasks.

Targets (issue 7): import + enroll < 2 minutes, peak RSS < 300 MB in every step, the tick < 1 s.
``--quick`` is ``--contacts 50000 --clicks 20000`` for trying it out.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CAMPAIGN = "industry-news"
SECRET = "bench-secret"
ZONES = ("Europe/London", "Europe/Dublin", "Europe/Lisbon", "Europe/Paris", "Europe/Berlin", "")
INDUSTRIES = ("apparel", "beauty", "electronics", "food", "home", "sports", "toys", "books")
MB = 1024 * 1024


def bench_clock() -> datetime:
    """The most recent Tuesday 10:00 UTC at least a day ago: inside industry-news' window
    (Mon–Fri 08:00–17:00 London) and in the past, so the real-time ``send --once`` can claim."""
    today = datetime.now(UTC).replace(hour=10, minute=0, second=0, microsecond=0) - timedelta(days=1)
    return today - timedelta(days=(today.weekday() - 1) % 7)


# -- the parent: generate, run each step in a child, report --------------------------------------

def generate_csv(path: Path, n: int) -> None:
    """A realistic import file: the contact columns, a country, and two template attributes."""
    rng = random.Random(7)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Email", "First Name", "Last Name", "Company", "Industry", "Phone", "Timezone", "Owner",
                    "Country", "similar_company", "plan"])
        for i in range(n):
            w.writerow([f"buyer.{i}@shop{i % 9973}.example", f"Kim{i % 5000}", f"Lee{i % 777}", f"Shop {i}",
                        INDUSTRIES[i % len(INDUSTRIES)], f"+44 20 7946 {i % 10000:04d}", ZONES[i % len(ZONES)],
                        "" if i % 3 else f"rep{i % 12}", "GB", "Kissa Roasters", rng.choice(("free", "pro"))])


def write_config(d: Path, *, smtp_port: int = 1025) -> Path:
    cfg = d / "config.yaml"
    cfg.write_text(json.dumps({
        "database": str(d / "scale.db"),
        "campaigns_dir": str(ROOT / "campaigns"), "templates_dir": str(ROOT / "templates"),
        "sender": {"from": "Acme Payments <hello@acme.example>", "postal_address": "1-2-3 Marunouchi, Tokyo"},
        "smtp": {"host": "127.0.0.1", "port": smtp_port, "tls": "none", "max_connections": 8,
                 "rate": "1000000/s"},
        "tracking": {"base_url": "http://127.0.0.1:8080", "secret_env": "NURTURE_SECRET"},
        # The CSV's owners; on shift around the clock, so routing takes its usual path.
        "reps": [{"id": f"rep{i}", "name": f"Rep {i}", "email": f"rep{i}@acme.example", "timezone": "UTC",
                  "hours": "00:00-23:59", "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                  "capacity": 100_000} for i in range(12)],
    }))  # JSON is YAML
    return cfg


def run_step(step: str, d: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Run one step in a fresh interpreter; its wall time, peak RSS and what it reported."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", step, "--dir", str(d),
           "--due", str(args.due), "--clicks", str(args.clicks), "--click-batch", str(args.click_batch)]
    env = {**os.environ, "NURTURE_SECRET": SECRET, "PYTHONPATH": str(ROOT)}
    log = (d / f"{step}.log").open("w")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=d)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    log.close()
    if proc.returncode != 0:
        sys.stderr.write((d / f"{step}.log").read_text()[-4000:])
        raise SystemExit(f"step {step} failed with exit code {proc.returncode}")
    out_file = d / f"{step}.json"
    result = json.loads(out_file.read_text()) if out_file.exists() else {}
    result.update(wall=wall, rss_mb=usage.ru_maxrss / 1024, cpu=usage.ru_utime + usage.ru_stime,
                  db_mb=db_size(d / "scale.db"))
    return result


def db_size(db: Path) -> float:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*")) / MB


def checkpoint(db: Path) -> None:
    """Fold the WAL back into the database file so the next step starts (and sizes) clean."""
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def count(db: Path, sql: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(sql).fetchone()[0])


def _sink_process(conn: Any) -> None:  # runs in a child process
    import asyncio

    from nurture.sink import Sink, start_sink

    class CountingSink(Sink):
        """Answers 250 and keeps nothing, so its memory stays flat."""

        async def handle_DATA(self, server, session, envelope):  # type: ignore[override]
            self.count = getattr(self, "count", 0) + 1
            return "250 2.0.0 OK queued"

    async def main() -> None:
        running = await start_sink(CountingSink())
        conn.send(running.port)
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        conn.send(running.sink.count if hasattr(running.sink, "count") else 0)
        await running.aclose()

    asyncio.run(main())


class SinkProcess:
    """A fast loopback SMTP sink in its own process (it must not share the sender's CPU)."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=_sink_process, args=(child,), daemon=True)
        self.proc.start()
        self.port: int = self.parent.recv()

    def close(self) -> int:
        self.parent.send("stop")
        received = self.parent.recv() if self.parent.poll(10) else -1
        self.proc.join(5)
        return received


def machine() -> str:
    mem = ""
    try:
        total = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
        mem = f", {int(total.split()[1]) / MB:.1f} GiB RAM"
    except (OSError, StopIteration):
        pass
    return (f"{os.cpu_count()} CPUs{mem}, Python {sys.version.split()[0]}, "
            f"SQLite {sqlite3.sqlite_version}")


def report(rows: list[tuple[str, dict[str, Any], str, str]], *, n: int, total_mb: float) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"nurture at {n:,} contacts — {machine()}", header_style="bold")
    for col, just in (("step", "left"), ("time", "right"), ("target", "left"), ("peak RSS", "right"),
                      ("DB after", "right"), ("detail", "left")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for name, r, target, detail in rows:
        table.add_row(name, f"{r['time']:.2f} s", target, f"{r['rss_mb']:.0f} MB", f"{r['db_mb']:.0f} MB", detail)
    Console(width=max(120, shutil.get_terminal_size().columns)).print(table)
    print(f"database size at the end: {total_mb:.0f} MB")


def parent(args: argparse.Namespace) -> None:
    d = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="nurture-scale-"))
    d.mkdir(parents=True, exist_ok=True)
    db = d / "scale.db"
    for old in d.glob("scale.db*"):
        old.unlink()
    n = args.contacts
    csv_path = d / "contacts.csv"
    print(f"work dir {d}; {machine()}", flush=True)
    t0 = time.perf_counter()
    if not (csv_path.exists() and csv_path.with_suffix(".n").exists()
            and csv_path.with_suffix(".n").read_text() == str(n)):
        generate_csv(csv_path, n)
        csv_path.with_suffix(".n").write_text(str(n))
    print(f"contacts CSV: {csv_path.stat().st_size / MB:.0f} MB, {n:,} rows "
          f"({time.perf_counter() - t0:.1f} s to generate or reuse)", flush=True)
    write_config(d)
    rows: list[tuple[str, dict[str, Any], str, str]] = []

    def step(name: str, label: str, target: str, detail: Any) -> dict[str, Any]:
        print(f"running {name} …", flush=True)
        r = run_step(name, d, args)
        r.setdefault("time", r["wall"])
        checkpoint(db)
        # Flush what this step wrote, so the next step is not timed during its writeback.
        os.sync()
        r["db_mb"] = db_size(db)
        rows.append((label, r, target, detail(r) if callable(detail) else detail))
        print(f"  {r['time']:.2f} s, peak RSS {r['rss_mb']:.0f} MB, DB {r['db_mb']:.0f} MB", flush=True)
        return r

    imp = step("import", "contacts import", "", lambda r: f"{count(db, 'SELECT count(*) FROM contacts'):,} contacts"
               f" via {r.get('via', '?')}")
    enr = step("enroll", "enroll --all", "", lambda r: f"{count(db, 'SELECT count(*) FROM enrollments'):,} enrollments"
               f" via {r.get('via', '?')}")
    both = imp["wall"] + enr["wall"]
    rows.append(("import + enroll", {"time": both, "rss_mb": max(imp["rss_mb"], enr["rss_mb"]),
                                     "db_mb": enr["db_mb"]}, "< 120 s " + ("✓" if both < 120 else "✗"), ""))
    step("arrange", "setup: make exactly --due due", "", lambda r: f"{r['due']:,} due of {r['active']:,}")
    tk = step("tick", "scheduler tick", "", lambda r: f"found {r['found']:,}, queued {r['queued']:,}; "
              f"empty tick {r['empty_tick'] * 1000:.0f} ms; process {r['wall']:.1f} s")
    rows[-1] = (rows[-1][0], rows[-1][1], "< 1 s " + ("✓" if tk["time"] < 1 else "✗"), rows[-1][3])
    sink = SinkProcess()
    write_config(d, smtp_port=sink.port)
    try:
        sn = step("send", "send --once to a sink", "", lambda r: "")
    finally:
        received = sink.close()
    sent = count(db, "SELECT count(*) FROM sends WHERE status = 'sent'")
    rows[-1] = (rows[-1][0], rows[-1][1], "", f"{sent:,} sent, {received:,} at the sink, "
                f"{sent / sn['time']:.0f} msg/s (process incl. start-up)")
    step("clicks", "record clicks", "", lambda r: f"{r['clicks']:,} clicks in batches of {args.click_batch}: "
         f"{r['clicks'] / r['time']:.0f} clicks/s")
    if not args.no_followup:
        step("settle", "settle pass", "", lambda r: f"{r['human']:,} human, {r['scanner']:,} scanner, "
             f"{r['passes']} passes: {(r['human'] + r['scanner']) / max(r['time'], 1e-9):.0f} clicks/s")
        step("followup", "follow-up → tasks", "", lambda r: f"{r['tasks']:,} tasks from {r['handled']:,} clicks: "
             f"{r['handled'] / max(r['time'], 1e-9):.0f} clicks/s")
    for name, r, target, _ in rows:
        if "rss_mb" in r and not name.startswith("import + "):
            ok = r["rss_mb"] < 300
            rows[rows.index((name, r, target, _))] = (name, r, (target + "; " if target else "")
                                                      + f"RSS < 300 MB {'✓' if ok else '✗'}", _)
    report(rows, n=n, total_mb=db_size(db))
    if not args.keep and not args.dir:
        shutil.rmtree(d, ignore_errors=True)


# -- the children: one step each ---------------------------------------------------------------

def _cli(args: list[str]) -> None:
    from nurture.cli import main

    try:
        main(args, standalone_mode=False)
    except SystemExit as e:
        if e.code:
            raise


def _has_command(*path: str) -> bool:
    from nurture.cli import main

    group: Any = main
    for name in path:
        group = getattr(group, "commands", {}).get(name)
        if group is None:
            return False
    return True


def child(step: str, d: Path, args: argparse.Namespace) -> None:
    cfg = str(d / "config.yaml")
    db = str(d / "scale.db")
    clock = bench_clock()
    out: dict[str, Any] = {}
    if step == "import":
        if _has_command("contacts", "import"):
            _cli(["--config", cfg, "contacts", "import", str(d / "contacts.csv")])
            out["via"] = "nurture contacts import"
        else:  # the CLI command is not on main yet: the library call it wraps
            from nurture.contacts import import_contacts
            from nurture.store import open_store

            store = open_store(db)
            import_contacts(store, d / "contacts.csv", now=datetime.now(UTC))
            store.close()
            out["via"] = "nurture.contacts.import_contacts"
    elif step == "enroll":
        if _has_command("enroll"):
            _cli(["--config", cfg, "enroll", CAMPAIGN, "--all"])
            out["via"] = "nurture enroll --all"
        else:
            from nurture.campaigns import find_campaign
            from nurture.scheduler import enroll
            from nurture.store import open_store

            store = open_store(db)
            enroll(store, find_campaign(ROOT / "campaigns", CAMPAIGN), now=clock, all_contacts=True)
            store.close()
            out["via"] = "nurture.scheduler.enroll"
    elif step == "arrange":
        # Bench setup, not product code: plain SQL on the bench's own database.
        conn = sqlite3.connect(db)
        active = conn.execute("SELECT count(*), min(id), max(id) FROM enrollments WHERE state = 'active'").fetchone()
        n, lo, hi = active
        every = max(1, n // args.due)
        with conn:
            conn.execute("UPDATE enrollments SET next_at = ? WHERE state = 'active'",
                         ((clock + timedelta(days=365)).timestamp(),))
            conn.execute("UPDATE enrollments SET next_at = ? WHERE id IN (SELECT id FROM enrollments"
                         " WHERE state = 'active' AND (id - ?) % ? = 0 LIMIT ?)",
                         ((clock - timedelta(minutes=1)).timestamp(), lo, every, args.due))
        out["due"] = conn.execute("SELECT count(*) FROM enrollments WHERE next_at <= ?",
                                  (clock.timestamp(),)).fetchone()[0]
        out["active"] = n
        conn.close()
    elif step == "tick":
        from nurture.campaigns import load_campaigns
        from nurture.scheduler import tick
        from nurture.store import open_store

        campaigns = {c.id: c for c in load_campaigns(ROOT / "campaigns")}
        store = open_store(db)
        t0 = time.perf_counter()
        r = tick(store, campaigns, now=clock, limit=args.due)
        out["time"] = time.perf_counter() - t0
        out["found"] = r.queued + r.skipped + r.exited + r.deferred
        out["queued"] = r.queued
        t0 = time.perf_counter()
        r2 = tick(store, campaigns, now=clock, limit=args.due)
        out["empty_tick"] = time.perf_counter() - t0
        assert r2.queued == 0, r2
        store.close()
    elif step == "send":
        _cli(["--config", cfg, "send", "--once"])
    elif step == "clicks":
        out.update(record_clicks(db, args.clicks, args.click_batch))
    elif step == "settle":
        from nurture.config import load_settings
        from nurture.settle import settle_clicks
        from nurture.store import open_store

        settings = load_settings(cfg)
        store = open_store(db)
        later = datetime.now(UTC) + timedelta(days=2)  # every click's settle window has passed
        human = scanner = passes = 0
        t0 = time.perf_counter()
        while True:
            r = settle_clicks(store, settings, now=later)
            passes += 1
            human, scanner = human + r.human, scanner + r.scanner
            if r.human + r.scanner == 0:
                break
        out.update(time=time.perf_counter() - t0, human=human, scanner=scanner, passes=passes)
        store.close()
    elif step == "followup":
        from nurture.campaigns import load_campaigns
        from nurture.config import load_settings
        from nurture.followup import process_clicks
        from nurture.store import open_store

        settings = load_settings(cfg)
        campaigns = {c.id: c for c in load_campaigns(ROOT / "campaigns")}
        store = open_store(db)
        later = datetime.now(UTC) + timedelta(days=2)  # every click's settle window has passed
        tasks: set[int] = set()
        before = store.conn.execute("SELECT count(*) FROM clicks WHERE handled = 1").fetchone()[0]
        t0 = time.perf_counter()
        while True:
            touched = process_clicks(store, campaigns, settings, now=later)
            tasks.update(touched)
            left = store.conn.execute("SELECT count(*) FROM clicks WHERE handled = 0 AND verdict = 'human'"
                                      ).fetchone()[0]
            if not left:
                break
        out["time"] = time.perf_counter() - t0
        out["handled"] = store.conn.execute("SELECT count(*) FROM clicks WHERE handled = 1").fetchone()[0] - before
        out["tasks"] = len(tasks)
        store.close()
    else:
        raise SystemExit(f"unknown step {step}")
    (d / f"{step}.json").write_text(json.dumps(out))


def record_clicks(db: str, n: int, batch: int) -> dict[str, Any]:
    """``n`` clicks on the delivered mail's links, written as the tracker's ledger writes them.

    Most look like people (one link, minutes apart, each from its own address); every tenth
    comes two seconds after delivery, as a mail scanner's would, so the settle pass has both.
    """
    from nurture.store import open_store
    from nurture.store.tracking import NewClick

    store = open_store(db)
    sends = store.conn.execute("SELECT s.id, s.sent_at, s.campaign_id, s.step_id FROM sends s"
                               " WHERE s.status = 'sent' ORDER BY s.id").fetchall()
    links: dict[tuple[str, str], list[int]] = {}
    for lid, cid, sid in store.conn.execute("SELECT id, campaign_id, step_id FROM links WHERE honeypot = 0"):
        links.setdefault((cid, sid), []).append(lid)
    assert sends and links, "nothing was sent: run the send step first"
    rng = random.Random(11)
    ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/146.0 Safari/537.36"
    t0 = time.perf_counter()
    done = 0
    while done < n:
        chunk = []
        for i in range(done, min(n, done + batch)):
            send_id, sent_at, cid, sid = sends[i % len(sends)]
            k = i // len(sends)  # this send's k-th click
            lag = 2.0 if i % 10 == 0 else 600.0 + 420.0 * k + rng.random() * 60
            chunk.append(NewClick(send_id=send_id, link_id=rng.choice(links[(cid, sid)]),
                                  at=datetime.fromtimestamp(sent_at + lag, UTC), method="GET",
                                  ip=f"10.{i % 251}.{(i // 251) % 251}.{1 + (i // 63001) % 250}", user_agent=ua))
        store.record_clicks(chunk)
        done += len(chunk)
    elapsed = time.perf_counter() - t0
    store.close()
    return {"time": elapsed, "clicks": done}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--contacts", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="50,000 contacts and 20,000 clicks")
    ap.add_argument("--due", type=int, default=10_000, help="enrollments due at the tick")
    ap.add_argument("--clicks", type=int, default=100_000)
    ap.add_argument("--click-batch", type=int, default=64, help="clicks per record_clicks transaction")
    ap.add_argument("--no-followup", action="store_true", help="skip the settle and follow-up steps")
    ap.add_argument("--dir", help="work directory (kept; the CSV is reused when its size matches)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.contacts, args.clicks = 50_000, 20_000
    if args.child:
        child(args.child, Path(args.dir), args)
    else:
        parent(args)


if __name__ == "__main__":
    main()
