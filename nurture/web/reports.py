"""The campaign report page of the reps' app: the funnel per step with an inline SVG chart.

Reps and the manager can read it (it holds counts, not contacts).
"""

from __future__ import annotations

from dataclasses import replace

from aiohttp import web
from markupsafe import Markup

from nurture.campaigns import sample_contact
from nurture.models import Campaign, Contact
from nurture.report import COLUMNS, complaint_rate, rows, svg_chart, totals
from nurture.rules import step_subject
from nurture.store import Store
from nurture.web import keys
from nurture.web.pages import render_page


async def report_index(request: web.Request) -> web.StreamResponse:
    """``/report``: straight to the only campaign, or a list to choose from."""
    campaigns = request.app[keys.REPS_CAMPAIGNS]
    if len(campaigns) == 1:
        raise web.HTTPSeeOther(f"/report/{next(iter(campaigns))}")
    return render_page(request, "report.html", campaign=None, campaigns=sorted(campaigns.values(), key=lambda c: c.id),
                   step_rows=[], columns=COLUMNS, total={}, chart="", complaint_rate=0.0)


async def report_page(request: web.Request) -> web.StreamResponse:
    """``/report/{campaign}``: the funnel per step."""
    campaigns = request.app[keys.REPS_CAMPAIGNS]
    campaign = campaigns.get(request.match_info["campaign"])
    if campaign is None:
        raise web.HTTPNotFound(text="no such campaign")
    funnel = await request.app[keys.STORE].call(Store.funnel, campaign.id)
    step_rows = [replace(r, subject=_subject(campaign, r.step_id, r.subject)) for r in rows(campaign, funnel)]
    return render_page(request, "report.html", campaign=campaign,
                   campaigns=sorted(campaigns.values(), key=lambda c: c.id), step_rows=step_rows,
                   columns=COLUMNS, total=totals(step_rows), chart=Markup(svg_chart(step_rows)),
                   complaint_rate=complaint_rate(totals(step_rows)))


def _subject(campaign: Campaign, step_id: str, raw: str) -> str:
    """A step's subject as a contact sees it (the first sample's, with the campaign's
    defaults), not its Jinja source."""
    if "{" not in raw:
        return raw
    contact = sample_contact(campaign.samples[0]) if campaign.samples else Contact(id=0, email="")
    return step_subject(campaign, step_id, contact)
