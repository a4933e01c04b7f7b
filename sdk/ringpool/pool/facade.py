"""``Pools``: the one object the node runs tasks through.

``submit(job)`` is called on the node's event loop and routes by ``definition.kind``:
``io`` to the dynamic thread pool, ``cpu`` to the process tier, ``async`` to the
event-loop tier, with per-key order in front of all three for ``ordered`` jobs. It
never blocks: a full tier raises ``PoolOverloaded`` with a retry-after hint.

Outcomes from worker threads reach the loop in batches: a worker appends to a
deque and only the first append after a drain schedules one (``call_soon_threadsafe``),
so a busy pool wakes the loop once per batch, not once per task.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import time
from collections import deque
from typing import Any

from ringpool.errors import ConfigError, InvalidTask
from ringpool.pool.aio import AsyncTier
from ringpool.pool.autoscaler import AdaptivePolicy, Autoscaler, FixedPolicy, ScalingPolicy
from ringpool.pool.errors import PoolClosed, PoolOverloaded
from ringpool.pool.job import Job, Outcome, PanicHandler, Ticket
from ringpool.pool.middleware import AsyncMiddleware, Chain, Middleware
from ringpool.pool.ordering import KeyOrder
from ringpool.pool.processes import ProcessTier
from ringpool.pool.settings import PoolSettings
from ringpool.pool.threads import ThreadTier

__all__ = ["Job", "Outcome", "PoolOverloaded", "PoolSettings", "Pools"]


class Pools:
    def __init__(
        self,
        settings: PoolSettings | None = None,
        *,
        policy: ScalingPolicy | None = None,
        panic_handler: PanicHandler | None = None,
    ) -> None:
        self.settings = s = settings or PoolSettings()
        self._chain = Chain()
        self._threads = ThreadTier(s.min_workers, s.max_workers, s.max_queue, s.idle_timeout_s,
                                   self._chain, panic_handler, s.max_abandoned)
        self._cpu = ProcessTier(s.cpu, self._chain, panic_handler)
        self._aio = AsyncTier(s.async_concurrency, s.max_queue, self._chain, panic_handler)
        if policy is None:
            policy = (FixedPolicy(s.min_workers) if s.autoscaler.policy == "fixed"
                      else AdaptivePolicy(s.autoscaler))
        self._autoscaler = Autoscaler(self._threads, policy, s.autoscaler.tick_s)
        self._order = KeyOrder()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outcomes: deque[tuple[Ticket, Outcome | None]] = deque()
        self._drain_scheduled = False
        self._inflight = 0
        self._space: asyncio.Event | None = None
        self._quiet: asyncio.Event | None = None
        self._closed = False
        self._collecting = False

    # -- configuration --------------------------------------------------------------

    def use(self, middleware: Middleware | AsyncMiddleware) -> None:
        """Add a middleware; ``def`` ones wrap io and cpu tasks, ``async def`` ones async tasks."""
        self._chain.add(middleware)

    def tune(self, min_workers: int, max_workers: int) -> None:
        """Resize the io pool live; invalid values raise ``ConfigError`` and change nothing."""
        self._threads.tune(min_workers, max_workers)

    def reconfigure(
        self, idle_timeout_s: float | None = None,
        weights: tuple[float, float, float] | None = None,
    ) -> None:
        """Change the idle expiry and the adaptive autoscaler's (arrival, queue, gc) weights
        live; invalid values raise ``ConfigError`` and change nothing."""
        autoscaler = self.settings.autoscaler
        if weights is not None:
            arrival, queue, gc_weight = weights
            autoscaler = dataclasses.replace(
                autoscaler, arrival_weight=arrival, queue_weight=queue, gc_weight=gc_weight
            )  # validated by AutoscalerSettings
        if idle_timeout_s is not None and not idle_timeout_s > 0:
            raise ConfigError("idle_timeout_s must be > 0")
        if idle_timeout_s is not None:
            self._threads.set_idle_timeout(idle_timeout_s)
        policy = self._autoscaler.policy
        if isinstance(policy, AdaptivePolicy):
            policy.settings = autoscaler
        self.settings = dataclasses.replace(
            self.settings, autoscaler=autoscaler,
            idle_timeout_s=self.settings.idle_timeout_s if idle_timeout_s is None else idle_timeout_s,
        )

    # -- submitting -----------------------------------------------------------------

    def submit(self, job: Job) -> asyncio.Future[Outcome]:
        """Accept ``job`` now or raise ``PoolOverloaded``; the future resolves to its outcome."""
        if self._closed:
            raise PoolClosed("the pool is released")
        if job.definition.kind not in ("io", "cpu", "async"):
            raise InvalidTask(f"unknown task kind {job.definition.kind!r}")
        if not (job.timeout_s > 0 and math.isfinite(job.timeout_s)):
            raise InvalidTask(f"timeout_s must be a positive number, got {job.timeout_s!r}")
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            self._autoscaler.start()
        future: asyncio.Future[Outcome] = loop.create_future()
        done = self._on_loop if job.definition.kind == "async" else self._from_thread
        ticket = Ticket(job, done, future)
        if job.ordered:
            if self._order.waiting >= self.settings.max_queue:
                raise PoolOverloaded()
            if not self._order.admit(ticket):
                self._inflight += 1
                return future
        try:
            self._route(ticket, force=False)
        except Exception:
            if job.ordered:
                self._order.next(job.key)  # nothing waits behind a job just refused
            raise
        self._inflight += 1
        return future

    async def submit_wait(self, job: Job, timeout_s: float) -> asyncio.Future[Outcome]:
        """Like ``submit`` but waits up to ``timeout_s`` for room instead of refusing at once."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return self.submit(job)
            except PoolOverloaded:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise
                self._space = self._space or asyncio.Event()
                self._space.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._space.wait(), remaining)

    def cancel(self, job: Job) -> bool:
        """Stop ``job``; its future resolves to a cancelled outcome. A queued job never
        runs; a running one gets ``ctx.cancelled``, and an async one is cancelled, a cpu
        one's process killed, an io one's outcome given at once (its thread cannot be
        stopped: what it returns is dropped). False when it is not here (finished)."""
        job.context.cancelled.set()
        waiting = self._order.remove(job) if job.ordered else None
        if waiting is not None:  # never reached a tier: nothing follows it in its key's line
            self._inflight -= 1
            waiting.token.set_result(Outcome.cancelled_run(job))
            if self._quiet is not None and self._inflight == 0:
                self._quiet.set()
            return True
        kind = job.definition.kind
        tier = self._threads if kind == "io" else self._cpu if kind == "cpu" else self._aio
        return tier.cancel(job)

    def _route(self, ticket: Ticket, *, force: bool) -> None:
        kind = ticket.job.definition.kind
        if kind == "io":
            self._threads.submit(ticket, force=force)
        elif kind == "cpu":
            self._cpu.submit(ticket, force=force)
        else:
            self._aio.submit(ticket, force=force)

    # -- outcomes -------------------------------------------------------------------

    def _from_thread(self, ticket: Ticket, outcome: Outcome | None) -> None:
        self._outcomes.append((ticket, outcome))
        # The drain clears the flag before it empties the deque, so an append that
        # sees the flag set is always picked up by that drain.
        if not self._drain_scheduled:
            self._drain_scheduled = True
            assert self._loop is not None
            # A closed loop means nobody waits for this outcome any more.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        while self._outcomes:
            self._on_loop(*self._outcomes.popleft())

    def _on_loop(self, ticket: Ticket, outcome: Outcome | None) -> None:
        """An outcome, or (None) the return of a run abandoned at its deadline."""
        if outcome is not None:
            future: asyncio.Future[Outcome] = ticket.token
            if not future.done():
                future.set_result(outcome)
            self._inflight -= 1
        ticket.holds -= 1
        # The key's next job waits until nothing of this one runs any more. Once
        # release() collects leftovers, the key's line stays put and is handed back.
        if ticket.job.ordered and not ticket.holds and not self._collecting:
            following = self._order.next(ticket.job.key)
            if following is not None:
                self._route(following, force=True)
        if self._space is not None:
            self._space.set()
        if self._quiet is not None and self._inflight == 0:
            self._quiet.set()

    # -- lifecycle ------------------------------------------------------------------

    @property
    def wedged(self) -> bool:
        """True once the io tier holds ``max_abandoned`` abandoned threads that still run:
        the process should stop taking work, hand back what it holds and be restarted."""
        return self._threads.wedged

    async def release(self, timeout: float) -> list[Job]:
        """Accept nothing more; finish queued and running jobs within ``timeout`` seconds.

        Returns the jobs that did not finish (their futures are cancelled): the node
        hands them back. A running io thread cannot be stopped; its job gets
        ``ctx.cancelled`` and whatever it returns later is dropped.
        """
        self._closed = True
        if self._inflight:
            self._quiet = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._quiet.wait(), timeout)
        self._collecting = True
        left = self._threads.release(0.0) + self._cpu.release(0.0) + await self._aio.release(0.0)
        left += self._order.drain()
        self._autoscaler.stop()
        for ticket in left:
            ticket.token.cancel()
        self._inflight = 0  # what was left is handed back, not awaited
        return [ticket.job for ticket in left]

    def stats(self) -> dict[str, Any]:
        """Totals over the tiers at the top level, each tier's own figures under its kind."""
        tiers = {"io": self._threads.stats(), "cpu": self._cpu.stats(), "async": self._aio.stats()}
        totals = {
            name: sum(tier[name] for tier in tiers.values())
            for name in ("running", "idle", "queued", "completed", "failed", "rejected",
                         "timed_out")
        }
        totals["queued"] += self._order.waiting
        return {
            **totals,
            **tiers,
            "ordered_waiting": self._order.waiting,
            "inflight": self._inflight,
            "autoscaler_changes": self._autoscaler.changes,
        }
