"""The manager's contact lookup in the reps' app: ``/manager/contacts``.

A manager (``nurture reps token --manager``) can look a contact up by address (fields, status,
suppression, enrollments, recent sends, tasks) and suppress an address someone asked to remove
by phone. Reps cannot: a rep's view stays their own tasks. Every POST carries the session's
CSRF token (checked by the app's middleware).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from nurture.errors import PermissionDenied
from nurture.repauth import MANAGER
from nurture.web import keys
from nurture.web.pages import render_page

PATH = "/manager/contacts"


def add_routes(router: web.UrlDispatcher) -> None:
    """Register the lookup page and the suppress form on the reps' app."""
    router.add_get(PATH, contact_page)
    router.add_post(PATH + "/suppress", suppress_post)


def _manager(request: web.Request) -> None:
    if request[keys.REP_ID] != MANAGER:
        raise PermissionDenied("contact lookup needs a manager token (nurture reps token --manager)")


def _render(request: web.Request, **ctx: Any) -> web.Response:
    return render_page(request, "contacts.html", **ctx)


async def contact_page(request: web.Request, *, message: str | None = None) -> web.StreamResponse:
    """``GET /manager/contacts?email=…``: the lookup form, and the contact when found."""
    _manager(request)
    email = request.query.get("email", "").strip()
    found: dict[str, Any] | None = None
    if email:
        def look(s: Any) -> dict[str, Any] | None:
            c = s.get_contact_by_email(email)
            suppressed = s.suppression(email)
            if c is None:
                return {"contact": None, "suppressed": suppressed, "history": None}
            return {"contact": c, "suppressed": suppressed, "history": s.contact_history(c.id, limit=20)}
        found = await request.app[keys.STORE].run(look)
    return _render(request, email=email, found=found, message=message)


async def suppress_post(request: web.Request) -> web.StreamResponse:
    """``POST /manager/contacts/suppress`` (email, reason): suppress the address, end its enrollments."""
    _manager(request)
    form = await request.post()
    email = str(form.get("email", "")).strip()
    reason = str(form.get("reason", "")).strip() or "manual"
    now = request.app[keys.CLOCK]()
    from nurture.contacts import valid_email

    if not valid_email(email):
        return await contact_page(request, message=f'"{email}" is not an email address')

    def suppress(s: Any) -> None:
        with s.transaction():
            s.suppress(email, reason[:200], now=now)
            c = s.get_contact_by_email(email)
            if c is not None:
                s.exit_enrollments(c.id, reason="suppressed", now=now)
    await request.app[keys.STORE].run(suppress)
    raise web.HTTPSeeOther(f"{PATH}?{_query(email)}")


def _query(email: str) -> str:
    from urllib.parse import urlencode

    return urlencode({"email": email})
