"""Benchmark: redirect throughput and latency of the real tracker (every click committed to
SQLite before its 302) beside a bare aiohttp handler returning the same 302, in one run.

    python bench/tracker.py [--duration 10] [--connections 64] [--workers 1 2] [--ceiling]

Uses wrk (Debian package) with a Lua script that cycles through distinct valid tokens;
falls back to a small aiohttp load generator when wrk is missing. Beside each row it prints
the CPU the server's processes used (cores, and µs per request, from /proc) and what the
load generator used, so a figure says whether the server was short of CPU or waiting. ``--ceiling``
adds a row for the tracker with the commit taken out (bench/_ceiling.py): the most it could
do here if committing a click cost nothing. Run by hand; figures go in docs/tracking.md.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _net import free_port, wait_ready  # noqa: E402

from nurture.signing import Signer  # noqa: E402
from nurture.store import open_store  # noqa: E402

SECRET = "bench-secret"
URL = "https://acme.example/pricing?utm_source=nurture"
BARE = textwrap.dedent(f"""
    import sys
    from aiohttp import web
    async def c(request):
        return web.Response(status=302, headers={{"Location": {URL!r}}})
    app = web.Application()
    app.router.add_get("/c/{{token}}", c)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
""")


def seed(db: str, sends: int) -> list[str]:
    """``sends`` delivered messages with three links each; one click token per (send, link)."""
    store = open_store(db)
    now = datetime.now(UTC).timestamp()
    signer = Signer({"k1": SECRET.encode()}, current="k1")
    tokens = []
    with store.transaction() as d:
        links = [d["links"].insert({"campaign_id": "bench", "step_id": "s1", "name": f"l{i}",
                                    "url": URL}).last_pk for i in range(3)]
        for i in range(sends):
            cid = d["contacts"].insert({"email": f"b{i}@bench.example", "email_key": f"b{i}@bench.example",
                                        "created_at": now, "updated_at": now}).last_pk
            eid = d["enrollments"].insert({"campaign_id": "bench", "contact_id": cid, "enrolled_at": now,
                                           "updated_at": now}).last_pk
            sid = d["sends"].insert({"enrollment_id": eid, "campaign_id": "bench", "step_id": "s1",
                                     "contact_id": cid, "status": "sent", "next_attempt_at": now,
                                     "queued_at": now, "sent_at": now - 3600}).last_pk
            tokens += [signer.sign("click", sid, link) for link in links]
    store.close()
    return tokens


def lua(tokens: list[str], path: Path) -> None:
    body = ",\n".join(f'"{t}"' for t in tokens)
    path.write_text(textwrap.dedent("""
        local tokens = {
        %s
        }
        local i = math.random(#tokens)
        wrk.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) Chrome/146.0 bench"
        request = function()
          i = i %% #tokens + 1
          return wrk.format("GET", "/c/" .. tokens[i])
        end
    """) % body)


def start_tracker(tmp: Path, db: str, workers: int, *, ceiling: bool = False) -> tuple[subprocess.Popen, int]:
    port = free_port()
    cfg = tmp / f"config-{workers}.yaml"
    cfg.write_text(f"database: {db}\ntracking:\n  listen: 127.0.0.1:{port}\n")
    env = {**os.environ, "NURTURE_SECRET": SECRET}
    entry = [str(ROOT / "bench" / "_ceiling.py")] if ceiling else ["-c", "from nurture.cli import main; main()"]
    proc = subprocess.Popen([sys.executable, *entry, "--config", str(cfg),
                             "serve", "--workers", str(workers), "--no-reps-app"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    wait_ready(port)
    time.sleep(0.5 * workers)  # let every worker bind
    return proc, port


def start_bare() -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", BARE, str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_ready(port)
    return proc, port


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(root: int) -> float:
    """User + system CPU of ``root`` and every process below it (all threads), from /proc."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / _TICK
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        kids = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(kids)
        frontier.extend(kids)
    return sum(times.get(pid, 0.0) for pid in tree)


def measured(load: Callable[[], dict[str, float]], server: subprocess.Popen) -> dict[str, float]:
    """Run ``load`` and add the CPU that the server's processes and the load generator used."""

    def load_cpu() -> float:
        # wrk is the only child reaped during a run; the Python fallback runs in this process.
        return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_CHILDREN),
                                                     resource.getrusage(resource.RUSAGE_SELF)))

    cpu0, gen0, t0 = cpu_seconds(server.pid), load_cpu(), time.monotonic()
    r = load()
    cpu1, gen1, elapsed = cpu_seconds(server.pid), load_cpu(), time.monotonic() - t0
    r["server_cores"] = (cpu1 - cpu0) / elapsed
    r["us_per_req"] = (cpu1 - cpu0) / max(r["requests"], 1) * 1e6
    r["load_cores"] = (gen1 - gen0) / elapsed
    return r


