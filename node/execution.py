"""Run accepted tasks on the pools and record how each ended.

An outcome becomes one transition (success, retry with backoff, or the DLQ),
group-committed to Redis with the owner epoch as fence. Only then is the result
pushed to the submitter's stream, or announced on the done channel when no
stream of its submitter is open.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Coroutine
from typing import Any

from sdk import codec
from sdk.batching import GroupCommit
from sdk.envelope import DEFAULT_MAX_RETRIES
from sdk.errors import InvalidTask
from sdk.rpc.ringpool.v1 import node_pb2 as pb
from sdk.state import StateStore, Transition
from sdk.task import PermanentError, Retry, TaskContext, TaskDefinition

from node.pool import Job, Outcome, PoolOverloaded, Pools
from node.streams import ClientStream

log = logging.getLogger(__name__)

REDIS_RETRY_DELAYS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)


def max_retries_of(envelope: pb.TaskEnvelope, definition: TaskDefinition[Any, Any]) -> int:
    if envelope.max_retries == DEFAULT_MAX_RETRIES:
        return definition.retry.max_retries
    return envelope.max_retries


def check_arguments(definition: TaskDefinition[Any, Any], args: list[Any],
                    kwargs: dict[str, Any]) -> None:
    """InvalidTask when the arguments cannot bind to the task's signature (permanent)."""
    try:
        inspect.signature(definition.fn).bind(*args, **kwargs)
    except TypeError as exc:
        raise InvalidTask(f"arguments do not match {definition.name}: {exc}") from None


