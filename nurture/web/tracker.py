"""The public tracker: the only part of nurture that recipients ever meet.

``GET|HEAD /c/<token>`` → 302 to the link's stored URL, after the click is committed;
``GET /u/<token>`` → a confirm page, ``POST /u/<token>`` → unsubscribed (RFC 8058 one-click);
``/o/<token>.gif`` → open pixel; ``/healthz``; ``POST /inbound/ses``, ``/inbound/sendgrid`` and ``/inbound/mailgun``
when those providers are configured (:mod:`nurture.web.inbound`). Everything else is a 404 page. A bad token
is a 404, never a redirect. Suspected scanners get exactly the same answers as people.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import importlib.resources
import ipaddress
import logging
import string
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from aiohttp import web

from nurture.clicks import Verdict, immediate_verdict
from nurture.config import Settings
from nurture.errors import ConfigError, TokenError
from nurture.models import Campaign, ClickKind
from nurture.settle import scanners_of
from nurture.signing import Signer
from nurture.store import AsyncStore, Store
from nurture.store.tracking import NewClick
from nurture.timeutil import utcnow
from nurture.web import keys
from nurture.web.inbound import add_inbound_routes
from nurture.web.ledger import ClickLedger, LookupCache

log = logging.getLogger("nurture.tracker")

# A 1×1 transparent GIF.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
TOKEN = r"{token:[A-Za-z0-9_-]{1,128}}"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Pages:
    """The three public pages (``nurture/web/templates/public``), filled with string.Template."""

    not_found: str
    confirm: string.Template
    done: string.Template
    csp: str
    #: Every security header but Cross-Origin-Resource-Policy (a handler may choose that one).
    security: dict[str, str]

    @classmethod
    def load(cls) -> Pages:
        folder = importlib.resources.files("nurture").joinpath("web/templates/public")
        style = folder.joinpath("style.css").read_text(encoding="utf-8").strip()
        digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
        layout = folder.joinpath("layout.html").read_text(encoding="utf-8").replace("$style", style)

        def page(name: str, title: str) -> string.Template:
            main = folder.joinpath(name).read_text(encoding="utf-8").rstrip("\n")
            return string.Template(layout.replace("$title", title).replace("$main", main))

        csp = (f"default-src 'none'; style-src 'sha256-{digest}'; img-src 'self'; "
               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
        return cls(not_found=page("404.html", "Link not found").template,
                   confirm=page("unsubscribe.html", "Unsubscribe"),
                   done=page("unsubscribed.html", "Unsubscribed"), csp=csp,
                   security={"Content-Security-Policy": csp, **_SECURITY})


def create_tracker_app(*, settings: Settings, store: AsyncStore[Store], signer: Signer,
                       now: Callable[[], datetime] = utcnow,
                       on_commit: Callable[[], None] | None = None,
                       campaigns: Mapping[str, Campaign] | None = None,
                       fetch: Callable[[str], Awaitable[bytes]] | None = None) -> web.Application:
    """The public app over the async ``store``; the click ledger
    starts and (on shutdown, flushing every queued click) stops with the app.
    ``on_commit()`` is called after each commit of clicks (``nurture run`` wakes its settle
    loop with it). With ``inbound.ses`` / ``inbound.sendgrid`` / ``inbound.mailgun`` configured it also takes the
    providers' event webhooks (``nurture/web/inbound.py``; ``fetch`` GETs SNS certificates)."""
    app = web.Application(client_max_size=64 * 1024)
    app[keys.SETTINGS] = settings
    app[keys.STORE] = store
    app[keys.SIGNER] = signer
    app[keys.CLOCK] = now
    app[keys.LOOKUPS] = LookupCache(store=store)
    app[keys.SCANNERS] = scanners = scanners_of(settings.tracking.scanner_list)

    @functools.lru_cache(maxsize=4096)  # the same IP and browser tend to click several links
    def immediate(method: str, ip: str | None, ua: str | None, honeypot: bool) -> Verdict | None:
        return immediate_verdict(method=method, ip=ip, user_agent=ua, honeypot=honeypot, scanners=scanners)

    judged: Callable[[str, str | None, str | None, bool], Verdict | None] = immediate
    app[keys.IMMEDIATE] = judged
    app[keys.PAGES] = Pages.load()
    app[keys.TRUSTED_PROXIES] = trusted_networks(settings)
    app.cleanup_ctx.append(functools.partial(_ledger_ctx, on_commit=on_commit))
    app.on_response_prepare.append(_security_headers)
    app.router.add_get(f"/c/{TOKEN}", click)  # HEAD too: answered, never counted
    app.router.add_get(f"/u/{TOKEN}", unsubscribe_page)
    app.router.add_post(f"/u/{TOKEN}", unsubscribe_now)
    app.router.add_get(f"/o/{TOKEN}.gif", open_pixel)
    app.router.add_get("/healthz", healthz)
    add_inbound_routes(app, settings=settings, campaigns=campaigns or {}, fetch=fetch)
    # Everything else, any method: the 404 page (a route, not a middleware, keeps clicks fast).
    app.router.add_route("*", "/{tail:.*}", not_found)
    return app


