"""``AsyncInMemoryCluster``: the ``AsyncCluster`` API in the test process, with no
ZooKeeper, Redis or node process.

What a real cluster does, it does with the same code: envelopes are built and
checked by the client's rules (``ringpool.core.envelope``: the same typed errors for
the same bad input), keys are routed on a real ``Ring`` of named in-process nodes
(``owner(key)`` answers what a cluster with those node ids would), tasks run on a
node's pools (``ringpool.pool``: io threads, cpu processes, async on the loop, per-key
order) and each run ends by the node's rules (``ringpool.core.outcomes``: retries
with the task's ``RetryPolicy``, ``Retry(countdown)``, ``PermanentError``, the DLQ).

Two modes. ``eager`` (the default): ``dispatch()`` runs the task, and whatever else
falls due meanwhile, before it returns; a dispatch made from inside a running task
only queues, and runs as soon as the tasks running now have finished. ``queued``:
``dispatch()`` only accepts; ``run_pending()`` or ``advance()`` runs.

Time is the test's: a retry, or a task dispatched with a ``countdown`` or an ``eta``,
waits on the cluster's clock, which moves with ``advance(seconds)``, or while
``result(timeout)`` waits: that lets up to ``timeout`` seconds of cluster time pass,
running what falls due, as waiting on a real cluster would. The clock starts at the
wall-clock time of construction. ``cancel()`` stops a task as a real cluster does.
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, NamedTuple

from ringpool.client.results import result_from_record, unwrap
from ringpool.core import codec
from ringpool.core import envelope as envelopes
from ringpool.core.envelope import DEFAULT_LIMITS, Limits
from ringpool.core.outcomes import INVALID_ARGUMENTS, check_arguments, conclude
from ringpool.core.protocol import TaskState
from ringpool.core.ring import Member, Ring
from ringpool.errors import ConfigError, InvalidTask, ResultTimeout, TaskNotFound, UnknownTask
from ringpool.pool import AutoscalerSettings, CpuSettings, Job, Outcome, Pools, PoolSettings
from ringpool.store.store import DEFAULT_FINGERPRINT_TTL_S, DEFAULT_RESULT_TTL_S, TaskRecord
from ringpool.task import REGISTRY, Task, TaskDefinition, current_task
from ringpool.testing.state import Entry, MemoryState
from ringpool.v1 import node_pb2 as pb

Mode = Literal["eager", "queued"]
MODES: tuple[str, ...] = ("eager", "queued")
SUBMIT_WAIT_S = 60.0  # how long a due task may wait for room in a full pool


def pools_for_tests() -> PoolSettings:
    """Pools sized for a test process: threads on demand, one cpu process, no autoscaling."""
    return PoolSettings(min_workers=1, max_workers=16, max_queue=100_000,
                        autoscaler=AutoscalerSettings(policy="fixed"), cpu=CpuSettings(processes=1))


def _node_ids(nodes: int | Sequence[str]) -> list[str]:
    """Node ids as a ``LocalCluster`` of that size names them, or as given."""
    if isinstance(nodes, bool) or not isinstance(nodes, int | Sequence) or isinstance(nodes, str):
        raise ConfigError(f"nodes must be a count or a list of node ids, got {nodes!r}")
    ids = [f"node-{i}" for i in range(nodes)] if isinstance(nodes, int) else list(nodes)
    if not ids or len(set(ids)) != len(ids) or not all(isinstance(n, str) and n for n in ids):
        raise ConfigError(f"nodes must name at least one node, each once, got {nodes!r}")
    return ids


class _Checked(NamedTuple):
    envelope: pb.TaskEnvelope
    owner: str
    definition: TaskDefinition[Any, Any]


class AsyncInMemoryTaskHandle:
    """A dispatched task: its id, its state, and its result when it has one."""

    def __init__(self, cluster: AsyncInMemoryCluster, task_id: str, key: str) -> None:
        self._cluster = cluster
        self.task_id = task_id
        self.key = key

    def __repr__(self) -> str:
        return f"<TaskHandle {self.task_id} key={self.key!r}>"

    async def status(self) -> TaskState:
        """SCHEDULED, QUEUED, RUNNING, RETRY_SCHEDULED, SUCCEEDED, FAILED (in the DLQ),
        CANCELLED or UNKNOWN."""
        return self._cluster._status(self.task_id)

    async def cancel(self) -> TaskState:
        """Cancel the task (see ``AsyncInMemoryCluster.cancel``)."""
        return await self._cluster.cancel(self.task_id)

    async def accepted(self, timeout: float | None = None) -> str:
        """The task's id, at once: a task is accepted when ``dispatch()`` returns its
        handle (a refusal was raised by ``dispatch()`` itself)."""
        return self.task_id

    async def result(self, timeout: float | None = None) -> Any:
        """The return value; raises TaskFailed, TaskCancelled, ResultTimeout (a
        TimeoutError), TaskNotFound.

        Waiting lets up to ``timeout`` seconds of cluster time pass (forever when None),
        running what falls due meanwhile.
        """
        return await self._cluster._result(self.task_id, timeout)


class AsyncInMemoryCluster:
    """``async with AsyncInMemoryCluster(tasks=["myapp.tasks"]) as cluster:``

    ``tasks`` are modules to import, as ``ringpool-node --tasks`` does (tasks already
    registered in this process are known too); ``nodes`` a count (ids ``node-0``...,
    as ``LocalCluster`` names them) or the node ids; ``mode`` ``"eager"`` or
    ``"queued"``; ``pools`` the pools' settings (default: ``pools_for_tests()``).
    """

    def __init__(
        self,
        tasks: Iterable[str] = (),
        *,
        nodes: int | Sequence[str] = 3,
        mode: Mode = "eager",
        limits: Limits = DEFAULT_LIMITS,
        pools: PoolSettings | None = None,
        result_ttl_s: float = DEFAULT_RESULT_TTL_S,
        fingerprint_ttl_s: float = DEFAULT_FINGERPRINT_TTL_S,
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
        if not (result_ttl_s > 0 and fingerprint_ttl_s > 0):
            raise ConfigError("result_ttl_s and fingerprint_ttl_s must be > 0")
        if isinstance(tasks, str):
            raise ConfigError(f"tasks must be a list of module names, e.g. [{tasks!r}]")
        node_ids = _node_ids(nodes)
        for module in tasks:
            try:
                importlib.import_module(module)
            except ImportError as exc:
                raise ConfigError(f"cannot import task module {module!r}: {exc}") from exc
        self.mode = mode
        self.limits = limits
        self.ring = Ring({n: Member(n, addr=f"in-memory:{n}") for n in node_ids}, version=1)
        self._state = MemoryState(time.time(), result_ttl_s, fingerprint_ttl_s)
        self._pools = Pools(pools or pools_for_tests())
        self._jobs: dict[str, Job] = {}  # the running ones, to cancel them
        self._progress = asyncio.Event()  # set (and replaced) each time a run ends

    async def __aenter__(self) -> AsyncInMemoryCluster:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Release the pools; a task still running is left to finish on its own."""
        await self._pools.release(0.0)

    @property
    def now(self) -> float:
        """The cluster's clock (seconds since the epoch): moves only as the test lets it."""
        return self._state.now

    def owner(self, key: str) -> str:
        """The node id that owns ``key``."""
        envelopes.check_key(key, self.limits)
        return self.ring.owner(key)

    # -- dispatching ------------------------------------------------------------------

    async def dispatch(
        self, key: str, task: Task, headers: Mapping[str, str] | None = None, *,
        countdown: float | None = None, eta: datetime | None = None,
    ) -> AsyncInMemoryTaskHandle:
        """Accept ``task`` for the owner of ``key`` (and in eager mode run it). With a
        ``countdown`` or an ``eta`` it is SCHEDULED until the cluster's clock gets there."""
        (handle,) = await self._dispatch([(key, task)], headers, current_task() is not None,
                                         self.eta_of(countdown, eta))
        return handle

    def eta_of(self, countdown: float | None, eta: datetime | None) -> float:
        """A dispatch's eta on the cluster's clock (checked as a real client checks it)."""
        return envelopes.eta_of(countdown, eta, now=self._state.now)

    async def dispatch_many(
        self, items: Iterable[tuple[str, Task]]
    ) -> list[AsyncInMemoryTaskHandle]:
        """Dispatch many tasks; every task is checked before any is accepted."""
        return await self._dispatch(list(items), None, current_task() is not None)

    async def _dispatch(
        self, items: Sequence[tuple[str, Task]], headers: Mapping[str, str] | None,
        from_task: bool, eta: float = 0.0,
    ) -> list[AsyncInMemoryTaskHandle]:
        checked = [self._check(key, task, headers, eta) for key, task in items]
        handles = [
            AsyncInMemoryTaskHandle(self, self._state.accept(*call), call.envelope.key)
            for call in checked
        ]
        await self._run_if_eager(from_task)
        return handles

    def _check(self, key: str, task: Task, headers: Mapping[str, str] | None,
               eta: float = 0.0) -> _Checked:
        envelope = envelopes.build(key, task, self.ring.version, headers, self.limits, eta)
        definition = REGISTRY.get(envelope.name)
        if definition is None:
            raise UnknownTask(f"unknown task {envelope.name!r}")
        return _Checked(envelope, self.ring.owner(key), definition)

    def handle(self, task_id: str, key: str = "") -> AsyncInMemoryTaskHandle:
        """A handle for a task dispatched elsewhere (e.g. by id from a log)."""
        return AsyncInMemoryTaskHandle(self, task_id, key)

    async def flush(self, timeout: float | None = None) -> None:
        """Returns at once: every dispatched task was accepted (or refused) by ``dispatch()``."""

    async def cancel(self, task_id: str) -> TaskState:
        """Cancel a task that has not finished; the state it was in. A waiting task never
        runs; a running one is stopped as on a node (``ctx.cancelled``; async: cancelled;
        cpu: its process killed). Raises TaskAlreadyFinished or TaskNotFound."""
        before = self._state.cancel(task_id)
        job = self._jobs.get(task_id)
        if before is TaskState.RUNNING and job is not None:
            self._pools.cancel(job)
        return before

    async def _run_if_eager(self, from_task: bool) -> None:
        # From inside a task, running now could wait on that very task (per-key order).
        if self.mode == "eager" and not from_task:
            await self._run_due()

    # -- running ----------------------------------------------------------------------

    async def run_pending(self) -> int:
        """Run every task due now, and what falls due meanwhile; how many runs ended."""
        return await self._run_due()

    async def advance(self, seconds: float) -> int:
        """Move the clock ``seconds`` ahead, running what falls due on the way, in time
        order (a retry due within the window runs, and so may its own retry)."""
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) \
                or not 0 <= seconds < math.inf:
            raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
        until = self._state.now + seconds
        ran = await self._run_due()
        while (due := self._state.next_due()) is not None and due <= until:
            self._state.move_to(due)
            ran += await self._run_due()
        self._state.move_to(until)
        return ran

    async def _run_due(self) -> int:
        ran = 0
        while due := self._state.pop_due():
            # Submitted in order, so the pools keep per-key order and priorities.
            runs = [run for entry in due if (run := await self._start(entry)) is not None]
            await asyncio.gather(*(self._finish_when_done(entry, run) for entry, run in runs))
            ran += len(due)
        return ran

    async def _start(self, entry: Entry) -> tuple[Entry, asyncio.Future[Outcome]] | None:
        envelope = entry.record.envelope
        args, kwargs = codec.decode_call(envelope.payload)
        try:
            check_arguments(entry.definition, args, kwargs)
        except InvalidTask as exc:
            self._finish(entry, Outcome.permanent(INVALID_ARGUMENTS, str(exc)))
            return None
        job = Job.for_envelope(envelope, entry.definition, args, kwargs, entry.record.node)
        self._jobs[envelope.task_id] = job
        return entry, await self._pools.submit_wait(job, SUBMIT_WAIT_S)

    async def _finish_when_done(self, entry: Entry, run: asyncio.Future[Outcome]) -> None:
        await asyncio.wait({run})
        self._jobs.pop(entry.record.task_id, None)
        if run.cancelled():
            return  # the pools were released under it: the cluster is closing
        error = run.exception()
        self._finish(entry, run.result() if error is None else Outcome.failure(error))

    def _finish(self, entry: Entry, outcome: Outcome) -> None:
        if not outcome.cancelled:
            self._state.finish(entry, conclude(entry.record.envelope, outcome,
                                               entry.definition.retry))
        self._progress.set()
        self._progress = asyncio.Event()

    # -- results ----------------------------------------------------------------------

    def _status(self, task_id: str) -> TaskState:
        entry = self._state.entry(task_id)
        return entry.record.state if entry is not None else TaskState.UNKNOWN

    async def _result(self, task_id: str, timeout: float | None) -> Any:
        until = math.inf if timeout is None else self._state.now + timeout
        while True:
            entry = self._state.entry(task_id)
            if entry is None:
                raise TaskNotFound(f"no record for task {task_id}")
            result = result_from_record(entry.record)
            if result is not None:
                return unwrap(result)
            if await self._run_due():
                continue
            if entry.record.state is TaskState.RUNNING:  # run by another caller: wait for it
                try:
                    await asyncio.wait_for(self._progress.wait(), timeout)
                except TimeoutError:
                    raise ResultTimeout(f"no result for task {task_id} within {timeout}s") from None
                continue
            due = self._state.next_due()
            if due is None or due > until:
                if until < math.inf:
                    self._state.move_to(until)  # the whole wait went by
                raise ResultTimeout(f"no result for task {task_id} within {timeout}s"
                                    + ("" if due is None else " of cluster time"))
            self._state.move_to(due)

    # -- inspection and the dead-letter queue -----------------------------------------

    async def record(self, task_id: str) -> TaskRecord | None:
        """A copy of the task's record (as ``taskctl task show`` reads it), or None."""
        entry = self._state.entry(task_id)
        return copy.deepcopy(entry.record) if entry is not None else None

    async def dlq(self) -> list[TaskRecord]:
        """Copies of the dead-lettered tasks' records, oldest first."""
        return copy.deepcopy(self._state.dead())

    async def dlq_replay(self, *task_ids: str) -> int:
        """Re-run dead-lettered tasks (all when no id is given) as fresh first attempts,
        under their own ids; ids not in the DLQ are skipped. How many were replayed."""
        return await self._replay(task_ids, current_task() is not None)

    async def _replay(self, task_ids: Sequence[str], from_task: bool) -> int:
        chosen = task_ids or [record.task_id for record in self._state.dead()]
        replayed = len(self._state.replay(chosen))
        await self._run_if_eager(from_task)
        return replayed

    async def dlq_purge(self, *task_ids: str) -> int:
        """Delete dead-lettered tasks and their records (all when no id is given)."""
        return self._state.purge(task_ids or [record.task_id for record in self._state.dead()])
