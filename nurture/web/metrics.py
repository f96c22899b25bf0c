"""``GET /metrics`` on the reps' app: Prometheus text, behind a bearer token (``metrics:`` in config.yaml).

The route exists only when a token is configured; a request without it, or with another,
gets 401 and learns nothing else. The figures come from the store and :mod:`nurture.metrics`.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import datetime

from aiohttp import web

from nurture.config import MetricsSettings
from nurture.metrics import CONTENT_TYPE, MetricsEndpoint
from nurture.store import AsyncStore, Store
from nurture.store.metrics import Figures

PATH = "/metrics"
ENDPOINT = web.AppKey("metrics_endpoint", MetricsEndpoint)
TOKEN: web.AppKey[bytes] = web.AppKey("metrics_token")


def add_metrics(app: web.Application, *, settings: MetricsSettings, store: AsyncStore[Store],
                now: Callable[[], datetime]) -> None:
    """Serve ``/metrics`` on ``app`` when ``settings`` has a token (else add nothing)."""
    if settings.token is None:
        return

    async def load() -> Figures:
        return await store.call(Store.metrics_figures, now=now())

    app[ENDPOINT] = MetricsEndpoint(load=load, cache_seconds=settings.cache_seconds)
    app[TOKEN] = settings.token
    app.router.add_get(PATH, metrics)


async def metrics(request: web.Request) -> web.Response:
    auth = request.headers.get("Authorization", "")
    given = auth[7:].strip().encode() if auth[:7].lower() == "bearer " else b""
    if not given or not hmac.compare_digest(given, request.app[TOKEN]):
        return web.Response(status=401, text="a bearer token is required (metrics.token_env or metrics.token_file)\n",
                            headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    body = await request.app[ENDPOINT].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
