"""Every ``web.AppKey`` of every nurture app, in one place (typed app state)."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec

from nurture.clicks import Scanners, Verdict
from nurture.config import Settings
from nurture.models import Campaign
from nurture.signing import Signer
from nurture.store import AsyncStore, Store
from nurture.web.ledger import ClickLedger, LookupCache
from nurture.web.login import LoginGuard

if TYPE_CHECKING:
    import jinja2

    from nurture.inbound.providers import SnsVerifier
    from nurture.web.stream import ChangeFeed
    from nurture.web.tracker import Pages

# -- the public tracker -------------------------------------------------------------------------
SETTINGS = web.AppKey("settings", Settings)
STORE: web.AppKey[AsyncStore[Store]] = web.AppKey("store")
SIGNER = web.AppKey("signer", Signer)
CLOCK: web.AppKey[Callable[[], datetime]] = web.AppKey("clock")
LEDGER = web.AppKey("ledger", ClickLedger)
LOOKUPS = web.AppKey("lookups", LookupCache)
SCANNERS = web.AppKey("scanners", Scanners)
#: (method, ip, user agent, honeypot) → Verdict | None, memoised immediate_verdict
IMMEDIATE: web.AppKey[Callable[[str, str | None, str | None, bool], Verdict | None]] = web.AppKey("immediate")
PAGES: web.AppKey[Pages] = web.AppKey("pages")
TRUSTED_PROXIES: web.AppKey[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]] = web.AppKey("trusted_proxies")

# -- the reps' app (nurture/web/reps.py) adds its keys below ------------------------------------
# It also uses SETTINGS, STORE and CLOCK above.
REPS_CAMPAIGNS: web.AppKey[Mapping[str, Campaign]] = web.AppKey("reps_campaigns")
REPS_JINJA: web.AppKey[jinja2.Environment] = web.AppKey("reps_jinja")
REPS_POLL_SECONDS = web.AppKey("reps_poll_seconds", float)
LOGIN_GUARD = web.AppKey("login_guard", LoginGuard)
REP_ID = web.RequestKey("rep_id", str)  # who is asking (a rep id, or "*manager*")
REP_CSRF = web.RequestKey("rep_csrf", str)  # the session's CSRF token
REPS_FEED: web.AppKey[ChangeFeed] = web.AppKey("reps_feed")

# -- provider event webhooks on the tracker (nurture/web/inbound.py) ----------------------------
CAMPAIGNS: web.AppKey[Mapping[str, Campaign]] = web.AppKey("inbound_campaigns")
SNS: web.AppKey[SnsVerifier] = web.AppKey("inbound_sns")
#: GET an https URL: SNS signing certificates and subscription URLs.
FETCH: web.AppKey[Callable[[str], Awaitable[bytes]]] = web.AppKey("inbound_fetch")
SENDGRID_KEY = web.AppKey("inbound_sendgrid_key", ec.EllipticCurvePublicKey)
