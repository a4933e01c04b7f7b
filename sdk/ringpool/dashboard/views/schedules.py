"""Periodic schedules: every schedule with its timing, next and last tick and counts;
operators add (checked as a client's ``schedule()`` checks it), pause, resume and
remove them. Cancelling a delayed task or any task that has not finished is here too.
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ringpool.dashboard.auth import mutation
from ringpool.dashboard.forms import BadInput, task_ids
from ringpool.dashboard.pages import dashboard_of, render
from ringpool.errors import DispatchError, InvalidSchedule, TaskAlreadyFinished
from ringpool.ops import schedules as ops
from ringpool.ops.units import parse_duration

FIELDS = ("name", "task", "key", "args", "kwargs", "cron", "every", "tz")


async def _page(request: Request, status_code: int = 200, error: str = "",
                typed: dict[str, str] | None = None, done: str = "") -> Response:
    store = dashboard_of(request).store
    return render(request, "schedules.html", status_code=status_code,
                  schedules=await store.schedules.all(),
                  delayed=(await store.queue_sizes()).scheduled, error=error,
                  typed=typed or dict.fromkeys(FIELDS, ""), done=done)


async def view(request: Request) -> Response:
    return await _page(request, done=request.query_params.get("done", "")[:200])


@mutation()
async def add(request: Request, form: FormData) -> Response:
    typed = {field: str(form.get(field, "")).strip() for field in FIELDS}
    dashboard = dashboard_of(request)
    try:
        every_s = parse_duration(typed["every"]) if typed["every"] else None
        args, kwargs = ops.arguments(typed["args"], typed["kwargs"])
        result, _ = await ops.add(dashboard.store, dashboard.view.ring, typed["name"],
                                  typed["task"], typed["key"], args, kwargs,
                                  typed["cron"] or None, every_s, typed["tz"] or None)
    except (ValueError, InvalidSchedule, DispatchError) as exc:
        return await _page(request, 400, f"{exc}; nothing was written", typed)
    return _back(f"schedule {typed['name']} {result.name.lower()}")


@mutation()
async def pause(request: Request, form: FormData) -> Response:
    name = request.path_params["name"]
    await ops.pause(dashboard_of(request).store, name)
    return _back(f"schedule {name} paused")


@mutation()
async def resume(request: Request, form: FormData) -> Response:
    name = request.path_params["name"]
    await ops.resume(dashboard_of(request).store, name)
    return _back(f"schedule {name} resumed")


@mutation()
async def remove(request: Request, form: FormData) -> Response:
    name = request.path_params["name"]
    await ops.remove(dashboard_of(request).store, name)
    return _back(f"schedule {name} removed")


@mutation()
async def cancel(request: Request, form: FormData) -> Response:
    """Cancel the tasks a form names; back to the task's page for one, else the list."""
    ids = task_ids([str(v) for v in form.getlist("ids")])
    if not ids:
        raise BadInput("no task to cancel: name one")
    store = dashboard_of(request).store
    for task_id in ids:
        try:
            await store.cancel(task_id)
        except TaskAlreadyFinished as exc:
            raise BadInput(str(exc)) from None
    target = f"/tasks/{ids[0]}" if len(ids) == 1 else "/tasks?state=scheduled"
    return RedirectResponse(target, status_code=303)


def _back(done: str) -> Response:
    return RedirectResponse(f"/schedules?done={quote(done)}", status_code=303)


routes = [
    Route("/schedules", view, methods=["GET"]),
    Route("/schedules", add, methods=["POST"]),
    Route("/schedules/{name}/pause", pause, methods=["POST"]),
    Route("/schedules/{name}/resume", resume, methods=["POST"]),
    Route("/schedules/{name}/remove", remove, methods=["POST"]),
    Route("/tasks/cancel", cancel, methods=["POST"]),
]
