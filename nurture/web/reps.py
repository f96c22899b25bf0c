"""The reps' app: each rep's call list, task pages with the contact card, outcomes; a manager view.

Never reachable without credentials. ``nurture reps token REP`` prints a login token; the login
page trades it for a session cookie (HttpOnly, SameSite=Strict; only its SHA-256 is stored).
Every form carries the session's CSRF token. The JSON API (``GET /api/tasks``,
``POST /api/tasks/{id}/done``) takes the same rep token as ``Authorization: Bearer``.
A rep only ever sees their own tasks; another rep's task id answers 404.
"""

from __future__ import annotations

import hmac
import importlib.resources
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta

from aiohttp import web

from nurture.cadence import snooze_preset
from nurture.cards import TaskCard, card_json, task_card, task_cards
from nurture.config import Settings
from nurture.dayplan import DayPlan
from nurture.errors import NotFound, NurtureError, PermissionDenied
from nurture.models import Campaign, Rep
from nurture.outcomes import BANT_FIELDS, OutcomeError, record_outcome, visible_task
from nurture.repauth import MANAGER, hash_token
from nurture.store import AsyncStore, Store
from nurture.timeutil import utcnow, zone
from nurture.web import contacts_view, keys, queue_view, stream
from nurture.web.login import LoginGuard, rep_configured
from nurture.web.metrics import add_metrics
from nurture.web.pages import jinja_env, render_page, rep_tz
from nurture.web.reports import report_index, report_page

log = logging.getLogger("nurture.reps")

SESSION_COOKIE = "nurture_session"
LOGIN_CSRF_COOKIE = "nurture_login_csrf"
SESSION_TTL = timedelta(days=7)
_PUBLIC = ("/login", "/static/", "/healthz", "/favicon.ico", "/metrics")  # /metrics checks its own token
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_reps_app(*, settings: Settings, store: AsyncStore[Store], now: Callable[[], datetime] = utcnow,
                    campaigns: Mapping[str, Campaign] | None = None,
                    poll_seconds: float = 5.0, stream_every: float = 0.05) -> web.Application:
    """The reps' app over the async ``store``; ``campaigns`` (by id) default to the
    campaigns folder, for step subjects and names; the task list polls every ``poll_seconds``
    when its event stream (``/api/stream``, changes read every ``stream_every`` s) is down."""
    app = web.Application(middlewares=[_errors, _auth], client_max_size=256 * 1024)
    app[keys.SETTINGS] = settings
    app[keys.STORE] = store
    app[keys.CLOCK] = now
    app[keys.REPS_CAMPAIGNS] = dict(campaigns) if campaigns is not None else _load_campaigns(settings)
    app[keys.REPS_JINJA] = jinja_env()
    app[keys.REPS_POLL_SECONDS] = float(poll_seconds)
    app[keys.LOGIN_GUARD] = LoginGuard()
    app.on_response_prepare.append(_security_headers)
    r = app.router
    r.add_get("/", index)
    r.add_get("/login", login_page)
    r.add_post("/login", login)
    r.add_post("/logout", logout)
    r.add_get("/tasks", task_list)
    r.add_get("/tasks/fragment", task_list_fragment)
    r.add_get(r"/tasks/{id:\d+}", task_page)
    r.add_post(r"/tasks/{id:\d+}", task_post)
    r.add_get("/manager", manager_page)
    contacts_view.add_routes(r)
    queue_view.add_routes(r)
    r.add_get("/report", report_index)
    r.add_get("/report/{campaign}", report_page)
    r.add_get("/api/tasks", api_tasks)
    stream.add_feed(app, every=stream_every)
    r.add_post(r"/api/tasks/{id:\d+}/done", api_done)
    r.add_get("/healthz", healthz)
    r.add_get("/favicon.ico", favicon)
    r.add_static("/static", str(importlib.resources.files("nurture").joinpath("web/static")))
    add_metrics(app, settings=settings.metrics, store=store, now=now)
    return app


def _load_campaigns(settings: Settings) -> dict[str, Campaign]:
    from nurture.campaigns import load_campaigns

    try:
        return {c.id: c for c in load_campaigns(settings.campaigns_dir)}
    except NurtureError as e:  # the task list still works, with step ids for subjects
        log.warning("reps' app without campaigns: %s", e)
        return {}


# -- small responses ------------------------------------------------------------------------------

async def healthz(request: web.Request) -> web.Response:
    return _text("ok\n")


async def favicon(request: web.Request) -> web.Response:
    return web.Response(status=204, headers={"Cache-Control": "max-age=86400"})


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _text(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status)


# -- middleware: errors, auth, headers ------------------------------------------------------------

