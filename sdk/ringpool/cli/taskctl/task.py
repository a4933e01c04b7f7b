"""``task show ID``: one task's record, as Redis holds it; ``task cancel ID``."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from ringpool.cli.taskctl.app import Session, options_of, run
from ringpool.cli.taskctl.output import emit
from ringpool.core.protocol import TaskState
from ringpool.errors import TaskNotFound
from ringpool.ops.units import ago, iso, when
from ringpool.store.store import TaskRecord

TIMESTAMPS = ("created_at", "accepted_at", "eta", "started_at", "finished_at",
              "first_failure_at", "last_failure_at")


def record_data(record: TaskRecord, dead_at: float | None) -> dict[str, Any]:
    """The JSON view of a record: timestamps as ISO-8601 text next to the raw floats."""
    data = record.to_dict()
    data["in_dlq"] = dead_at is not None
    data["dead_lettered_at"] = dead_at
    for name in (*TIMESTAMPS, "dead_lettered_at", "expires_at"):
        data[f"{name}_iso"] = iso(data.get(name))
    if data["progress"] is not None:
        data["progress"]["at_iso"] = iso(data["progress"]["at"])
    return data


def progress_text(progress: dict[str, Any]) -> str:
    meta = f" {json.dumps(progress['meta'], separators=(',', ':'))}" if progress["meta"] else ""
    return f"{progress['value']:g}{meta} (reported {ago(progress['at'])})"


def print_record(out: Console, data: dict[str, Any]) -> None:
    state = data["state"]
    colour = {TaskState.SUCCEEDED: "green", TaskState.FAILED: "red",
              TaskState.RETRY_SCHEDULED: "yellow", TaskState.SCHEDULED: "blue",
              TaskState.CANCELLED: "magenta"}.get(state, "cyan")
    out.print(f"[bold]task[/bold] {data['task_id']}  [{colour}]{state}[/{colour}]"
              + ("  [red](in the DLQ)[/red]" if data["in_dlq"] else ""))
    rows = [
        ("name", data["name"]), ("key", data["key"]),
        *([("group", data["group"])] if data["group"] else []), ("node", data["node"] or "-"),
        ("attempt", str(data["attempt"])), ("replays", str(data["replays"])),
        ("recoveries", str(data["recoveries"])), ("args", data["args"]),
    ]
    if data["idempotency_key"]:
        rows.append(("idempotency key", data["idempotency_key"]))
    if data["schedule"]:
        rows.append(("schedule", data["schedule"]))
    for name in TIMESTAMPS:
        if data.get(name):
            label = "due" if name == "eta" else name.removesuffix("_at").replace("_", " ")
            rows.append((label, f"{when(data[name])} ({ago(data[name])})"))
    if data["dead_lettered_at"]:
        rows.append(("dead-lettered", f"{when(data['dead_lettered_at'])} "
                                      f"({ago(data['dead_lettered_at'])})"))
    if data["dead_reason"]:
        rows.append(("dead reason", data["dead_reason"]))
    if data["progress"] is not None:
        rows.append(("progress", progress_text(data["progress"])))
    if data["expires_at"]:
        ttl = f", its own result TTL {data['result_ttl_s']}s" if data["result_ttl_s"] else ""
        rows.append(("expires", f"{when(data['expires_at'])} ({ago(data['expires_at'])}{ttl})"))
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        out.print(f"  {label:<{width}}  {escape(str(value))}")
    if state == TaskState.SUCCEEDED and data["result"] is not None:
        out.print(f"  {'result':<{width}}  {escape(data['result'])}")
    if data["error_type"]:
        out.print(f"  {'error':<{width}}  [red]{escape(data['error_type'])}: "
                  f"{escape(data['error_message'])}[/red]")
    if data["traceback"]:
        out.print("[bold]traceback[/bold]")
        out.print(data["traceback"].rstrip(), markup=False, highlight=False)


async def load(session: Session, task_id: str, must_be_dead: bool = False) -> dict[str, Any]:
    store = await session.store()
    record = await store.record(task_id)
    (dead_at,) = await store.dlq_times([task_id])
    if must_be_dead and dead_at is None:
        raise TaskNotFound(f"task {task_id} is not in the dead-letter queue"
                           + ("" if record is None else f" (it is {record.state})"))
    if record is None:
        raise TaskNotFound(f"no task {task_id} in cluster {session.options.cluster!r}")
    return record_data(record, dead_at)


def show_record(ctx: click.Context, task_id: str, must_be_dead: bool = False) -> None:
    """Print one task's record (``task show``, and ``dlq show`` with ``must_be_dead``)."""
    options = options_of(ctx)

    async def body(session: Session) -> dict[str, Any]:
        return await load(session, task_id, must_be_dead)

    data = run(options, body)
    emit(options, data, lambda out: print_record(out, data))


@click.group()
def task() -> None:
    """Look at single tasks."""


@task.command("show")
@click.argument("task_id")
@click.pass_context
def show(ctx: click.Context, task_id: str) -> None:
    """State, attempts, node, timestamps, and the result or the error with its traceback."""
    show_record(ctx, task_id)


@task.command("cancel")
@click.argument("task_id")
@click.pass_context
def cancel(ctx: click.Context, task_id: str) -> None:
    """Cancel a task that has not finished: a scheduled, queued or retrying one never runs,
    a running one is told to stop (async: cancelled, cpu: its process killed). A task that
    already finished is left as it is (exit 5)."""
    options = options_of(ctx)

    async def body(session: Session) -> TaskState:
        return await (await session.store()).cancel(task_id)

    was = run(options, body)
    emit(options, {"task_id": task_id, "cancelled": True, "was": was.value},
         lambda out: out.print(f"cancelled task {task_id} (it was {was.value})"))
