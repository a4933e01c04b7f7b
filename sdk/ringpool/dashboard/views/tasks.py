"""Tasks: look one up by id or key; list them by state, filtered, a page at a time.

Queued and running tasks come from the nodes' in-flight hashes, retrying ones from the
retry set, delayed tasks and schedule ticks from the scheduled set, each page from one
bounded store listing.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ringpool.core.protocol import CANCELLABLE, TaskState
from ringpool.dashboard.forms import BadInput, Filters, page_size
from ringpool.dashboard.pages import dashboard_of, render
from ringpool.errors import NoNodesAvailable, TaskNotFound
from ringpool.store.listing import InvalidQuery, Page, is_literal, literal, unescape
from ringpool.store.store import TaskRecord

#: The listed states: tab -> (title, TaskState in flight, or None for the retry set).
STATES: dict[str, tuple[str, TaskState | None]] = {
    "inflight": ("In flight", None),
    "queued": ("Queued", TaskState.QUEUED),
    "running": ("Running", TaskState.RUNNING),
    "retrying": ("Retrying", TaskState.RETRY_SCHEDULED),
    "scheduled": ("Scheduled", TaskState.SCHEDULED),
}
WAITING = (TaskState.RETRY_SCHEDULED, TaskState.SCHEDULED)  # listed by due time
TRACEPARENT = "traceparent"


async def listing(request: Request) -> Response:
    params = request.query_params
    tab = params.get("state", "inflight")
    if tab not in STATES:
        raise BadInput(f"no task state {tab!r}; choose one of {', '.join(STATES)}")
    filters = Filters.read(params)
    query = filters.query()
    limit = page_size(params)
    cursor = params.get("cursor") or None
    store = dashboard_of(request).store
    _, state = STATES[tab]
    try:
        if state is TaskState.RETRY_SCHEDULED:
            page: Page = await store.retries_list(query, cursor, limit)
        elif state is TaskState.SCHEDULED:
            page = await store.scheduled_list(query, cursor, limit)
        else:
            if query.timed:
                raise BadInput("a time range filters retrying and scheduled tasks only (their "
                               "due times)")
            page = await store.inflight_list(query, state, cursor, limit)
    except InvalidQuery as exc:
        raise BadInput(str(exc)) from None
    sizes = await store.queue_sizes()
    counts = {"inflight": await store.inflight_count(), "retrying": sizes.retries,
              "scheduled": sizes.scheduled}
    return render(request, "tasks.html", tab=tab, states=STATES, filters=filters, page=page,
                  limit=limit, cursor=cursor, counts=counts, owner=key_owner(request, filters.key),
                  by_due=state in WAITING)


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
