"""``dlq ls | show | stats | replay | purge``: the dead-letter queue.

Selection pages through the DLQ (oldest first, ``DLQ_PAGE`` entries a read) and
reads each page's task records in one pipeline; ``stats`` counts every entry
this way without holding them. Replay re-sends each record's stored envelope as a replay; the
node's accept script takes the id out of the DLQ in the same step that accepts
it, so a replay stopped at any point loses nothing, and running it again skips
what already went (NOT_REDELIVERABLE) instead of starting a second copy.
"""

from __future__ import annotations

import fnmatch
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
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
from ringpool.cli.taskctl.output import DURATION, RATE, ago, console, emit, iso, table
from ringpool.cli.taskctl.ratelimit import TokenBucket
from ringpool.cli.taskctl.task import load, print_record
from ringpool.core.protocol import code_name
from ringpool.errors import ClusterUnavailable, RingpoolError, TaskNotFound
from ringpool.store.store import DLQ_PAGE, StateStore, TaskRecord
from ringpool.v1 import node_pb2 as pb

REPLAY_BATCH = 500  # envelopes sent per call when no --rate paces them


@dataclass(frozen=True)
class Filters:
    task: str | None = None
    error: str | None = None
    since_s: float | None = None
    limit: int | None = None

    @property
    def any(self) -> bool:
        return bool(self.task or self.error or self.since_s is not None or self.limit)

    def matches(self, record: TaskRecord | None) -> bool:
        """Whether an entry passes the task and error filters (an expired record passes
        only when there are none)."""
        if not (self.task or self.error):
            return True
        if record is None:
            return False
        if self.task and not fnmatch.fnmatchcase(record.name, self.task):
            return False
        return not (self.error and not fnmatch.fnmatchcase(record.error_type, self.error))


@dataclass(frozen=True)
class Entry:
    """One dead-lettered task, as listed."""

    task_id: str
    dead_at: float
    record: TaskRecord | None

    def to_dict(self) -> dict[str, Any]:
        r = self.record
        return {
            "task_id": self.task_id, "name": r.name if r else None,
            "key": r.key if r else None,
            "error_type": r.error_type if r else None,
            "error_message": r.error_message if r else None,
            "attempt": r.attempt if r else None, "replays": r.replays if r else None,
            "node": r.node if r else None,
            "dead_lettered_at": self.dead_at, "dead_lettered_at_iso": iso(self.dead_at),
        }


async def matching(store: StateStore, filters: Filters) -> AsyncIterator[Entry]:
    """Every entry that passes the filters, oldest first (``limit`` is the caller's)."""
    since = time.time() - filters.since_s if filters.since_s is not None else None
    async for page in store.dlq_pages(since=since, page_size=DLQ_PAGE):
        records = await store.records(task_id for task_id, _ in page)
        for (task_id, dead_at), record in zip(page, records, strict=True):
            if filters.matches(record):
                yield Entry(task_id, dead_at, record)


async def select(store: StateStore, filters: Filters) -> tuple[list[Entry], int]:
    """Matching entries (the oldest ``limit`` of them, or all) and the DLQ's total size."""
    total = await store.dlq_size()
    chosen: list[Entry] = []
    async for entry in matching(store, filters):
        chosen.append(entry)
        if filters.limit and len(chosen) >= filters.limit:
            break
    return chosen, total


async def select_ids(store: StateStore, task_ids: Sequence[str]) -> list[Entry]:
    """Entries for explicit ids; TaskNotFound naming the ids that have no task at all."""
    records = await store.records(task_ids)
    times = await store.dlq_times(task_ids)
    unknown = [i for i, r, t in zip(task_ids, records, times, strict=True)
               if r is None and t is None]
    if unknown:
        raise TaskNotFound(f"no such task: {', '.join(unknown)}")
    return [Entry(i, t, r) for i, r, t in zip(task_ids, records, times, strict=True)
            if t is not None]


def filter_options(limit_default: int | None = None, limit: bool = True) -> Any:
    def decorate(fn: Any) -> Any:
        if limit:
            fn = click.option("--limit", type=click.IntRange(min=0), default=limit_default,
                              show_default=limit_default is not None,
                              help="at most N entries: the oldest that match (0: no limit)")(fn)
        fn = click.option("--since", "since_s", type=DURATION, default=None, metavar="DURATION",
                          help="only entries dead-lettered in the last DURATION (e.g. 2h)")(fn)
        fn = click.option("--error", "error", default=None, metavar="TYPE",
                          help="only this error type (glob, e.g. 'Conn*')")(fn)
        fn = click.option("--task", "task_name", default=None, metavar="NAME",
                          help="only this task name (glob, e.g. 'billing.*')")(fn)
        return fn
    return decorate


def entries_table(entries: Sequence[Entry]) -> Any:
    t = table("task id", "task", "error", "attempts", "dead-lettered", "node", "key")
    now = time.time()
    for e in entries:
        r = e.record
        if r is None:
            t.add_row(e.task_id, "[dim](record expired)[/dim]", "", "", ago(e.dead_at, now), "",
                      "")
            continue
        message = r.error_message if len(r.error_message) <= 40 else r.error_message[:39] + "…"
        t.add_row(e.task_id, escape(r.name), escape(f"{r.error_type}: {message}"),
                  str(r.attempt), ago(e.dead_at, now), r.node, escape(r.key))
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

    async def body(session: Session) -> tuple[list[Entry], int]:
        return await select(await session.store(), filters)

    entries, total = run(options, body)
    data = {"total": total, "count": len(entries), "entries": [e.to_dict() for e in entries]}

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
    options = options_of(ctx)

    async def body(session: Session) -> dict[str, Any]:
        return await load(session, task_id, must_be_dead=True)

    data = run(options, body)
    emit(options, data, lambda out: print_record(out, data))