def run_wrk(port: int, script: Path, duration: int, connections: int, threads: int) -> dict[str, float]:
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency",
                          "-s", str(script), f"http://127.0.0.1:{port}"],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    lat = {p: float(v) * _UNITS[u] for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50": lat.get("50", float("nan")), "p99": lat.get("99", float("nan")),
            "requests": total, "bad": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(1) if errors else ""}


def run_python(port: int, tokens: list[str], duration: int, connections: int) -> dict[str, float]:
    import aiohttp

    async def go() -> dict[str, float]:
        lat: list[float] = []
        bad = 0
        end = time.monotonic() + duration
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as http:
            async def worker(k: int) -> None:
                nonlocal bad
                i = k
                while time.monotonic() < end:
                    i = (i + connections) % len(tokens)
                    t0 = time.perf_counter()
                    async with http.get(f"http://127.0.0.1:{port}/c/{tokens[i]}", allow_redirects=False) as r:
                        await r.read()
                        bad += r.status != 302
                    lat.append((time.perf_counter() - t0) * 1000)
            await asyncio.gather(*(worker(k) for k in range(connections)))
        lat.sort()
        return {"rps": len(lat) / duration, "p50": lat[len(lat) // 2], "p99": lat[int(len(lat) * 0.99)],
                "requests": len(lat), "bad": bad, "socket_errors": ""}

    return asyncio.run(go())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--sends", type=int, default=2000, help="distinct sends (x3 links = tokens)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--ceiling", action="store_true",
                    help="also run the tracker with the commit taken out (1 worker): the ceiling")
    args = ap.parse_args()
    use_wrk = shutil.which("wrk") is not None
    print(f"load generator: {'wrk' if use_wrk else 'python aiohttp'}; {args.connections} connections, "
          f"{args.duration} s each; {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        db = str(tmp / "bench.db")
        tokens = seed(db, args.sends)
        script = tmp / "tokens.lua"
        lua(tokens, script)

        def load(port: int) -> dict[str, float]:
            if use_wrk:
                return run_wrk(port, script, args.duration, args.connections, args.threads)
            return run_python(port, tokens, args.duration, args.connections)

        results: dict[str, dict[str, float]] = {}
        proc, port = start_bare()
        try:
            load(port)  # warm-up, discarded
            results["bare aiohttp 302"] = measured(lambda: load(port), proc)
        finally:
            stop(proc)
        runs = [(w, False) for w in args.workers]
        if args.ceiling:
            runs.insert(1 if 1 in args.workers else 0, (1, True))
        for w, ceiling in runs:
            before = _count(db)
            proc, port = start_tracker(tmp, db, w, ceiling=ceiling)
            name = "ceiling, no commit" if ceiling else f"tracker, {w} worker{'s' if w > 1 else ''}"
            try:
                results[name] = r = measured(functools.partial(load, port), proc)
            finally:
                stop(proc)
            r["committed"] = _count(db) - before
        print(f"\n{'server':<22}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'requests':>10}{'clicks in db':>13}"
              f"{'server cores':>14}{'CPU µs/req':>12}{'load cores':>12}")
        for name, r in results.items():
            committed = r.get("committed")
            print(f"{name:<22}{r['rps']:>9.0f}{r['p50']:>8.2f}{r['p99']:>8.2f}{r['requests']:>10}"
                  f"{'' if committed is None else committed:>13}"
                  f"{r['server_cores']:>14.2f}{r['us_per_req']:>12.1f}{r['load_cores']:>12.2f}"
                  + (f"  (non-302: {r['bad']})" if r["bad"] else "")
                  + (f"  (socket errors: {r['socket_errors']})" if r["socket_errors"] else ""))
        bare = results["bare aiohttp 302"]["rps"]
        one = results.get("tracker, 1 worker")
        two = results.get("tracker, 2 workers")
        if one:
            print(f"\nratio tracker(1 worker) / bare: {one['rps'] / bare:.2f}  (target >= 0.7)")
            print(f"p99 at {args.connections} connections, 1 worker: {one['p99']:.2f} ms  (target < 25 ms)")
        ceiling = results.get("ceiling, no commit")
        if ceiling:
            print(f"ceiling (no commit) / bare: {ceiling['rps'] / bare:.2f}")
        if one and two:
            print(f"2 workers / 1 worker: {two['rps'] / one['rps']:.2f}x  (target >= 1.5x); "
                  f"CPU in use during the 2-worker run: {two['server_cores'] + two['load_cores']:.2f} "
                  f"of {os.cpu_count()} cores")


def _count(db: str) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM clicks").fetchone()[0]


if __name__ == "__main__":
    main()
