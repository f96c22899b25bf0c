"""Every ``web.AppKey`` of every nurture app, in one place (typed app state)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec

from nurture.clicks import Scanners
from nurture.config import Settings
from nurture.models import Campaign
from nurture.signing import Signer
from nurture.web.ledger import ClickLedger, LookupCache
from nurture.web.login import LoginGuard

# -- the public tracker -------------------------------------------------------------------------
SETTINGS = web.AppKey("settings", Settings)
STORE: web.AppKey[Any] = web.AppKey("store")  # an AsyncStore
SIGNER = web.AppKey("signer", Signer)
CLOCK: web.AppKey[Callable[[], datetime]] = web.AppKey("clock")
LEDGER = web.AppKey("ledger", ClickLedger)
LOOKUPS = web.AppKey("lookups", LookupCache)
SCANNERS = web.AppKey("scanners", Scanners)
#: (method, ip, user agent, honeypot) → Verdict | None, memoised immediate_verdict
IMMEDIATE: web.AppKey[Callable[[str, str | None, str | None, bool], Any]] = web.AppKey("immediate")
PAGES: web.AppKey[Any] = web.AppKey("pages")  # nurture.web.tracker.Pages
TRUSTED_PROXIES: web.AppKey[tuple[Any, ...]] = web.AppKey("trusted_proxies")

# -- the reps' app (nurture/web/reps.py) adds its keys below ------------------------------------
# It also uses SETTINGS, STORE and CLOCK above.
REPS_CAMPAIGNS: web.AppKey[Any] = web.AppKey("reps_campaigns")  # Mapping[str, Campaign]
REPS_JINJA: web.AppKey[Any] = web.AppKey("reps_jinja")  # jinja2.Environment
REPS_POLL_SECONDS = web.AppKey("reps_poll_seconds", float)
LOGIN_GUARD = web.AppKey("login_guard", LoginGuard)
REP_ID = web.RequestKey("rep_id", str)  # who is asking (a rep id, or "*manager*")
REP_CSRF = web.RequestKey("rep_csrf", str)  # the session's CSRF token

# -- provider event webhooks on the tracker (nurture/web/inbound.py) ----------------------------
CAMPAIGNS: web.AppKey[Mapping[str, Campaign]] = web.AppKey("inbound_campaigns")
SNS: web.AppKey[Any] = web.AppKey("inbound_sns")  # nurture.inbound.providers.SnsVerifier
#: GET an https URL: SNS signing certificates and subscription URLs.
FETCH: web.AppKey[Callable[[str], Awaitable[bytes]]] = web.AppKey("inbound_fetch")
SENDGRID_KEY = web.AppKey("inbound_sendgrid_key", ec.EllipticCurvePublicKey)
