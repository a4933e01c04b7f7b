"""``dlq ls | show | stats | replay | purge``: the dead-letter queue.

Selection, replay and purge are ``ringpool.ops.dlq``'s (the dashboard uses the same):
selection reads the DLQ a page at a time, filtered in Redis, oldest first; ``stats``
counts every entry this way without holding them. A replay stopped at any point loses
nothing, and running it again skips what already went instead of starting a second copy.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ringpool.cli.taskctl.app import (
    EXIT_NOT_FOUND,
    EXIT_REFUSED,
    EXIT_USAGE,
    CommandError,
    Interrupted,
    Session,
    confirm,
    fail,
    options_of,
    run,
)
from ringpool.cli.taskctl.output import DURATION, RATE, console, emit, table
from ringpool.cli.taskctl.task import show_record
from ringpool.ops import dlq as ops
from ringpool.ops.dlq import Tally
from ringpool.ops.units import ago, iso
from ringpool.store.listing import Listed, TaskQuery


@dataclass(frozen=True)
class Filters:
    """The selection flags: globs (``*``, ``?``) over task name and error type, an age."""

    task: str | None = None
    error: str | None = None
    since_s: float | None = None
    limit: int | None = None

    @property
    def any(self) -> bool:
        return bool(self.task or self.error or self.since_s is not None or self.limit)

    def query(self) -> TaskQuery:
        since = time.time() - self.since_s if self.since_s is not None else None
        return TaskQuery(name=self.task or "", error=self.error or "", since=since)


def entry_data(item: Listed) -> dict[str, Any]:
    return {**ops.entry_data(item), "dead_lettered_at_iso": iso(item.at)}


def filter_options(limit_default: int | None = None, limit: bool = True) -> Any:
    def decorate(fn: Any) -> Any:
        if limit:
            fn = click.option("--limit", type=click.IntRange(min=0), default=limit_default,
                              show_default=limit_default is not None,
                              help="at most N entries: the oldest that match (0: no limit)")(fn)
        fn = click.option("--since", "since_s", type=DURATION, default=None, metavar="DURATION",
                          help="only entries dead-lettered in the last DURATION (e.g. 2h)")(fn)
        fn = click.option("--error", "error", default=None, metavar="TYPE",
                          help="only this error type (glob: * and ?, e.g. 'Conn*')")(fn)
        fn = click.option("--task", "task_name", default=None, metavar="NAME",
                          help="only this task name (glob: * and ?, e.g. 'billing.*')")(fn)
        return fn
    return decorate


def entries_table(entries: Sequence[Listed]) -> Any:
    t = table("task id", "task", "error", "attempts", "dead-lettered", "node", "key")
    now = time.time()
    for e in entries:
        r = e.record
        if not r.exists:
            t.add_row(r.task_id, "[dim](record expired)[/dim]", "", "", ago(e.at, now), "", "")
            continue
        message = r.error_message if len(r.error_message) <= 40 else r.error_message[:39] + "…"
        t.add_row(r.task_id, escape(r.name), escape(f"{r.error_type}: {message}"),
                  str(r.attempt), ago(e.at, now), r.node, escape(r.key))
    return t


@click.group()
def dlq() -> None:
    """The dead-letter queue: list, inspect, count, replay, purge."""


@dlq.command("ls")
@filter_options(limit_default=100)
@click.pass_context
def ls(ctx: click.Context, task_name: str | None, error: str | None, since_s: float | None,
       limit: int) -> None:
    """List dead-lettered tasks, oldest first."""
    options = options_of(ctx)
    filters = Filters(task_name, error, since_s, limit or None)

    async def body(session: Session) -> tuple[list[Listed], int]:
        return await ops.select(await session.store(), filters.query(), filters.limit)

    entries, total = run(options, body)
    data = {"total": total, "count": len(entries), "entries": [entry_data(e) for e in entries]}

    def human(out: Console) -> None:
        if not entries:
            out.print(f"no matching entries (the DLQ holds {total})")
            return
        out.print(entries_table(entries))
        capped = f" (the oldest that match; --limit {limit})" if len(entries) == limit else ""
        out.print(f"{len(entries)} shown{capped}; the DLQ holds {total}")

    emit(options, data, human)


@dlq.command("show")
@click.argument("task_id")
@click.pass_context
def show(ctx: click.Context, task_id: str) -> None:
    """One dead-lettered task: error, traceback, attempts, arguments."""
    show_record(ctx, task_id, must_be_dead=True)


@dataclass
class Stats:
    """Counts over every matching entry, gathered a page at a time."""

    matched: int = 0
    by_pair: Counter[tuple[str, str]] = field(default_factory=Counter)
    oldest: float | None = None
    newest: float | None = None

    def add(self, entry: Listed) -> None:
        self.matched += 1
        r = entry.record
        self.by_pair[(r.name, r.error_type) if r.exists else ("(expired)", "(expired)")] += 1
        if entry.at is not None:
            self.oldest = entry.at if self.oldest is None else min(self.oldest, entry.at)
            self.newest = entry.at if self.newest is None else max(self.newest, entry.at)

    def by(self, index: int) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for pair, n in self.by_pair.items():
            counts[pair[index]] += n
        return dict(counts.most_common())


@dlq.command("stats")
@filter_options(limit=False)
@click.pass_context
def stats(ctx: click.Context, task_name: str | None, error: str | None,
          since_s: float | None) -> None:
    """Counts by task name and by error type, over every entry that matches."""
    options = options_of(ctx)
    filters = Filters(task_name, error, since_s)

    async def body(session: Session) -> tuple[Stats, int]:
        store = await session.store()
        total = await store.dlq_size()
        counted = Stats()
        async for entry in ops.matching(store, filters.query()):
            counted.add(entry)
        return counted, total

    counted, total = run(options, body)
    by_pair = counted.by_pair
    data: dict[str, Any] = {
        "total": total, "matched": counted.matched,
        "by_task": counted.by(0), "by_error": counted.by(1),
        "by_task_and_error": [{"task": t, "error_type": err, "count": n}
                              for (t, err), n in by_pair.most_common()],
        "oldest": counted.oldest, "newest": counted.newest,
    }

    def human(out: Console) -> None:
        out.print(f"[bold]DLQ[/bold] {total} entries" + (
            f", {counted.matched} matched" if filters.any else "")
            + (f"; oldest {ago(counted.oldest)}, newest {ago(counted.newest)}"
               if counted.matched else ""))
        if not counted.matched:
            return
        t = table("task", "error", "count")
        for (name, err), n in by_pair.most_common():
            t.add_row(escape(name), escape(err), str(n))
        out.print(t)

    emit(options, data, human)


# -- replay ----------------------------------------------------------------------------------


async def replay_entries(
    session: Session, task_ids: Sequence[str], tally: Tally, rate: float | None,
    progress: Progress | None,
) -> None:
    store = await session.store()
    router = await session.router()
    progress_task = progress.add_task("replaying", total=len(task_ids)) if progress else None

    def show(done: Tally) -> None:
        if progress is not None and progress_task is not None:
            progress.update(progress_task, completed=done.done,
                            description=f"replayed {done.replayed} skipped {done.skipped} "
                                        f"failed {done.failed}")

    await ops.replay(store, router, task_ids, tally, rate, show)


def _progress_bar(enabled: bool) -> Progress | None:
    if not enabled:
        return None
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), console=console(stderr=True), transient=False,
    )


def _selection_args(ids: tuple[str, ...], all_: bool, filters: Filters, verb: str) -> None:
    if ids and (all_ or filters.any):
        fail(f"give task ids, or --all, or filters; not both ({verb})", EXIT_USAGE)
    if not ids and not all_ and not filters.any:
        fail(f"name what to {verb}: task ids, --all, or filters (--task, --error, --since, "
             "--limit)", EXIT_USAGE)


@dlq.command("replay")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option("--all", "all_", is_flag=True, help="every entry in the DLQ")
@filter_options(limit_default=None)
@click.option("--rate", type=RATE, default=None, metavar="N/s",
              help="at most N replays per second (token bucket), e.g. 100/s or 600/m")
@click.option("--dry-run", is_flag=True, help="show what would be replayed; change nothing")
@click.option("--yes", "-y", is_flag=True, help="do not ask for confirmation")
@click.option("--progress/--no-progress", "show_progress", default=None,
              help="progress bar on stderr [default: when stderr is a terminal]")
@click.pass_context
def replay(ctx: click.Context, ids: tuple[str, ...], all_: bool, task_name: str | None,
           error: str | None, since_s: float | None, limit: int | None, rate: float | None,
           dry_run: bool, yes: bool, show_progress: bool | None) -> None:
    """Re-dispatch dead-lettered tasks as fresh first attempts.

    An entry leaves the DLQ only when its owner accepts the replay, so an
    interrupted replay can simply be run again: entries already replayed are
    skipped, never started twice.
    """
    options = options_of(ctx)
    filters = Filters(task_name, error, since_s, limit or None)
    _selection_args(ids, all_, filters, "replay")

    async def choose(session: Session) -> list[Listed]:
        store = await session.store()
        if ids:
            return await ops.select_ids(store, list(dict.fromkeys(ids)))
        return (await ops.select(store, filters.query(), filters.limit))[0]

    entries = run(options, choose)
    already = len(set(ids)) - len(entries) if ids else 0
    if dry_run:
        data = {"dry_run": True, "would_replay": len(entries), "not_in_dlq": already,
                "rate_per_s": rate, "entries": [entry_data(e) for e in entries]}

        def human(out: Console) -> None:
            if entries:
                out.print(entries_table(entries))
            eta = f", about {len(entries) / rate:.0f}s at {rate:g}/s" if rate else ""
            out.print(f"dry run: would replay {len(entries)}{eta}"
                      + (f" ({already} given ids are no longer in the DLQ)" if already else "")
                      + "; nothing changed")

        emit(options, data, human)
        return
    tally = Tally(selected=len(entries), skipped=already)
    if entries and not yes:
        eta = f" at {rate:g}/s (about {len(entries) / rate:.0f}s)" if rate else ""
        confirm(f"Replay {len(entries)} dead-lettered tasks{eta}?",
                "aborted: nothing was replayed")
    enabled = show_progress if show_progress is not None else (
        sys.stderr.isatty() and not options.json)
    progress = _progress_bar(enabled and bool(entries))

    async def body(session: Session) -> None:
        if progress is None:
            await replay_entries(session, [e.record.task_id for e in entries], tally, rate, None)
            return
        with progress:
            await replay_entries(session, [e.record.task_id for e in entries], tally, rate, progress)

    try:
        if entries:
            run(options, body)
    except Interrupted:
        raise Interrupted(f"interrupted: {tally.line()}; run the same command again to "
                          "replay the rest") from None
    except Exception as exc:
        if tally.done:
            click.echo(f"taskctl: stopped after {tally.line()}", err=True)
        raise exc from None
    tally.finished = tally.finished or time.monotonic()
    data = tally.to_dict()

    def summary(out: Console) -> None:
        out.print(tally.line())
        for failure in tally.failures[:10]:
            out.print(f"  [red]failed[/red] {failure['task_id']}: {failure['code']} "
                      f"{escape(failure['message'])}")
        if tally.failed > 10:
            out.print(f"  … and {tally.failed - 10} more (see --json)")

    emit(options, data, summary)
    if tally.failed:
        raise CommandError(f"{tally.failed} of {tally.selected} replays failed; they stay in "
                           "the DLQ", EXIT_REFUSED)


# -- purge -----------------------------------------------------------------------------------


@dlq.command("purge")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option("--all", "all_", is_flag=True, help="every entry in the DLQ")
@click.option("--older-than", "older_than_s", type=DURATION, default=None, metavar="DURATION",
              help="entries dead-lettered more than DURATION ago (e.g. 7d)")
@click.option("--yes", "-y", is_flag=True, help="do not ask for confirmation")
@click.pass_context
def purge(ctx: click.Context, ids: tuple[str, ...], all_: bool, older_than_s: float | None,
          yes: bool) -> None:
    """Delete dead-lettered tasks and their records, for good."""
    options = options_of(ctx)
    chosen = sum((bool(ids), all_, older_than_s is not None))
    if chosen != 1:
        fail("name what to purge: task ids, --all, or --older-than DURATION (exactly one)",
             EXIT_USAGE)

    async def choose(session: Session) -> list[str]:
        store = await session.store()
        if ids:
            unique = list(dict.fromkeys(ids))
            times = await store.dlq_times(unique)
            missing = [i for i, t in zip(unique, times, strict=True) if t is None]
            if missing:
                raise CommandError(f"not in the dead-letter queue: {', '.join(missing)}",
                                   EXIT_NOT_FOUND)
            return unique
        until = time.time() - older_than_s if older_than_s is not None else None
        return [e.record.task_id async for e in ops.matching(store, TaskQuery(until=until))]

    targets = run(options, choose)
    if targets and not yes:
        what = "entry" if len(targets) == 1 else "entries"
        confirm(f"Purge {len(targets)} DLQ {what} and delete their records?",
                "aborted: nothing was purged")

    async def body(session: Session) -> int:
        return await ops.purge(await session.store(), targets)

    removed = run(options, body) if targets else 0
    data = {"requested": len(targets), "purged": removed}
    emit(options, data, lambda out: out.print(
        f"purged {removed}" + (f" of {len(targets)} (the rest left the DLQ meanwhile)"
                               if removed != len(targets) else "")))


__all__ = ["Filters", "dlq"]