def trusted_networks(settings: Settings) -> tuple[Network, ...]:
    """``tracking.trusted_proxies`` as networks; ConfigError on a bad entry."""
    try:
        return tuple(ipaddress.ip_network(c, strict=False) for c in settings.tracking.trusted_proxies)
    except ValueError as e:
        raise ConfigError(f"not a network: {e}", field="tracking.trusted_proxies") from None


def check_settings(settings: Settings) -> None:
    """Fail early (ConfigError) on tracking settings the app would refuse: for the CLI."""
    trusted_networks(settings)
    scanners_of(settings.tracking.scanner_list)


async def _ledger_ctx(app: web.Application, *,
                      on_commit: Callable[[], None] | None = None) -> AsyncIterator[None]:
    ledger = ClickLedger(store=app[keys.STORE],
                         interval=app[keys.SETTINGS].tracking.group_commit_ms / 1000, on_commit=on_commit)
    await ledger.start()
    app[keys.LEDGER] = ledger
    yield
    await ledger.close()


# -- handlers ------------------------------------------------------------------------------------

async def click(request: web.Request) -> web.StreamResponse:
    app = request.app
    try:
        send_id, link_id = app[keys.SIGNER].verify("click", request.match_info["token"])
    except TokenError:
        return _not_found(request)
    lookups = app[keys.LOOKUPS]
    link = lookups.cached_link(link_id) or await lookups.link(link_id)
    if link is None:
        return _not_found(request)
    if not _safe_location(link.url):
        log.error("link %d has an unsafe URL; not redirecting", link.id)
        return _not_found(request)
    # The ledger checks that the send exists and belongs to the link's campaign and step,
    # in the same transaction that commits the click.
    if await _record(request, send_id=send_id, link_id=link_id, kind="click", honeypot=link.honeypot,
                     campaign_id=link.campaign_id, step_id=link.step_id) is None:
        return _not_found(request)
    return web.Response(status=302, headers={"Location": link.url})


async def open_pixel(request: web.Request) -> web.StreamResponse:
    app = request.app
    if not app[keys.SETTINGS].tracking.open_tracking:
        return _not_found(request)
    try:
        (send_id,) = app[keys.SIGNER].verify("open", request.match_info["token"])
    except TokenError:
        return _not_found(request)
    if await _record(request, send_id=send_id, link_id=None, kind="open", honeypot=False) is None:
        return _not_found(request)
    return web.Response(body=PIXEL, content_type="image/gif")


async def unsubscribe_page(request: web.Request) -> web.StreamResponse:
    """GET shows the address and a button; it never unsubscribes (scanners follow links).
    The fetch is recorded as ``kind = unsubscribe``: evidence for the judge (scanners follow
    unsubscribe links), never a click."""
    app = request.app
    token = request.match_info["token"]
    try:
        (send_id,) = app[keys.SIGNER].verify("unsubscribe", token)
    except TokenError:
        return _not_found(request)
    ctx = await app[keys.STORE].call(Store.click_context, send_id)
    if ctx is None:
        return _not_found(request)
    await _record(request, send_id=send_id, link_id=None, kind="unsubscribe", honeypot=False)
    body = app[keys.PAGES].confirm.substitute(email=html.escape(mask_email(ctx.email)),
                                              action=html.escape(token))
    return web.Response(text=body, content_type="text/html")


async def unsubscribe_now(request: web.Request) -> web.StreamResponse:
    """RFC 8058 one-click (``List-Unsubscribe=One-Click``) or the page's button: at once, 200."""
    app = request.app
    try:
        (send_id,) = app[keys.SIGNER].verify("unsubscribe", request.match_info["token"])
    except TokenError:
        return _not_found(request)
    email = await app[keys.STORE].call(Store.unsubscribe, send_id, now=app[keys.CLOCK]())
    if email is None:
        return _not_found(request)
    body = app[keys.PAGES].done.substitute(email=html.escape(mask_email(email)))
    return web.Response(text=body, content_type="text/html")


