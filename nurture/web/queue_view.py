"""Working the queue in the reps' app: the manager's reassign form and each rep's load.

``POST /manager/tasks/{id}/reassign`` (manager only; the CSRF token is checked by the app's
middleware) gives an open task to another configured rep; both reps' open pages hear of it
through the event stream. :func:`rep_load` is what the manager page shows per rep: tasks
assigned since the rep's local midnight against their ``capacity``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from aiohttp import web

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
    """Tasks assigned to each rep since their local midnight (their capacity counts these)."""
    return await store.call(Store.assigned_since, {r.id: local_day_start(r, now) for r in reps})