class Execution:
    def __init__(
        self,
        node_id: str,
        store: StateStore,
        pools: Pools,
    ) -> None:
        self.node_id = node_id
        self.store = store
        self.pools = pools
        self.pending = 0
        self.counters: dict[str, int] = {"succeeded": 0, "retried": 0, "dead": 0, "stale": 0}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._transitions: GroupCommit[tuple[int, Transition], bool] = GroupCommit(
            self._flush_transitions
        )
        self._idle = asyncio.Event()
        self._idle.set()

    # -- starting ------------------------------------------------------------------

    def start(
        self,
        envelope: pb.TaskEnvelope,
        definition: TaskDefinition[Any, Any],
        epoch: int,
        stream: ClientStream | None,
    ) -> None:
        self.pending += 1
        self._idle.clear()
        if stream is not None:
            stream.outstanding += 1
        self._spawn(self._run(envelope, definition, epoch, stream))

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(
        self,
        envelope: pb.TaskEnvelope,
        definition: TaskDefinition[Any, Any],
        epoch: int,
        stream: ClientStream | None,
    ) -> None:
        try:
            outcome = await self._execute(envelope, definition, epoch)
            transition, result = self._conclude(envelope, definition, outcome)
            applied = await self._apply(epoch, transition, publish=stream is None or not stream.open)
            if stream is not None:
                if applied and result is not None and stream.push_result(result):
                    return
                stream.outstanding -= 1
                stream.wake()
                if applied and result is not None and transition.op == "ok":
                    # The stream went away after we chose it: announce it instead.
                    await self.store.redis.publish(self.store.names.done_channel, envelope.task_id)
        except Exception:
            log.exception("task %s: unexpected error in the node; recovery will re-run it",
                          envelope.task_id)
        finally:
            self.pending -= 1
            if self.pending == 0:
                self._idle.set()

    async def _execute(
        self, envelope: pb.TaskEnvelope, definition: TaskDefinition[Any, Any], epoch: int
    ) -> Outcome:
        try:
            args, kwargs = codec.decode_call(envelope.payload)
            check_arguments(definition, args, kwargs)
        except InvalidTask as exc:
            return Outcome(ok=False, error_type="InvalidArguments", error_message=str(exc),
                           exception=PermanentError(str(exc)))
        timeout_s = envelope.timeout_s or definition.timeout
        context = TaskContext(
            task_id=envelope.task_id, key=envelope.key, name=envelope.name,
            attempt=envelope.attempt, deadline=time.monotonic() + timeout_s,
            headers=dict(envelope.headers), node_id=self.node_id,
        )
        job = Job(
            task_id=envelope.task_id, key=envelope.key, definition=definition, args=args,
            kwargs=kwargs, timeout_s=timeout_s, context=context, priority=envelope.priority,
            ordered=envelope.ordered,
        )
        self._spawn(self._apply(epoch, Transition("start", envelope.task_id)))
        while True:
            try:
                return await self.pools.submit(job)
            except PoolOverloaded as exc:
                # Accepted already: wait for room rather than refuse.
                await asyncio.sleep(exc.retry_after_s)

    def _conclude(
        self, envelope: pb.TaskEnvelope, definition: TaskDefinition[Any, Any], outcome: Outcome
    ) -> tuple[Transition, pb.TaskResult | None]:
        """The transition for this outcome and, when it is final, the result to push."""
        task_id = envelope.task_id
        if outcome.ok:
            try:
                payload = codec.encode(outcome.value)
            except InvalidTask as exc:
                outcome = Outcome(ok=False, error_type="ResultNotSerializable",
                                  error_message=str(exc), exception=PermanentError(str(exc)))
            else:
                self.counters["succeeded"] += 1
                return Transition("ok", task_id, a=payload), pb.TaskResult(
                    task_id=task_id, state=pb.SUCCEEDED, result=payload, node_id=self.node_id,
                    attempt=envelope.attempt,
                )
        error = outcome.exception
        retries_left = envelope.attempt <= max_retries_of(envelope, definition)
        if retries_left and not isinstance(error, PermanentError):
            if isinstance(error, Retry) and error.countdown is not None:
                delay = max(0.0, error.countdown)
            else:
                delay = definition.retry.delay_s(envelope.attempt)
            self.counters["retried"] += 1
            return Transition(
                "retry", task_id, a=outcome.error_type, b=outcome.error_message,
                c=outcome.traceback, d=time.time() + delay,
            ), None
        reason = "permanent" if isinstance(error, PermanentError) else "retries exhausted"
        self.counters["dead"] += 1
        return Transition(
            "dead", task_id, a=outcome.error_type, b=outcome.error_message, c=outcome.traceback,
            d=reason,
        ), pb.TaskResult(
            task_id=task_id, state=pb.FAILED, error_type=outcome.error_type,
            error_message=outcome.error_message, traceback=outcome.traceback,
            node_id=self.node_id, attempt=envelope.attempt,
        )

    # -- recording -------------------------------------------------------------------

    async def _apply(self, epoch: int, transition: Transition, publish: bool = False) -> bool:
        """Record a transition; retried through Redis outages. False if fenced off."""
        if publish and transition.op == "ok":
            transition = Transition("ok", transition.task_id, a=transition.a, publish=True)
        for delay in (*REDIS_RETRY_DELAYS_S, None):
            try:
                (applied,) = await self._transitions.call([(epoch, transition)])
            except Exception:
                if delay is None:
                    log.exception("giving up recording %s of %s; recovery will re-run it",
                                  transition.op, transition.task_id)
                    return False
                await asyncio.sleep(delay)
                continue
            if not applied and transition.op != "start":
                self.counters["stale"] += 1
                log.warning("task %s was handed to another owner; dropping its %s",
                            transition.task_id, transition.op)
            return applied
        return False

    async def _flush_transitions(self, batch: list[tuple[int, Transition]]) -> list[bool]:
        # Batches mix epochs only across a re-registration; keep each epoch's ops together.
        results: list[bool] = [False] * len(batch)
        for epoch in {e for e, _ in batch}:
            indexes = [i for i, (e, _) in enumerate(batch) if e == epoch]
            applied = await self.store.transition(
                self.node_id, epoch, [batch[i][1] for i in indexes]
            )
            for i, ok in zip(indexes, applied, strict=True):
                results[i] = ok
        return results

    async def wait_idle(self, timeout: float) -> bool:
        """True when every started task finished and was recorded within ``timeout``."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        await self._transitions.wait_idle()
        return True
