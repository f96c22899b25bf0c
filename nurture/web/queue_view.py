"""Working the queue in the reps' app: the manager's reassign form and each rep's load.

``POST /manager/tasks/{id}/reassign`` (manager only; the CSRF token is checked by the app's
middleware) gives an open task to another configured rep; both reps' open pages hear of it
through the event stream. :func:`rep_plans` is each rep's day plan (today's calls within
their ``capacity``, the overflow queued for the next working day), shown on their list and,
with :func:`rep_load`, on the manager page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from aiohttp import web

from nurture.cards import TaskCard
from nurture.dayplan import DayPlan, day_plan
from nurture.errors import NotFound, PermissionDenied
from nurture.models import Rep
from nurture.repauth import MANAGER
from nurture.routing import local_day_start
from nurture.store import AsyncStore, Store
from nurture.web import keys


def add_routes(router: web.UrlDispatcher) -> None:
    """Register the reassign form's target."""
    router.add_post(r"/manager/tasks/{id:\d+}/reassign", reassign_post)


async def reassign_post(request: web.Request) -> web.StreamResponse:
    if request[keys.REP_ID] != MANAGER:
        raise PermissionDenied("reassigning needs a manager token (nurture reps token --manager)")
    task_id = int(request.match_info["id"])
    form = await request.post()
    rep_id = str(form.get("rep", ""))
    if rep_id not in {r.id for r in request.app[keys.SETTINGS].reps}:
        raise NotFound(f'no rep "{rep_id}"')
    now = request.app[keys.CLOCK]()
    store: AsyncStore[Store] = request.app[keys.STORE]
    await store.call(Store.reassign_task, task_id, rep_id, now=now)
    raise web.HTTPSeeOther(f"/manager#rep-{rep_id}")


async def rep_load(store: AsyncStore[Store], reps: Sequence[Rep], *, now: datetime) -> Mapping[str, int]:
    """Each rep's day against their capacity: calls done today plus calls planned today."""
    return {rid: plan.planned for rid, plan in (await rep_plans(store, reps, now=now)).items()}


async def rep_plans(store: AsyncStore[Store], reps: Sequence[Rep], *, now: datetime) -> dict[str, DayPlan]:
    """Each rep's day plan (:func:`nurture.dayplan.day_plan`): today's calls within capacity,
    the overflow queued for their next working day."""
    def plans(s: Store) -> dict[str, DayPlan]:
        out: dict[str, DayPlan] = {}
        for rep in reps:
            tasks = s.list_tasks(now=now, rep_id=rep.id, limit=10_000)
            done = s.task_day_counts({rep.id: local_day_start(rep, now)})[rep.id].done.get(0, 0)
            out[rep.id] = day_plan(rep, tasks, done_today=done, now=now)
        return out
    return await store.run(plans)


def plan_order(cards: Sequence[TaskCard], plan: DayPlan | None) -> list[TaskCard]:
    """Today's plan first (most urgent first), then the calls queued for the next working
    day, then the rest as they came."""
    if plan is None:
        return list(cards)
    rank = {t.id: i for i, t in enumerate((*plan.today, *plan.queued))}
    return sorted(cards, key=lambda c: rank.get(c.task.id, len(rank)))