@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    api = request.path.startswith("/api/")
    try:
        return await handler(request)
    except NotFound as e:
        return _problem(request, 404, str(e), api)
    except PermissionDenied as e:
        return _problem(request, 403, str(e), api)
    except OutcomeError as e:
        return _problem(request, 400, str(e), api)


def _problem(request: web.Request, status: int, message: str, api: bool) -> web.Response:
    if api:
        return web.json_response({"error": message}, status=status)
    return render_page(request, "error.html", status=status, message=message, status_code=status)


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(_PUBLIC):
        return await handler(request)
    store = request.app[keys.STORE]
    now = request.app[keys.CLOCK]()
    if request.path.startswith("/api/"):
        auth = request.headers.get("Authorization", "")
        rep_id = None
        if auth.lower().startswith("bearer "):
            rep_id = await store.call(Store.rep_for_token, hash_token(auth[7:].strip()))
        elif request.method == "GET":  # the task page's polling may use its session cookie
            rep_id = (await _session(request, now) or (None, ""))[0]
        if rep_id is None or not rep_configured(request.app[keys.SETTINGS], rep_id):  # removed reps: none
            return web.json_response({"error": "a rep token is required (Authorization: Bearer …)"},
                                     status=401, headers={"WWW-Authenticate": "Bearer"})
        request[keys.REP_ID] = rep_id
        return await handler(request)
    session = await _session(request, now)
    if session is None:
        if request.method == "GET":
            raise web.HTTPSeeOther("/login")
        return _text("log in first\n", 403)
    request[keys.REP_ID], request[keys.REP_CSRF] = session
    if request.method == "POST":
        form = await request.post()
        if not hmac.compare_digest(str(form.get("csrf", "")), session[1]):
            return _text("the form is out of date (CSRF check failed); reload the page\n", 403)
    return await handler(request)


async def _session(request: web.Request, now: datetime) -> tuple[str, str] | None:
    sid = request.cookies.get(SESSION_COOKIE)
    if not sid:
        return None
    session = await request.app[keys.STORE].call(Store.get_session, hash_token(sid), now=now)
    if session is None or not rep_configured(request.app[keys.SETTINGS], session[0]):
        return None  # a rep removed from config.yaml is logged out
    return session


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    h = response.headers
    h["Content-Security-Policy"] = ("default-src 'self'; script-src 'self'; style-src 'self'; "
                                    "img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                                    "base-uri 'none'")
    h["X-Content-Type-Options"] = "nosniff"
    h["Referrer-Policy"] = "no-referrer"
    h["X-Frame-Options"] = "DENY"
    if not request.path.startswith("/static/"):
        h["Cache-Control"] = "no-store, private"


def _secure(request: web.Request) -> bool:
    return request.app[keys.SETTINGS].reps_app.base_url.startswith("https://")


# -- login ------------------------------------------------------------------------------------------

_LOGIN_ERRORS = {
    "invalid": "That token is not valid. Ask for a new one (nurture reps token YOUR-ID).",
    "wait": "Too many failed logins; wait a little and try again.",
}


async def login_page(request: web.Request, *, error: str | None = None, status: int = 200) -> web.StreamResponse:
    if "token" in request.query:
        # A login link: trade the token for a session at once and leave a clean URL (no token
        # in the browser's history, nor in a Referer).
        return await _login_with(request, request.query["token"], link=True)
    if error is None:
        error = _LOGIN_ERRORS.get(request.query.get("error", ""))
    # Reuse the cookie: a second tab (or the favicon fetch) must not invalidate this form.
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
    resp = render_page(request, "login.html", status=status, csrf=token, error=error, prefill="")
    resp.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="Strict", path="/login",
                    secure=_secure(request))
    return resp


async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(str(form.get("csrf", "")), cookie):
        return await login_page(request, error="The login form expired; try again.", status=403)
    return await _login_with(request, str(form.get("token", "")), link=False)