async def not_found(request: web.Request) -> web.StreamResponse:
    return _not_found(request)


async def healthz(request: web.Request) -> web.StreamResponse:
    """200 ``ok``; 503 while the click ledger cannot write (disk full), for load balancers."""
    ledger = request.app.get(keys.LEDGER)
    if ledger is not None and ledger.unwritable is not None:
        return web.Response(status=503, text=f"click ledger cannot write: {ledger.unwritable}\n")
    return web.Response(text="ok\n")


# -- helpers -------------------------------------------------------------------------------------

async def _record(request: web.Request, *, send_id: int, link_id: int | None, kind: ClickKind,
                  honeypot: bool, campaign_id: str | None = None, step_id: str | None = None) -> int | None:
    app = request.app
    ip = client_ip(request, app[keys.TRUSTED_PROXIES], app[keys.SETTINGS].tracking.proxy_header)
    ua = request.headers.get("User-Agent")
    method = request.method
    v = app[keys.IMMEDIATE](method, ip, ua, honeypot)
    return await app[keys.LEDGER].record(NewClick(
        send_id=send_id, link_id=link_id, at=app[keys.CLOCK](), method=method, ip=ip,
        user_agent=ua[:512] if ua else None, kind=kind,
        verdict=v.verdict if v else "pending", score=v.score if v else 0.0,
        reasons=v.reasons if v else (), campaign_id=campaign_id, step_id=step_id))


def client_ip(request: web.Request, trusted: tuple[Network, ...], header: str = "X-Forwarded-For") -> str | None:
    """The peer's address; behind a trusted proxy, what that proxy reports in the one
    ``header`` it sets (``tracking.proxy_header``): for ``X-Forwarded-For`` and
    ``Forwarded`` (RFC 7239) the rightmost address that is not itself a trusted proxy, for
    ``X-Real-IP`` its value. Other forwarding headers, which a client may send, are ignored."""
    remote = request.remote
    if not trusted and remote and not remote.startswith("::ffff:"):
        return remote  # the common case, without parsing
    peer = _ip(remote)
    if peer is None or not trusted or not _trusted(peer, trusted):
        return str(peer) if peer is not None else remote
    values = request.headers.getall(header, [])
    if not values:
        return str(peer)
    if header == "X-Real-IP":
        addr = _ip(_strip_port(values[-1]))
        return str(addr) if addr is not None else str(peer)
    if header == "Forwarded":
        chain = [f.get("for", "") for f in request.forwarded]
    else:
        chain = [p.strip() for h in values for p in h.split(",")]
    for hop in reversed(chain):
        addr = _ip(_strip_port(hop))
        if addr is None:
            break  # unparseable: do not trust anything further out
        if not _trusted(addr, trusted):
            return str(addr)
    return str(peer)


def mask_email(email: str) -> str:
    """``jane.doe@example.com`` → ``ja•••@example.com``: recognisable, not readable."""
    local, _, domain = email.partition("@")
    return f"{local[:2]}•••@{domain}" if domain else f"{email[:2]}•••"


def _ip(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        addr = ipaddress.ip_address((text or "").strip())
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _strip_port(hop: str) -> str:
    hop = hop.strip().strip('"')
    if hop.startswith("["):
        return hop[1:].split("]", 1)[0]
    if hop.count(":") == 1:
        return hop.split(":", 1)[0]
    return hop


def _trusted(addr: ipaddress.IPv4Address | ipaddress.IPv6Address, trusted: tuple[Network, ...]) -> bool:
    return any(addr.version == n.version and addr in n for n in trusted)


def _safe_location(url: str) -> bool:
    return url.startswith(("https://", "http://")) and not any(c in url for c in "\r\n\0")


def _not_found(request: web.Request) -> web.Response:
    return web.Response(status=404, text=request.app[keys.PAGES].not_found, content_type="text/html")


_SECURITY = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
             "X-Frame-Options": "DENY", "Cache-Control": "no-store, private"}


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    h = response.headers
    # One update (overwriting any of these a handler set) instead of five assignments.
    h.update(request.app[keys.PAGES].security)
    h.setdefault("Cross-Origin-Resource-Policy", "same-site")
