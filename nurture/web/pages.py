"""HTML pages of the reps' app: its Jinja environment and one render helper that every view
(``web/reps.py``, ``web/reports.py``) uses, so the views need not import each other."""

from __future__ import annotations

import importlib.resources
from datetime import datetime
from typing import Any

import jinja2
from aiohttp import web

from nurture.cards import ago, relative
from nurture.config import Settings
from nurture.models import OUTCOMES, PRIORITIES
from nurture.outcomes import BANT_FIELDS
from nurture.timeutil import zone
from nurture.web import keys


def jinja_env() -> jinja2.Environment:
    """The environment over ``web/templates/reps`` (autoescaped, strict) with its filters."""
    folder = importlib.resources.files("nurture").joinpath("web/templates/reps")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["rel"] = relative
    env.filters["ago"] = ago
    env.filters["local"] = lambda m, tz: m.astimezone(zone(tz)).strftime("%a %d %b %H:%M")
    env.filters["iso_local"] = lambda text, tz: datetime.fromisoformat(str(text)).astimezone(
        zone(tz)).strftime("%a %d %b %H:%M")
    env.filters["humanize"] = lambda s: str(s).replace("_", " ")
    env.globals.update(OUTCOMES=OUTCOMES, BANT_FIELDS=BANT_FIELDS, PRIORITIES=PRIORITIES)
    return env


def render_page(request: web.Request, name: str, status: int = 200, **ctx: Any) -> web.Response:
    """Render template ``name`` with the request's rep, CSRF token, clock and time zone."""
    app = request.app
    ctx.setdefault("me", request.get(keys.REP_ID))
    ctx.setdefault("csrf", request.get(keys.REP_CSRF, ""))
    ctx.setdefault("now", app[keys.CLOCK]())
    ctx.setdefault("rep_tz", rep_tz(app[keys.SETTINGS], request.get(keys.REP_ID)))
    ctx.setdefault("poll", app[keys.REPS_POLL_SECONDS])
    html = app[keys.REPS_JINJA].get_template(name).render(**ctx)
    return web.Response(text=html, status=status, content_type="text/html")


def rep_tz(settings: Settings, rep_id: str | None) -> str:
    """The rep's time zone name ("UTC" for the manager or a rep no longer configured)."""
    try:
        return settings.rep(rep_id).timezone if rep_id else "UTC"
    except KeyError:
        return "UTC"