async def _login_with(request: web.Request, token: str, *, link: bool) -> web.StreamResponse:
    """Check ``token`` under the backoff; a session and a redirect, or the reason why not."""
    app = request.app
    store, guard, settings = app[keys.STORE], app[keys.LOGIN_GUARD], app[keys.SETTINGS]
    now = app[keys.CLOCK]()
    t = now.timestamp()
    token_hash = hash_token(token.strip()[:512])
    counted = [f"ip:{request.remote or '?'}"]
    wait = guard.wait(counted, now=t)
    rep_id = None if wait > 0 else await store.call(Store.rep_for_token, token_hash)
    if rep_id is not None:
        counted.append(f"rep:{rep_id}")
        wait = guard.wait(counted, now=t)
    if wait > 0:
        retry = {"Retry-After": str(max(1, round(wait)))}
        if link:
            return web.Response(status=303, headers={"Location": "/login?error=wait", **retry})
        resp = await login_page(request, error=_LOGIN_ERRORS["wait"], status=429)
        resp.headers.update(retry)
        return resp
    if rep_id is None or not rep_configured(settings, rep_id):
        owner = rep_id or ((await store.call(Store.token_rep, token_hash)) or (None,))[0]
        guard.failed(counted + ([f"rep:{owner}"] if owner and not rep_id else []), now=t)
        if link:
            return _see_other("/login?error=invalid")
        return await login_page(request, error=_LOGIN_ERRORS["invalid"], status=401)
    guard.succeeded(counted)
    sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    await store.call(Store.add_session, session_hash=hash_token(sid), rep_id=rep_id, csrf=csrf, now=now,
                            expires_at=now + SESSION_TTL)
    resp = _see_other("/manager" if rep_id == MANAGER else "/tasks")
    resp.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="Strict", path="/",
                    max_age=int(SESSION_TTL.total_seconds()), secure=_secure(request))
    resp.del_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return resp


async def logout(request: web.Request) -> web.StreamResponse:
    sid = request.cookies.get(SESSION_COOKIE, "")
    await request.app[keys.STORE].call(Store.delete_session, hash_token(sid))
    resp = _see_other("/login")
    resp.del_cookie(SESSION_COOKIE, path="/")
    return resp


