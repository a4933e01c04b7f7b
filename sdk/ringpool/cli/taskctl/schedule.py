"""``schedule ls | add | rm | pause | resume``: the cluster's periodic schedules."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import click
from rich.console import Console
from rich.markup import escape

from ringpool.cli.taskctl.app import Session, options_of, run
from ringpool.cli.taskctl.output import DURATION, emit, table
from ringpool.ops import schedules as ops
from ringpool.ops.units import when
from ringpool.store.schedules import StoredSchedule
from ringpool.store.store import StateStore


def _next(schedule: StoredSchedule) -> str:
    return "paused" if schedule.paused else when(schedule.next_at)


@click.group()
def schedule() -> None:
    """Periodic schedules: list, add, remove, pause and resume them.

    \b
    A tick fires exactly once, even across a coordinator failover. Ticks missed while no
    coordinator led are coalesced: the latest fires once, the earlier are counted skipped.
    """


@schedule.command("ls")
@click.pass_context
def ls(ctx: click.Context) -> None:
    """Every schedule: its task, key, timing, next and last tick, and counts."""
    options = options_of(ctx)

    async def body(session: Session) -> list[StoredSchedule]:
        return await (await session.store()).schedules.all()

    schedules = run(options, body)

    def human(out: Console) -> None:
        if not schedules:
            out.print("no schedules")
            return
        t = table("name", "task", "key", "timing", "next tick", "last tick", "fired",
                  "skipped", "origin")
        for s in schedules:
            t.add_row(escape(s.name), escape(s.task_name), escape(s.key), s.timing.describe(),
                      _next(s), when(s.last_tick_at), str(s.fired), str(s.skipped), s.origin)
        out.print(t)

    emit(options, [s.to_dict() for s in schedules], human)


@schedule.command("add")
@click.argument("name")
@click.option("--task", "task_name", required=True, metavar="T", help="the task's name")
@click.option("--key", required=True, metavar="K", help="the routing key each tick is sent with")
@click.option("--args", "args_json", default="", metavar="JSON", help="positional arguments, a JSON list")
@click.option("--kwargs", "kwargs_json", default="", metavar="JSON",
              help="keyword arguments, a JSON object")
@click.option("--cron", default=None, metavar="EXPR", help="a five-field cron expression")
@click.option("--every", "every_s", type=DURATION, default=None, metavar="DURATION",
              help="tick at the multiples of DURATION since the Unix epoch (e.g. 30s, 5m)")
@click.option("--tz", default=None, metavar="ZONE",
              help="the IANA time zone a cron expression is read in [default: UTC]")
@click.pass_context
def add(ctx: click.Context, name: str, task_name: str, key: str, args_json: str,
        kwargs_json: str, cron: str | None, every_s: float | None, tz: str | None) -> None:
    """Add schedule NAME, or replace its definition (counts and pause are kept)."""
    options = options_of(ctx)
    if (cron is None) == (every_s is None):
        raise click.UsageError("give --cron EXPR or --every DURATION (one of them)")
    args, kwargs = ops.arguments(args_json, kwargs_json)

    async def body(session: Session) -> tuple[str, StoredSchedule]:
        result, stored = await ops.add(await session.store(), await session.ring(), name,
                                       task_name, key, args, kwargs, cron, every_s, tz)
        return result.name.lower(), stored

    result, stored = run(options, body)

    def human(out: Console) -> None:
        out.print(f"schedule {escape(name)} {result}: {escape(stored.task_name)} to key "
                  f"{escape(stored.key)}, {stored.timing.describe()}; next tick {_next(stored)}")

    emit(options, {"result": result, "schedule": stored.to_dict()}, human)


@schedule.command("pause")
@click.argument("name")
@click.pass_context
def pause(ctx: click.Context, name: str) -> None:
    """Pause schedule NAME: no tick fires until it is resumed."""
    _change(ctx, name, ops.pause, "paused")


@schedule.command("resume")
@click.argument("name")
@click.pass_context
def resume(ctx: click.Context, name: str) -> None:
    """Resume schedule NAME from its next tick after now (ticks missed while it was paused
    are not caught up)."""
    _change(ctx, name, ops.resume, "resumed")


def _change(ctx: click.Context, name: str,
            change: Callable[[StateStore, str], Awaitable[StoredSchedule]], verb: str) -> None:
    options = options_of(ctx)

    async def body(session: Session) -> StoredSchedule:
        return await change(await session.store(), name)

    stored = run(options, body)
    then = "" if stored.paused else f"; next tick {_next(stored)}"
    emit(options, stored.to_dict(), lambda out: out.print(f"schedule {escape(name)} {verb}{then}"))


@schedule.command("rm")
@click.argument("name")
@click.pass_context
def rm(ctx: click.Context, name: str) -> None:
    """Remove schedule NAME (tasks its ticks already made stay)."""
    options = options_of(ctx)

    async def body(session: Session) -> None:
        await ops.remove(await session.store(), name)

    run(options, body)
    emit(options, {"name": name, "removed": True},
         lambda out: out.print(f"schedule {escape(name)} removed"))
