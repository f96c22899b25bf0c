"""Prometheus metrics: the instruments parts of this process update, and the text ``/metrics`` serves.

Two kinds of series. Database figures (sends by status, retries, clicks by verdict, tasks
open and overdue, outbox depth, inbound by kind) are read through the store when scraped, at
most every ``metrics.cache`` seconds, so every process sharing the database reports the same
numbers. Process figures (throttle replies seen by this process's sender, the click ledger's
commit latency, and the standard ``process_*`` / ``python_*`` series) live in this process:
with ``nurture run`` that is everything; with ``nurture serve`` + ``nurture send`` the reps'
app (and so ``/metrics``) is in the serve process, whose sender-side counters stay at zero.

This is the one module that imports prometheus_client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from nurture.store.metrics import Figures

#: The classic text format, which every Prometheus server reads (generate_latest writes it,
#: with names escaped to underscores).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Process-wide instruments, registered in each endpoint's registry (not prometheus_client's
# global one), so several apps in one process (tests, the demo) never collide.
THROTTLE_EVENTS = Counter(
    "nurture_smtp_throttle_events", "SMTP replies asking this process's sender to slow down (421, 451, 454)",
    registry=None)
LEDGER_COMMIT_SECONDS = Histogram(
    "nurture_click_ledger_commit_seconds", "Time to commit one batch of clicks in the click ledger (group commit)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0), registry=None)
LEDGER_BATCH_CLICKS = Histogram(
    "nurture_click_ledger_batch_clicks", "Clicks per click-ledger commit",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 4096), registry=None)
_PROCESS_WIDE: tuple[Collector, ...] = (THROTTLE_EVENTS, LEDGER_COMMIT_SECONDS, LEDGER_BATCH_CLICKS)

#: Statuses always exported (at 0 when no row has them), so dashboards see every series.
SEND_STATUSES = ("queued", "sending", "sent", "retry", "failed", "skipped", "suppressed")
CLICK_VERDICTS = ("pending", "human", "scanner")


class _FiguresCollector(Collector):
    """The last figures read, as metric families (set just before each exposition)."""

    def __init__(self) -> None:
        self.figures: Figures | None = None
        self.query_seconds = 0.0

    def collect(self) -> Iterator[Metric]:
        f = self.figures
        if f is None:
            return
        sends = GaugeMetricFamily("nurture_sends", "Outbox rows by status", labels=["status"])
        for status in sorted(set(SEND_STATUSES) | set(f.sends)):
            sends.add_metric([status], f.sends.get(status, 0))
        yield sends
        yield GaugeMetricFamily("nurture_send_retries", "Delivery attempts that ended in a transient failure",
                                value=f.retries)
        yield GaugeMetricFamily("nurture_outbox_depth", "Mails still to deliver (queued, retry, sending)",
                                value=f.outbox_depth)
        yield GaugeMetricFamily("nurture_outbox_due", "Mails queued or waiting for a retry that are due now",
                                value=f.outbox_due)
        yield GaugeMetricFamily("nurture_send_rate_slowed",
                                "1 while a relay's throttle reply (within the last minute) cuts the send rate",
                                value=1 if f.rate_slowed else 0)
        clicks = GaugeMetricFamily("nurture_clicks", "Recorded clicks and opens by verdict",
                                   labels=["kind", "verdict"])
        for kind, verdict in sorted({("click", v) for v in CLICK_VERDICTS} | set(f.clicks)):
            clicks.add_metric([kind, verdict], f.clicks.get((kind, verdict), 0))
        yield clicks
        open_ = GaugeMetricFamily("nurture_tasks_open", "Open follow-up tasks by rep", labels=["rep"])
        overdue = GaugeMetricFamily("nurture_tasks_overdue", "Open tasks past their due time by rep",
                                    labels=["rep"])
        for rep in sorted(f.tasks_open):
            open_.add_metric([rep], f.tasks_open[rep])
            overdue.add_metric([rep], f.tasks_overdue.get(rep, 0))
        yield open_
        yield overdue
        if f.inbound is not None:
            inbound = GaugeMetricFamily("nurture_inbound", "Inbound messages and events by kind", labels=["kind"])
            for kind in sorted(f.inbound):
                inbound.add_metric([kind], f.inbound[kind])
            yield inbound
        yield GaugeMetricFamily("nurture_metrics_query_seconds", "Time the last read of the database figures took",
                                value=self.query_seconds)


class MetricsEndpoint:
    """What ``/metrics`` answers: ``await endpoint.render()`` reads the figures (through
    ``load``, at most every ``cache_seconds``; concurrent scrapes share one read) and returns
    the Prometheus text exposition."""

    def __init__(self, *, load: Callable[[], Awaitable[Figures]], cache_seconds: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._load = load
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._read_at: float | None = None
        self._lock = asyncio.Lock()
        self._figures = _FiguresCollector()
        self.registry = CollectorRegistry(auto_describe=True)
        for collector in _PROCESS_WIDE:
            self.registry.register(collector)
        self.registry.register(self._figures)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    async def render(self) -> bytes:
        async with self._lock:
            now = self._clock()
            if self._read_at is None or now - self._read_at >= self._cache_seconds:
                started = time.perf_counter()
                self._figures.figures = await self._load()
                self._figures.query_seconds = time.perf_counter() - started
                self._read_at = self._clock()
            return generate_latest(self.registry)