async def index(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther("/manager" if request[keys.REP_ID] == MANAGER else "/tasks")


# -- pages ------------------------------------------------------------------------------------------

async def _cards(request: web.Request, rep_id: str | None) -> list[TaskCard]:
    app = request.app
    now = app[keys.CLOCK]()
    return await app[keys.STORE].run(lambda s: task_cards(
        s, app[keys.REPS_CAMPAIGNS], app[keys.SETTINGS], now=now, rep_id=rep_id,
        include_snoozed=False))


async def task_list(request: web.Request) -> web.StreamResponse:
    if request[keys.REP_ID] == MANAGER:
        raise web.HTTPSeeOther("/manager")
    cards = await _cards(request, request[keys.REP_ID])
    rep = _rep(request)
    plan = await _plan(request, rep)
    return render_page(request, "tasks.html", cards=queue_view.plan_order(cards, plan), rep=rep, plan=plan)


async def task_list_fragment(request: web.Request) -> web.StreamResponse:
    cards = await _cards(request, None if request[keys.REP_ID] == MANAGER else request[keys.REP_ID])
    plan = await _plan(request, _rep(request))
    return render_page(request, "_list.html", cards=queue_view.plan_order(cards, plan),
                       reps=request.app[keys.SETTINGS].reps, plan=plan)


async def _plan(request: web.Request, rep: Rep | None) -> DayPlan | None:
    if rep is None:
        return None
    plans = await queue_view.rep_plans(request.app[keys.STORE], [rep], now=request.app[keys.CLOCK]())
    return plans[rep.id]


def _rep(request: web.Request) -> Rep | None:
    try:
        return request.app[keys.SETTINGS].rep(request[keys.REP_ID])
    except KeyError:
        return None


async def _card(request: web.Request, task_id: int) -> TaskCard:
    app = request.app
    now = app[keys.CLOCK]()
    return await app[keys.STORE].run(lambda s: task_card(
        s, app[keys.REPS_CAMPAIGNS], app[keys.SETTINGS], task_id=task_id, now=now,
        rep_id=request[keys.REP_ID]))


async def task_page(request: web.Request, *, message: str | None = None) -> web.StreamResponse:
    card = await _card(request, int(request.match_info["id"]))
    return render_page(request, "task.html", card=card, message=message, typed=None,
                   readonly=request[keys.REP_ID] == MANAGER or card.task.status != "open")


async def task_post(request: web.Request) -> web.StreamResponse:
    """The task form: BANT fields and notes, and one of the outcome buttons (or "save")."""
    task_id = int(request.match_info["id"])
    form = await request.post()
    app = request.app
    now = app[keys.CLOCK]()
    bant = {k: str(form.get(k, "")).strip() for k in BANT_FIELDS}
    notes = str(form.get("notes", "")).strip() or None
    action = str(form.get("outcome", "save"))
    rep_id = request[keys.REP_ID]
    if action == "save":
        def save(s: Store) -> None:
            if rep_id == MANAGER:
                raise PermissionDenied("the manager view is read-only")
            visible_task(s, task_id=task_id, rep_id=rep_id)
            s.set_task_bant(task_id, bant, now=now)
        await app[keys.STORE].run(save)
        raise web.HTTPSeeOther(f"/tasks/{task_id}")
    snooze = None
    if action.startswith("snooze:"):  # a preset button: 1 h, tomorrow 9:00 their time, next week
        card = await _card(request, task_id)
        try:
            snooze = snooze_preset(action[7:], now=now, contact_tz=card.contact_tz)
        except ValueError as e:
            raise OutcomeError(str(e)) from None
        action = "snoozed"
    elif action == "snoozed":
        snooze = _parse_local(str(form.get("snooze_until", "")), rep_tz(app[keys.SETTINGS], rep_id))
    try:
        await app[keys.STORE].run(lambda s: record_outcome(
            s, task_id=task_id, outcome=action, now=now, rep_id=rep_id, notes=notes,
            snooze_until=snooze, bant=bant, settings=app[keys.SETTINGS], campaigns=app[keys.REPS_CAMPAIGNS]))
    except OutcomeError as e:  # show the form again with what the rep typed
        card = await _card(request, task_id)
        return render_page(request, "task.html", status=400, card=card, message=str(e),
                           readonly=False, typed={"notes": notes or "", **bant})
    if form.get("next"):
        nxt = [c for c in await _cards(request, rep_id) if c.task.id != task_id]
        if nxt:
            raise web.HTTPSeeOther(f"/tasks/{nxt[0].task.id}")
    raise web.HTTPSeeOther("/tasks")


def _parse_local(text: str, tz: str) -> datetime | None:
    """A ``datetime-local`` input value in the rep's time zone."""
    try:
        return datetime.fromisoformat(text).replace(tzinfo=zone(tz))
    except ValueError:
        return None


async def manager_page(request: web.Request) -> web.StreamResponse:
    if request[keys.REP_ID] != MANAGER:
        raise PermissionDenied("the manager view needs a manager token (nurture reps token --manager)")
    app = request.app
    settings = app[keys.SETTINGS]
    now = app[keys.CLOCK]()
    counts = await app[keys.STORE].call(Store.queue_counts, now=now, since=now - timedelta(hours=24))
    cards = await _cards(request, None)
    plans = await queue_view.rep_plans(app[keys.STORE], settings.reps, now=now)
    queues = []
    for rep in settings.reps:
        queues.append((rep, counts.get(rep.id, {}),
                       queue_view.plan_order([c for c in cards if c.task.rep_id == rep.id], plans[rep.id])))
    known = {r.id for r in settings.reps}
    # Tasks of reps removed from config.yaml would otherwise vanish from every view.
    unassigned = [c for c in cards if c.task.rep_id not in known]
    load = {rid: p.planned for rid, p in plans.items()}
    pacing = await app[keys.STORE].call(Store.pacing_status)
    return render_page(request, "manager.html", queues=queues, unassigned=unassigned,
                       unassigned_counts=counts.get(None, {}), load=load, reps=settings.reps, plans=plans,
                       pacing=pacing)


# -- JSON API ---------------------------------------------------------------------------------------

async def api_tasks(request: web.Request) -> web.StreamResponse:
    rep_id = request[keys.REP_ID]
    cards = await _cards(request, None if rep_id == MANAGER else rep_id)
    now = request.app[keys.CLOCK]()
    return web.json_response({"tasks": [card_json(c, now) for c in cards]})


async def api_done(request: web.Request) -> web.StreamResponse:
    try:
        body = await request.json()
    except ValueError:
        return web.json_response({"error": "send a JSON body"}, status=400)
    if not isinstance(body, dict):
        return web.json_response({"error": "send a JSON object"}, status=400)
    snooze = None
    if body.get("snooze_until"):
        try:
            snooze = datetime.fromisoformat(str(body["snooze_until"]))
        except ValueError:
            return web.json_response({"error": "snooze_until must be ISO 8601"}, status=400)
        if snooze.tzinfo is None:
            return web.json_response({"error": "snooze_until needs a UTC offset"}, status=400)
    app = request.app
    now = app[keys.CLOCK]()
    task_id = int(request.match_info["id"])
    bant = body.get("bant") if isinstance(body.get("bant"), dict) else None
    await app[keys.STORE].run(lambda s: record_outcome(
        s, task_id=task_id, outcome=str(body.get("outcome", "")), now=now,
        rep_id=request[keys.REP_ID], notes=body.get("note") or body.get("notes"),
        snooze_until=snooze, bant=bant, settings=app[keys.SETTINGS], campaigns=app[keys.REPS_CAMPAIGNS]))
    card = await _card(request, task_id)
    return web.json_response({"task": card_json(card, now)})