@dataclass
class Stats:
    """Counts over every matching entry, gathered a page at a time."""

    matched: int = 0
    by_pair: Counter[tuple[str, str]] = field(default_factory=Counter)
    oldest: float | None = None
    newest: float | None = None

    def add(self, entry: Entry) -> None:
        self.matched += 1
        r = entry.record
        self.by_pair[(r.name, r.error_type) if r else ("(expired)", "(expired)")] += 1
        self.oldest = entry.dead_at if self.oldest is None else min(self.oldest, entry.dead_at)
        self.newest = entry.dead_at if self.newest is None else max(self.newest, entry.dead_at)

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
        async for entry in matching(store, filters):
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


@dataclass
class Tally:
    selected: int = 0
    replayed: int = 0
    skipped: int = 0
    failed: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def done(self) -> int:
        return self.replayed + self.skipped + self.failed

    @property
    def elapsed_s(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    def fail(self, task_id: str, code: str, message: str) -> None:
        self.failed += 1
        if len(self.failures) < 100:
            self.failures.append({"task_id": task_id, "code": code, "message": message})

    def to_dict(self) -> dict[str, Any]:
        elapsed = self.elapsed_s
        return {"selected": self.selected, "replayed": self.replayed, "skipped": self.skipped,
                "failed": self.failed, "failures": self.failures,
                "elapsed_s": round(elapsed, 3),
                "rate_per_s": round(self.done / elapsed, 1) if elapsed > 0 else None}

    def line(self) -> str:
        elapsed = self.elapsed_s
        rate = f" ({self.done / elapsed:.1f}/s)" if elapsed > 0 and self.done else ""
        return (f"replayed {self.replayed}, skipped {self.skipped}, failed {self.failed} "
                f"of {self.selected} in {elapsed:.1f}s{rate}")


def replay_envelope(record: TaskRecord) -> pb.TaskEnvelope:
    """A copy of the stored envelope marked as a first attempt of a replay."""
    envelope = pb.TaskEnvelope()
    envelope.CopyFrom(record.envelope)
    envelope.source = pb.SOURCE_REPLAY
    envelope.attempt = 1
    return envelope


async def replay_entries(
    session: Session, task_ids: Sequence[str], tally: Tally, rate: float | None,
    progress: Progress | None,
) -> None:
    store = await session.store()
    router = await session.router()
    bucket = TokenBucket(rate) if rate else None
    batch = bucket.capacity if bucket else REPLAY_BATCH
    progress_task = progress.add_task("replaying", total=len(task_ids)) if progress else None
    tally.started = time.monotonic()
    for start in range(0, len(task_ids), batch):
        chunk = task_ids[start:start + batch]
        if bucket is not None:
            await bucket.take(len(chunk))
        records = await store.records(chunk)
        envelopes: list[pb.TaskEnvelope] = []
        for task_id, record in zip(chunk, records, strict=True):
            if record is None:
                tally.skipped += 1  # purged (or expired) since it was selected
            elif not record.envelope.task_id:
                tally.fail(task_id, "NO_ENVELOPE", "the record holds no envelope to replay")
            else:
                envelopes.append(replay_envelope(record))
        unreachable: ClusterUnavailable | None = None
        for envelope, ack in zip(envelopes, await router.send(envelopes), strict=True):
            if isinstance(ack, ClusterUnavailable):
                unreachable = ack  # stays in the DLQ; the replay stops after this chunk
            elif isinstance(ack, RingpoolError):
                tally.fail(envelope.task_id, type(ack).__name__, str(ack))
            elif ack.code == pb.ACCEPTED:
                tally.replayed += 1
            elif ack.code == pb.NOT_REDELIVERABLE:
                tally.skipped += 1
            else:
                tally.fail(ack.task_id, code_name(ack.code), ack.message)
        if unreachable is not None:
            raise unreachable
        if progress is not None and progress_task is not None:
            progress.update(progress_task, completed=tally.done,
                            description=f"replayed {tally.replayed} skipped {tally.skipped} "
                                        f"failed {tally.failed}")
    tally.finished = time.monotonic()


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

    async def choose(session: Session) -> list[Entry]:
        store = await session.store()
        if ids:
            return await select_ids(store, list(dict.fromkeys(ids)))
        return (await select(store, filters))[0]

    entries = run(options, choose)
    already = len(set(ids)) - len(entries) if ids else 0
    if dry_run:
        data = {"dry_run": True, "would_replay": len(entries), "not_in_dlq": already,
                "rate_per_s": rate, "entries": [e.to_dict() for e in entries]}

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
            await replay_entries(session, [e.task_id for e in entries], tally, rate, None)
            return
        with progress:
            await replay_entries(session, [e.task_id for e in entries], tally, rate, progress)

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
        return [task_id async for page in store.dlq_pages(until=until) for task_id, _ in page]

    targets = run(options, choose)
    if targets and not yes:
        what = "entry" if len(targets) == 1 else "entries"
        confirm(f"Purge {len(targets)} DLQ {what} and delete their records?",
                "aborted: nothing was purged")

    async def body(session: Session) -> int:
        store = await session.store()
        removed = 0
        for start in range(0, len(targets), 1000):
            removed += await store.dlq_purge(targets[start:start + 1000])
        return removed

    removed = run(options, body) if targets else 0
    data = {"requested": len(targets), "purged": removed}
    emit(options, data, lambda out: out.print(
        f"purged {removed}" + (f" of {len(targets)} (the rest left the DLQ meanwhile)"
                               if removed != len(targets) else "")))


__all__ = ["Entry", "Filters", "Tally", "dlq", "replay_envelope", "select"]
