"""The dead-letter queue's operations: select, replay, purge.

Selection reads the DLQ a page at a time through the store's listing (filtered in
Redis), oldest first. Replay re-sends each record's stored envelope as a replay; the
node's accept script takes the id out of the DLQ in the same step that accepts it, so
a replay stopped at any point loses nothing, and running it again skips what already
went (NOT_REDELIVERABLE) instead of starting a second copy.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ringpool.client.router import Router
from ringpool.core.protocol import TaskState, code_name
from ringpool.errors import ClusterUnavailable, RingpoolError, TaskNotFound
from ringpool.ops.ratelimit import TokenBucket
from ringpool.store.listing import Listed, TaskQuery, TaskRecordSummary
from ringpool.store.store import StateStore, TaskRecord
from ringpool.v1 import node_pb2 as pb

DLQ_PAGE = 500  # entries a selection reads per listing call
REPLAY_BATCH = 500  # envelopes sent per call when no rate paces them
PURGE_BATCH = 1000


async def matching(store: StateStore, query: TaskQuery) -> AsyncIterator[Listed]:
    """Every DLQ entry that matches ``query``, oldest first."""
    cursor: str | None = None
    while True:
        page = await store.dlq_list(query, cursor, limit=DLQ_PAGE, newest_first=False)
        for item in page.items:
            yield item
        if page.next is None:
            return
        cursor = page.next


async def select(
    store: StateStore, query: TaskQuery, limit: int | None = None
) -> tuple[list[Listed], int]:
    """The oldest ``limit`` matching entries (or all of them), and the DLQ's size."""
    total = await store.dlq_size()
    chosen: list[Listed] = []
    async for item in matching(store, query):
        chosen.append(item)
        if limit and len(chosen) >= limit:
            break
    return chosen, total


async def select_ids(store: StateStore, task_ids: Sequence[str]) -> list[Listed]:
    """The entries of these ids that are in the DLQ; TaskNotFound naming the ids that
    have no task at all."""
    records = await store.records(task_ids)
    times = await store.dlq_times(task_ids)
    unknown = [i for i, r, t in zip(task_ids, records, times, strict=True)
               if r is None and t is None]
    if unknown:
        raise TaskNotFound(f"no such task: {', '.join(unknown)}")
    return [Listed(r.summary() if r else TaskRecordSummary.missing(i), t)
            for i, r, t in zip(task_ids, records, times, strict=True) if t is not None]


def entry_data(item: Listed) -> dict[str, Any]:
    """A DLQ entry as JSON: ``None`` for what an expired record no longer says."""
    r = item.record
    known = r.exists
    return {
        "task_id": r.task_id, "name": r.name if known else None,
        "key": r.key if known else None, "error_type": r.error_type if known else None,
        "error_message": r.error_message if known else None,
        "attempt": r.attempt if known else None, "replays": r.replays if known else None,
        "node": r.node if known else None, "dead_lettered_at": item.at,
    }


# -- replay -------------------------------------------------------------------------------


@dataclass
class Tally:
    """How a replay went, as it goes."""

    selected: int = 0
    replayed: int = 0
    skipped: int = 0  # left the DLQ before its turn (replayed or purged meanwhile)
    failed: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)  # the first 100
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


async def replay(
    store: StateStore, router: Router, task_ids: Sequence[str], tally: Tally,
    rate_per_s: float | None = None, on_progress: Callable[[Tally], None] | None = None,
) -> None:
    """Replay these DLQ entries, at most ``rate_per_s`` a second; ``tally`` counts as it
    goes and ``on_progress`` hears after each batch. ClusterUnavailable stops it."""
    bucket = TokenBucket(rate_per_s) if rate_per_s else None
    batch = bucket.capacity if bucket else REPLAY_BATCH
    tally.started = time.monotonic()
    for start in range(0, len(task_ids), batch):
        chunk = task_ids[start:start + batch]
        if bucket is not None:
            await bucket.take(len(chunk))
        records = await store.records(chunk)
        envelopes: list[pb.TaskEnvelope] = []
        for task_id, record in zip(chunk, records, strict=True):
            if record is None or record.state is TaskState.SUCCEEDED:
                # Purged (or expired) since it was selected, or replayed meanwhile: a
                # task that succeeded keeps no envelope.
                tally.skipped += 1
            elif not record.envelope.task_id:
                tally.fail(task_id, "NO_ENVELOPE", "the record holds no envelope to replay")
            else:
                envelopes.append(replay_envelope(record))
        if envelopes:
            await _send(router, envelopes, tally)
        if on_progress is not None:
            on_progress(tally)
    tally.finished = time.monotonic()


async def _send(router: Router, envelopes: list[pb.TaskEnvelope], tally: Tally) -> None:
    unreachable: ClusterUnavailable | None = None
    for envelope, ack in zip(envelopes, await router.send(envelopes), strict=True):
        if isinstance(ack, ClusterUnavailable):
            unreachable = ack  # stays in the DLQ; the replay stops after this batch
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


# -- purge --------------------------------------------------------------------------------


async def purge(store: StateStore, task_ids: Sequence[str],
                on_progress: Callable[[int], None] | None = None) -> int:
    """Delete these DLQ entries and their records; returns how many were still there."""
    removed = 0
    for start in range(0, len(task_ids), PURGE_BATCH):
        removed += await store.dlq_purge(task_ids[start:start + PURGE_BATCH])
        if on_progress is not None:
            on_progress(removed)
    return removed
