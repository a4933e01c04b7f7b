"""The dead-letter queue: browse and filter, show one, replay and purge.

Replays and purges run as background jobs (``dashboard.jobs``) over the entries named
by checkbox or over every entry matching the filter; a purge shows what it would
delete and asks before it does.
"""

from __future__ import annotations

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ringpool.dashboard.auth import mutation
from ringpool.dashboard.forms import BadInput, Filters, Paging, bad_query_refused, rate, task_ids
from ringpool.dashboard.jobs import JobKind, Selection
from ringpool.dashboard.pages import dashboard_of, render
from ringpool.errors import TaskNotFound
from ringpool.ops import dlq as ops
from ringpool.store.listing import Listed, TaskQuery
from ringpool.store.store import StateStore


async def browse(request: Request) -> Response:
    paging = Paging.read(request.query_params)
    query = paging.query
    store = dashboard_of(request).store
    with bad_query_refused():
        page = await store.dlq_list(query, paging.cursor, paging.limit)
    total = await store.dlq_size()
    in_range = await store.dlq_count(query.since, query.until) if query.timed else total
    return render(request, "dlq.html", filters=paging.filters, page=page, limit=paging.limit,
                  cursor=paging.cursor, total=total, in_range=in_range,
                  jobs=dashboard_of(request).jobs.recent()[:5])


async def selection_of(request: Request, form: FormData) -> tuple[Selection, list[Listed]]:
    """The entries a form names: ticked ids (with those entries; TaskNotFound for ids of no
    task at all), or every entry matching its filters."""
    if form.get("scope") == "filter":
        filters = Filters.read({k: str(v) for k, v in form.items()})
        return Selection(query=filters.query(),
                         description=f"matching {filters.describe()}"), []
    ids = task_ids([str(v) for v in form.getlist("ids")])
    if not ids:
        raise BadInput("nothing selected: tick entries, or act on every entry matching the "
                       "filter")
    entries = await ops.select_ids(dashboard_of(request).store, ids)
    return Selection(task_ids=tuple(ids), description=f"{len(ids)} selected"), entries


@mutation()
async def replay(request: Request, form: FormData) -> Response:
    per_s = rate(str(form.get("rate", "")))
    selection, _ = await selection_of(request, form)
    kind = JobKind.DRY_RUN if form.get("dry_run") else JobKind.REPLAY
    job = dashboard_of(request).jobs.start(kind, selection, per_s)
    return RedirectResponse(f"/dlq/jobs/{job.id}", status_code=303)


@mutation()
async def purge(request: Request, form: FormData) -> Response:
    """Without ``confirm=yes``: what would go, and the question. With it: the purge."""
    selection, entries = await selection_of(request, form)
    if form.get("confirm") != "yes":
        if selection.query is None:
            count = len(entries)
        else:
            count = await _count(dashboard_of(request).store, selection.query)
        return render(request, "dlq_purge.html", selection=selection, count=count,
                      entries=entries, form=form)
    job = dashboard_of(request).jobs.start(JobKind.PURGE, selection)
    return RedirectResponse(f"/dlq/jobs/{job.id}", status_code=303)


async def _count(store: StateStore, query: TaskQuery) -> int:
    """How many entries a filter selects (a walk through the DLQ when it names more than a
    time range)."""
    if not (query.name or query.error or query.key):
        return await store.dlq_count(query.since, query.until)
    count = 0
    async for _ in ops.matching(store, query):
        count += 1
    return count


async def job_page(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    job = dashboard_of(request).jobs.get(job_id)
    if job is None:
        raise TaskNotFound(f"no job {job_id} (jobs are kept while the dashboard runs)")
    return render(request, "job.html", job=job)


async def jobs_page(request: Request) -> Response:
    return render(request, "jobs.html", jobs=dashboard_of(request).jobs.recent())


routes = [
    Route("/dlq", browse),
    Route("/dlq/jobs", jobs_page),
    Route("/dlq/jobs/{job_id:int}", job_page),
    Route("/dlq/replay", replay, methods=["POST"]),
    Route("/dlq/purge", purge, methods=["POST"]),
]
