"""Every ``web.AppKey`` of every nurture app, in one place (typed app state)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from nurture.clicks import Scanners
from nurture.config import Settings
from nurture.signing import Signer
from nurture.web.ledger import ClickLedger, LookupCache

# -- the public tracker -------------------------------------------------------------------------
SETTINGS = web.AppKey("settings", Settings)
STORE: web.AppKey[Any] = web.AppKey("store")  # an AsyncStore
SIGNER = web.AppKey("signer", Signer)
CLOCK: web.AppKey[Callable[[], datetime]] = web.AppKey("clock")
LEDGER = web.AppKey("ledger", ClickLedger)
LOOKUPS = web.AppKey("lookups", LookupCache)
SCANNERS = web.AppKey("scanners", Scanners)
PAGES: web.AppKey[Any] = web.AppKey("pages")  # nurture.web.tracker.Pages
TRUSTED_PROXIES: web.AppKey[tuple[Any, ...]] = web.AppKey("trusted_proxies")

# -- the reps' app (nurture/web/reps.py) adds its keys below ------------------------------------
