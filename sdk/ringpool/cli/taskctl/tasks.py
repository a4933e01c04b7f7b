"""``tasks ls`` and ``retries ls``: tasks by state, filtered, a page at a time.

Both read one page per call through ``ringpool.ops.tasks`` (as the dashboard does):
queued and running tasks from the nodes' in-flight hashes, retrying ones from the retry
set and scheduled ones (delayed tasks, schedule ticks) from the scheduled set, soonest
due first. A page ends with the cursor of the next (``--cursor``); a
narrow filter may come back with fewer tasks than ``--limit`` and still a cursor, as
each call reads a bounded number of entries.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from ringpool.cli.taskctl.app import EXIT_USAGE, CommandError, Session, options_of, run
from ringpool.cli.taskctl.output import emit, table
from ringpool.ops import tasks as ops
from ringpool.ops.units import ago, iso, when
from ringpool.store.listing import MAX_PAGE, InvalidQuery, Listed, Page, TaskQuery

#: What ``--state`` lists (``ringpool.ops.tasks`` lists them).
STATES = ("running", "queued", "scheduled", "retrying")
DEFAULT_LIMIT = 50


def task_data(item: Listed) -> dict[str, Any]:
    r = item.record
    known = r.exists
    return {
        "task_id": r.task_id, "state": r.state.value, "name": r.name if known else None,
        "key": r.key if known else None, "node": r.node if known else None,
        "attempt": r.attempt if known else None, "progress": r.progress,
        "accepted_at": r.accepted_at, "accepted_at_iso": iso(r.accepted_at),
        "started_at": r.started_at, "started_at_iso": iso(r.started_at),
        "due_at": item.at, "due_at_iso": iso(item.at),
        "error_type": r.error_type or None, "error_message": r.error_message or None,
    }


def listing_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed((
        click.option("--node", default="", metavar="NODE",
                     help="only tasks of this node (glob: * and ?)"),
        click.option("--name", default="", metavar="TASK",
                     help="only this task name (glob: * and ?, e.g. 'billing.*')"),
        click.option("--key", default="", metavar="KEY",
                     help="only this key (glob: * and ?; \\ before either for itself)"),
        click.option("--limit", type=click.IntRange(1, MAX_PAGE), default=DEFAULT_LIMIT,
                     show_default=True,
                     help="tasks per page (a page of queued or running tasks may hold more: "
                          "each node's are read a batch at a time)"),
        click.option("--cursor", default=None, metavar="CURSOR",
                     help="the page to show: the cursor the previous page ended with"),
    )):
        fn = option(fn)
    return fn


def read_page(ctx: click.Context, state: str, query: TaskQuery, cursor: str | None,
              limit: int) -> Page:
    options = options_of(ctx)

    async def body(session: Session) -> Page:
        return await ops.list_tasks(await session.store(), state, query, cursor, limit)

    try:
        return run(options, body)
    except InvalidQuery as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None


def query_of(name: str, key: str, node: str, error: str = "") -> TaskQuery:
    try:
        return TaskQuery(name=name, key=key, node=node, error=error)
    except InvalidQuery as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None


def page_data(state: str, page: Page) -> dict[str, Any]:
    return {"state": state, "count": len(page.items), "next": page.next,
            "scanned": page.scanned, "tasks": [task_data(item) for item in page.items]}


def print_next(out: Console, page: Page, command: str, **flags: str | int | None) -> None:
    """The command that shows the next page (the same flags, and its cursor)."""
    if page.next is None:
        if page.items:
            out.print("(last page)")
        return
    given = "".join(f" --{flag} {shlex.quote(str(value))}" for flag, value in flags.items()
                    if value and not (flag == "limit" and value == DEFAULT_LIMIT))
    out.print(f"next page: {command}{given} --cursor {page.next}", markup=False, soft_wrap=True)


@click.group()
def tasks() -> None:
    """List tasks by state: running, queued, scheduled, retrying."""


@tasks.command("ls")
@click.option("--state", type=click.Choice(STATES), default=None,
              help="only tasks in this state (default: queued and running)")
@listing_options
@click.pass_context
def tasks_ls(ctx: click.Context, state: str | None, node: str, name: str, key: str,
             limit: int, cursor: str | None) -> None:
    """Tasks queued or running on the nodes, or waiting for their time or a retry, a page
    at a time."""
    options = options_of(ctx)
    listed = state or ops.IN_FLIGHT
    page = read_page(ctx, listed, query_of(name, key, node), cursor, limit)
    data = page_data(listed, page)

    def human(out: Console) -> None:
        if not page.items:
            out.print(f"no {'matching ' if name or key or node else ''}"
                      f"{state or 'queued or running'} tasks"
                      + (" on this page's read" if page.next else ""))
        elif listed == "retrying":
            out.print(retries_table(page))
        elif listed == "scheduled":
            out.print(scheduled_table(page))
        else:
            out.print(in_flight_table(page))
        print_next(out, page, "taskctl tasks ls", state=state, name=name, key=key, node=node,
                   limit=limit)

    emit(options, data, human)


def in_flight_table(page: Page) -> Any:
    t = table("task id", "task", "key", "state", "node", "attempt", "accepted", "started",
              "progress")
    now = time.time()
    for item in page.items:
        r = item.record
        if not r.exists:
            t.add_row(r.task_id, "[dim](finished meanwhile)[/dim]", "", "", "", "", "", "", "")
            continue
        t.add_row(r.task_id, escape(r.name), escape(r.key), r.state.value, r.node,
                  str(r.attempt), ago(r.accepted_at, now),
                  ago(r.started_at, now) if r.started_at else "-",
                  f"{r.progress:g}" if r.progress is not None else "-")
    return t


def scheduled_table(page: Page) -> Any:
    t = table("task id", "task", "key", "due", "accepted")
    now = time.time()
    for item in page.items:
        r = item.record
        t.add_row(r.task_id, escape(r.name) if r.exists else "[dim](record gone)[/dim]",
                  escape(r.key), f"{when(item.at)} ({ago(item.at, now)})",
                  ago(r.accepted_at, now) if r.accepted_at else "-")
    return t


def retries_table(page: Page) -> Any:
    t = table("task id", "task", "key", "attempts", "due", "last node", "last error")
    now = time.time()
    for item in page.items:
        r = item.record
        if not r.exists:
            t.add_row(r.task_id, "[dim](record gone)[/dim]", "", "", ago(item.at, now), "", "")
            continue
        message = r.error_message if len(r.error_message) <= 40 else r.error_message[:39] + "…"
        due = ago(item.at, now) if item.at and item.at > now else "now"
        t.add_row(r.task_id, escape(r.name), escape(r.key), str(r.attempt), due, r.node,
                  escape(f"{r.error_type}: {message}") if r.error_type else "-")
    return t


@click.group()
def retries() -> None:
    """The retry set: tasks waiting for their next attempt."""


@retries.command("ls")
@click.option("--error", default="", metavar="TYPE",
              help="only this error type (glob: * and ?, e.g. 'Conn*')")
@listing_options
@click.pass_context
def retries_ls(ctx: click.Context, error: str, node: str, name: str, key: str, limit: int,
               cursor: str | None) -> None:
    """Tasks waiting for a retry, soonest due first, a page at a time."""
    options = options_of(ctx)
    page = read_page(ctx, "retrying", query_of(name, key, node, error), cursor, limit)
    data = page_data("retrying", page)

    def human(out: Console) -> None:
        if not page.items:
            out.print(f"no {'matching ' if name or key or node or error else ''}tasks wait "
                      "for a retry" + (" on this page's read" if page.next else ""))
        else:
            out.print(retries_table(page))
        print_next(out, page, "taskctl retries ls", name=name, key=key, node=node, error=error,
                   limit=limit)

    emit(options, data, human)
