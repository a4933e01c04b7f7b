"""The in-memory cluster's state: task records, the test's clock, what is due when, the DLQ.

It holds what Redis holds for a real cluster, with the same meanings (see
``ringpool.store``): one ``TaskRecord`` per task, idempotency fingerprints scoped by
task name, one timeline of due work (new tasks, delayed tasks, retries) and the
dead-letter queue.
The clock is the test's: it moves only when told to. Nothing here runs a task.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ringpool.core.outcomes import Verdict
from ringpool.core.protocol import TaskState, cancel_refusal
from ringpool.store.store import TaskRecord
from ringpool.task import TaskDefinition
from ringpool.v1 import node_pb2 as pb

WAITING = frozenset({TaskState.QUEUED, TaskState.RETRY_SCHEDULED, TaskState.SCHEDULED})


@dataclass
class Entry:
    """A task the cluster accepted: its record (with its envelope) and the task it calls."""

    record: TaskRecord
    definition: TaskDefinition[Any, Any]
    owner: str  # the node that owns its key
    expires_at: float = math.inf  # a success's (or a cancel's) record lives for the result TTL


class MemoryState:
    def __init__(self, now: float, result_ttl_s: float, fingerprint_ttl_s: float) -> None:
        self.now = now
        self.result_ttl_s = result_ttl_s
        self.fingerprint_ttl_s = fingerprint_ttl_s
        self._entries: dict[str, Entry] = {}
        self._fingerprints: dict[tuple[str, ...], tuple[str, float]] = {}  # -> (task id, expiry)
        # (due, sequence, task id): one heap for new tasks and retries, earliest first,
        # then in acceptance order. An entry whose task stopped waiting is skipped.
        self._timeline: list[tuple[float, int, str]] = []
        self._sequence = itertools.count()
        self._dlq: dict[str, float] = {}  # task id -> when it died, oldest first

    # -- the clock --------------------------------------------------------------------

    def next_due(self) -> float | None:
        """When the earliest waiting task is due, if any task waits."""
        while self._timeline:
            due, _, task_id = self._timeline[0]
            entry = self.entry(task_id)
            if entry is not None and entry.record.state in WAITING:
                return due
            heapq.heappop(self._timeline)
        return None

    def move_to(self, when: float) -> None:
        self.now = max(self.now, when)

    # -- accepting ----------------------------------------------------------------------

    def fingerprint(self, envelope: pb.TaskEnvelope) -> tuple[str, ...]:
        """The caller's idempotency key scoped by task name, else the task id itself."""
        if envelope.idempotency_key:
            return ("key", envelope.name, envelope.idempotency_key)
        return ("id", envelope.task_id)

    def holder(self, envelope: pb.TaskEnvelope) -> str | None:
        """The task id already holding this envelope's fingerprint, if it is live."""
        held = self._fingerprints.get(self.fingerprint(envelope))
        return held[0] if held is not None and held[1] > self.now else None

    def accept(
        self, envelope: pb.TaskEnvelope, owner: str, definition: TaskDefinition[Any, Any]
    ) -> str:
        """Record a new task, due now or at its eta (SCHEDULED until then); returns the id
        to hand out (the original's for a duplicate fingerprint, and then nothing changes)."""
        original = self.holder(envelope)
        if original is not None:
            return original
        task_id = envelope.task_id
        self._fingerprints[self.fingerprint(envelope)] = (task_id, self.now + self.fingerprint_ttl_s)
        delayed = envelope.eta > self.now
        record = TaskRecord(task_id, TaskState.SCHEDULED if delayed else TaskState.QUEUED,
                            name=envelope.name, key=envelope.key, node="" if delayed else owner,
                            attempt=envelope.attempt, created_at=self.now,
                            accepted_at=self.now, envelope=envelope)
        self._entries[task_id] = Entry(record, definition, owner)
        self._schedule(task_id, envelope.eta if delayed else self.now)
        return task_id

    def _schedule(self, task_id: str, due: float) -> None:
        heapq.heappush(self._timeline, (due, next(self._sequence), task_id))

    # -- running ------------------------------------------------------------------------

    def entry(self, task_id: str) -> Entry | None:
        entry = self._entries.get(task_id)
        if entry is not None and entry.expires_at <= self.now:
            del self._entries[task_id]
            return None
        return entry

    def pop_due(self) -> list[Entry]:
        """Every task due by now, in order, marked RUNNING (a retry as its next attempt)."""
        due: list[Entry] = []
        while self._timeline and self._timeline[0][0] <= self.now:
            _, _, task_id = heapq.heappop(self._timeline)
            entry = self.entry(task_id)
            if entry is None or entry.record.state not in WAITING:
                continue
            record = entry.record
            if record.state is TaskState.RETRY_SCHEDULED:
                record.attempt += 1
                record.envelope.attempt = record.attempt
            record.state = TaskState.RUNNING
            record.node = entry.owner
            record.started_at = self.now
            due.append(entry)
        return due

    def finish(self, entry: Entry, verdict: Verdict) -> None:
        """Apply a run's verdict to its record, as the node's transition does in Redis (a
        cancelled task's run records nothing: the cancel fenced it off)."""
        record = entry.record
        if record.state is TaskState.CANCELLED:
            return
        if verdict.op == "ok":
            record.state, record.result = TaskState.SUCCEEDED, verdict.result
            record.finished_at = self.now
            record.completions += 1
            entry.expires_at = self.now + self.result_ttl_s
            return
        record.error_type, record.error_message = verdict.error_type, verdict.error_message
        record.traceback = verdict.traceback
        record.last_failure_at = self.now
        if record.first_failure_at is None:
            record.first_failure_at = self.now
        if verdict.op == "retry":
            record.state = TaskState.RETRY_SCHEDULED
            self._schedule(record.task_id, self.now + verdict.retry_in_s)
            return
        record.state, record.dead_reason = TaskState.FAILED, verdict.dead_reason
        record.finished_at = self.now
        record.completions += 1
        self._dlq[record.task_id] = self.now

    def cancel(self, task_id: str) -> TaskState:
        """Cancel a task that has not finished (it leaves the timeline; its record expires
        after the result TTL): the state it was in. Raises what a real cancel raises."""
        entry = self.entry(task_id)
        before = entry.record.state if entry is not None else TaskState.UNKNOWN
        refused = cancel_refusal(task_id, before)
        if refused is not None:
            raise refused
        assert entry is not None
        record = entry.record
        record.state, record.finished_at = TaskState.CANCELLED, self.now
        record.completions += 1
        entry.expires_at = self.now + self.result_ttl_s
        return before

    # -- the dead-letter queue ----------------------------------------------------------

    def dead(self) -> list[TaskRecord]:
        """The DLQ's records, oldest first."""
        return [entry.record for task_id in self._dlq if (entry := self.entry(task_id))]

    def replay(self, task_ids: Iterable[str]) -> list[str]:
        """Take these tasks out of the DLQ as fresh first attempts, due now; returns those
        that were in it (the others are skipped, as a real replay skips them)."""
        replayed = []
        for task_id in dict.fromkeys(task_ids):
            entry = self.entry(task_id)
            if self._dlq.pop(task_id, None) is None or entry is None:
                continue
            record = entry.record
            fingerprint = self.fingerprint(record.envelope)
            if self.holder(record.envelope) in (None, task_id):
                self._fingerprints[fingerprint] = (task_id, self.now + self.fingerprint_ttl_s)
            record.state, record.attempt, record.envelope.attempt = TaskState.QUEUED, 1, 1
            record.replays += 1
            record.result = record.finished_at = None
            record.accepted_at = self.now
            self._schedule(task_id, self.now)
            replayed.append(task_id)
        return replayed

    def purge(self, task_ids: Iterable[str]) -> int:
        """Delete these tasks from the DLQ, records and all; how many were in it."""
        purged = 0
        for task_id in dict.fromkeys(task_ids):
            if self._dlq.pop(task_id, None) is not None:
                self._entries.pop(task_id, None)
                purged += 1
        return purged
