"""Tasks: look one up by id or key; list them by state, filtered, a page at a time.

Each page is one listing of ``ringpool.ops.tasks`` (shared with ``taskctl tasks ls``):
queued and running tasks from the nodes' in-flight hashes, retrying ones from the
retry set, delayed tasks and schedule ticks from the scheduled set.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ringpool.core.protocol import CANCELLABLE
from ringpool.dashboard.forms import BadInput, Filters, Paging, bad_query_refused
from ringpool.dashboard.pages import dashboard_of, render
from ringpool.errors import NoNodesAvailable, TaskNotFound
from ringpool.ops import tasks as ops
from ringpool.store.listing import is_literal, literal, unescape
from ringpool.store.store import TaskRecord

#: The tabs: each state ``ringpool.ops.tasks`` lists, and its title.
STATES: dict[str, str] = {ops.IN_FLIGHT: "In flight", "queued": "Queued",
                          "running": "Running", "retrying": "Retrying",
                          "scheduled": "Scheduled"}
TRACEPARENT = "traceparent"


async def listing(request: Request) -> Response:
    params = request.query_params
    tab = params.get("state", ops.IN_FLIGHT)
    if tab not in STATES:
        raise BadInput(f"no task state {tab!r}; choose one of {', '.join(STATES)}")
    paging = Paging.read(params)
    store = dashboard_of(request).store
    with bad_query_refused():
        page = await ops.list_tasks(store, tab, paging.query, paging.cursor, paging.limit)
    return render(request, "tasks.html", tab=tab, states=STATES, filters=paging.filters,
                  page=page, limit=paging.limit, cursor=paging.cursor,
                  counts=await ops.counts(store), owner=key_owner(request, paging.filters.key),
                  by_due=tab in ops.BY_DUE)


def key_owner(request: Request, key_glob: str) -> dict[str, str] | None:
    """The owner now of the one key a literal key filter names."""
    if not key_glob or not is_literal(key_glob):
        return None
    ring = dashboard_of(request).view.ring
    key = unescape(key_glob)
    try:
        owner = ring.owner(key)
    except NoNodesAvailable:
        return None
    return {"key": key, "node": owner, "address": ring.members[owner].addr}


async def find(request: Request) -> Response:
    """A task id goes to its page; anything else is taken as a key."""
    wanted = request.query_params.get("q", "").strip()
    if not wanted:
        raise BadInput("type a task id or a key")
    if await dashboard_of(request).store.record(wanted) is not None:
        return RedirectResponse(f"/tasks/{wanted}", status_code=303)
    return RedirectResponse(f"/tasks?{Filters(key=literal(wanted)).params(state='inflight')}",
                            status_code=303)


def trace_id(record: TaskRecord) -> str:
    """The W3C trace id the task carries, if any."""
    parts = record.envelope.headers.get(TRACEPARENT, "").split("-")
    return parts[1] if len(parts) == 4 else ""


async def task_page(request: Request) -> Response:
    task_id = request.path_params["task_id"]
    dashboard = dashboard_of(request)
    record = await dashboard.store.record(task_id)
    (dead_at,) = await dashboard.store.dlq_times([task_id])
    if record is None:
        raise TaskNotFound(f"no task {task_id} in cluster {dashboard.settings.cluster!r}"
                           + (" (its id is in the DLQ but its record is gone)" if dead_at else ""))
    details: dict[str, Any] = record.to_dict()
    return render(request, "task.html", record=record, data=details, dead_at=dead_at,
                  trace_id=trace_id(record), owner=key_owner(request, literal(record.key)),
                  cancellable=record.state in CANCELLABLE)


routes = [
    Route("/tasks", listing),
    Route("/tasks/find", find),
    Route("/tasks/{task_id}", task_page),
]
