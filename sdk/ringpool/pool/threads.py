"""The io tier: a dynamic thread pool with ants' semantics.

Workers are spawned on demand up to ``max_workers`` and park on a LIFO idle stack,
each on its own lock, so a submit hands a job straight to the most recently used
worker and the coldest ones reach ``idle_timeout_s`` first and exit, down to the
floor (``max(min_workers, target)``; the autoscaler moves ``target``). Waiting jobs
sit in a bounded priority heap (higher first, FIFO within a priority).

A job past its deadline gets ``ctx.cancelled`` set and a timed-out outcome at once.
Its thread, which Python cannot kill, is *abandoned*: it no longer counts against
``max_workers``, a fresh worker takes its place, and what it returns is dropped (the
thread then exits). Abandoned threads still running are replaced only up to a hard
ceiling of ``max_workers + max_abandoned`` threads in all; from ``max_abandoned`` on,
the tier is ``wedged``: its owner should stop taking work and restart the process.
An abandoned run's ticket is told when its thread returns (``Ticket.thread_returned``),
so the next job of its ordered key can wait for that.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from functools import partial

from ringpool.pool.backlog import Backlog
from ringpool.pool.errors import PoolClosed, PoolOverloaded
from ringpool.pool.job import Job, Outcome, PanicHandler, Ticket, run_sync
from ringpool.pool.middleware import Chain
from ringpool.pool.settings import check_workers
from ringpool.pool.tier import Tier

log = logging.getLogger("ringpool.pool")


class _Worker:
    __slots__ = ("abandoned", "deadline", "exit", "idle", "ticket", "wake")

    def __init__(self, ticket: Ticket | None) -> None:
        self.wake = threading.Lock()
        self.wake.acquire()
        self.ticket = ticket
        self.deadline = math.inf
        self.idle = False
        self.abandoned = False  # past its job's deadline (or released): its result is dropped
        self.exit = False


class ThreadTier(Tier):
    def __init__(
        self,
        min_workers: int,
        max_workers: int,
        max_queue: int,
        idle_timeout_s: float,
        chain: Chain | None = None,
        panic_handler: PanicHandler | None = None,
        max_abandoned: int = 16,
    ) -> None:
        super().__init__(chain, panic_handler)
        self._min, self._max = check_workers(min_workers, max_workers)
        self._max_abandoned = max_abandoned
        self._target = self._min
        self._max_queue = max_queue
        self._idle_timeout_s = idle_timeout_s
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)  # blocked submitters
        self._drained = threading.Condition(self._lock)  # release() waiting for quiet
        self._watch = threading.Condition(self._lock)  # the deadline watcher
        self._backlog = Backlog()
        self._workers: set[_Worker] = set()  # the pool's threads, abandoned ones excluded
        self._abandoned: set[_Worker] = set()  # abandoned threads still running
        self._idle: list[_Worker] = []
        self._space_waiters = 0
        self._watch_until = math.inf
        self._watcher: threading.Thread | None = None
        self._closed = False
        self._avg_run_s = 0.001
        self._thread_s_done = 0.0
        self._born: dict[_Worker, float] = {}
        self.running = 0
        self.spawned = 0
        self.expired = 0

    # -- submitting -----------------------------------------------------------------

    def submit(self, ticket: Ticket, *, block_s: float = 0.0, force: bool = False) -> None:
        """Queue ``ticket``; raise ``PoolOverloaded`` when full (after ``block_s`` at most).

        ``force`` admits past the queue bound and a release in progress: for work
        accepted earlier (the next job of an ordered key).
        """
        start: _Worker | None = None
        wake: _Worker | None = None
        deadline = time.monotonic() + block_s
        with self._lock:
            if self._closed and not force:
                raise PoolClosed("the io pool is released")
            while True:
                if self._idle:
                    wake = self._idle.pop()
                    wake.idle = False
                    self._assign(wake, ticket)
                elif self._room_for_a_thread():
                    start = self._new_worker(ticket)
                elif len(self._backlog) < self._max_queue or force:
                    self._backlog.push(ticket)
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self._closed:
                        self.rejected += 1
                        raise PoolOverloaded(self._retry_after_s())
                    # Room may come back as a worker, not a queue slot: look again after.
                    self._space_waiters += 1
                    self._space.wait(remaining)
                    self._space_waiters -= 1
                    continue
                break
            self.submitted += 1
        if wake is not None:
            wake.wake.release()
        elif start is not None:
            self._start(start)

    def _room_for_a_thread(self) -> bool:
        """Under the lock: whether one more worker may start (``max_workers``, and the
        ceiling of all threads, abandoned ones included)."""
        workers = len(self._workers)
        return workers < self._max and (
            workers + len(self._abandoned) < self._max + self._max_abandoned)

    @property
    def wedged(self) -> bool:
        """True once ``max_abandoned`` abandoned threads are still running."""
        return len(self._abandoned) >= self._max_abandoned

    def _retry_after_s(self) -> float:
        # Time for the queue ahead to drain at the current per-task run time.
        return min(5.0, max(0.005, self._avg_run_s * (len(self._backlog) + 1) / self._max))

    def _assign(self, worker: _Worker, ticket: Ticket) -> None:
        """Give ``worker`` its next job (under the lock) and arm the job's deadline."""
        worker.ticket = ticket
        worker.deadline = deadline = time.monotonic() + ticket.job.timeout_s
        self.running += 1
        if deadline < self._watch_until:
            if self._watcher is None:
                self._watcher = threading.Thread(
                    target=self._watch_deadlines, name="ringpool-io-deadlines", daemon=True
                )
                self._watcher.start()
            self._watch_until = deadline
            self._watch.notify()

    def _new_worker(self, ticket: Ticket | None) -> _Worker:
        worker = _Worker(None)
        if ticket is not None:
            self._assign(worker, ticket)
        self._workers.add(worker)
        self._born[worker] = time.monotonic()
        self.spawned += 1
        return worker

    def _start(self, worker: _Worker) -> None:
        threading.Thread(target=self._work, args=(worker,), name="ringpool-io", daemon=True).start()

    # -- the worker loop ------------------------------------------------------------

    def _work(self, worker: _Worker) -> None:
        try:
            ticket = worker.ticket or self._park(worker)
            while ticket is not None:
                job = ticket.job
                began = time.monotonic()
                outcome = run_sync(
                    job, self._chain, self._panic,
                    partial(job.definition.fn, *job.args, **job.kwargs),
                )
                late, following = self._finish(worker, outcome, time.monotonic() - began)
                if late:
                    ticket.thread_returned()
                    return
                ticket.finish(outcome)
                if following is None and not worker.exit:
                    following = self._park(worker)
                ticket = following
        finally:
            with self._lock:
                self._thread_s_done += time.monotonic() - self._born.pop(worker)
                self._workers.discard(worker)
                self._notify_drained()

    def _finish(
        self, worker: _Worker, outcome: Outcome, ran_s: float
    ) -> tuple[bool, Ticket | None]:
        """Account for a finished job; returns (it was abandoned meanwhile, next job).

        An abandoned worker leaves, dropping what its job returned; a thread may start
        in its place if the ceiling held one back. One critical section: the deadline
        watcher abandons a worker under the same lock, so a run is either finished here
        or timed out there, never both.
        """
        start: list[_Worker] = []
        with self._lock:
            late = worker.abandoned
            worker.ticket = None
            worker.deadline = math.inf
            if late:
                self._abandoned.discard(worker)
                worker.exit = True
                start = self._fill_from_queue()
            else:
                self.running -= 1
                if outcome.ok:
                    self.completed += 1
                else:
                    self.failed += 1
                self._avg_run_s += 0.1 * (ran_s - self._avg_run_s)
                if len(self._workers) > self._max:
                    self._retire(worker)  # tune() lowered the cap while this worker was busy
                elif self._backlog:
                    self._assign(worker, self._backlog.pop())
                    if self._space_waiters:
                        self._space.notify()
                elif self._closed:
                    self._retire(worker)
                else:
                    worker.idle = True
                    self._idle.append(worker)
                self._notify_drained()
            following = worker.ticket
        self._launch([], start)
        return late, following

    def set_idle_timeout(self, seconds: float) -> None:
        """Idle workers pick the new expiry up at their next wait."""
        self._idle_timeout_s = seconds

    def _park(self, worker: _Worker) -> Ticket | None:
        """Wait on the idle stack for a job; None when the worker should exit."""
        with self._lock:
            if not worker.idle and worker.ticket is None:  # a fresh, pre-spawned worker
                if self._backlog:
                    self._assign(worker, self._backlog.pop())
                    return worker.ticket
                worker.idle = True
                self._idle.append(worker)
        # A submitter that pops this worker sets its ticket, then releases ``wake``.
        while not worker.wake.acquire(timeout=self._idle_timeout_s):
            with self._lock:
                popped = not worker.idle
                if not popped and (
                    len(self._workers) > max(self._min, self._target) or self._closed
                ):
                    self._idle.remove(worker)
                    self._retire(worker)
                    self.expired += 1
                    return None
            if popped:
                worker.wake.acquire()  # popped just as the wait ran out: the release is coming
                break
        return worker.ticket

    def _retire(self, worker: _Worker) -> None:
        """Take ``worker`` out of the count now (under the lock), so no other worker also
        leaves for the same reason; its thread exits on its own."""
        worker.exit = True
        worker.idle = False
        self._workers.discard(worker)

    def _notify_drained(self) -> None:
        if self._closed and not self._backlog and self.running == 0:
            self._drained.notify_all()

    # -- deadlines ------------------------------------------------------------------

    def _watch_deadlines(self) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                expired: list[Ticket] = []
                soonest = math.inf
                for worker in list(self._workers):
                    if worker.deadline <= now and worker.ticket is not None:
                        # Its outcome goes now; its key stays held until the thread returns.
                        worker.ticket.holds = 2
                        expired.append(worker.ticket)
                        self._abandon(worker)
                        self.timed_out += 1
                    elif worker.deadline < soonest:
                        soonest = worker.deadline
                self._watch_until = soonest
                start = self._fill_from_queue() if expired else []
                if expired:
                    self._notify_drained()
                elif self._closed and not self._workers:
                    self._watcher = None
                    self._watch_until = math.inf
                    return
                else:
                    self._watch.wait(None if soonest == math.inf else soonest - now)
                    continue
            self._launch([], start)
            for ticket in expired:
                ticket.job.context.cancelled.set()
                ticket.finish(Outcome.timeout(ticket.job))

    def _abandon(self, worker: _Worker) -> None:
        """Under the lock: give up on ``worker``'s run; a fresh worker may take its place."""
        worker.abandoned = True
        worker.deadline = math.inf
        self._workers.discard(worker)
        self._abandoned.add(worker)
        self.running -= 1

    # -- control --------------------------------------------------------------------

    def tune(self, min_workers: int, max_workers: int) -> None:
        """Change the bounds live; invalid values raise ``ConfigError`` and change nothing."""
        lo, hi = check_workers(min_workers, max_workers)
        with self._lock:
            self._min, self._max = lo, hi
            self._target = min(max(self._target, lo), hi)
            stop = self._trim_idle(len(self._workers) - hi)
            start = self._fill_from_queue()
        self._launch(stop, start)

    def set_target(self, target: int) -> None:
        """The autoscaler's warm floor: keep (and pre-spawn) this many workers, within bounds."""
        with self._lock:
            self._target = min(max(target, self._min), self._max)
            start = []
            while len(self._workers) < self._target and self._room_for_a_thread():
                start.append(self._new_worker(None))
            start += self._fill_from_queue()
        self._launch([], start)

    def _trim_idle(self, excess: int) -> list[_Worker]:
        stop: list[_Worker] = []
        while excess > 0 and self._idle:
            worker = self._idle.pop(0)  # the coldest first
            self._retire(worker)
            stop.append(worker)
            excess -= 1
        return stop

    def _fill_from_queue(self) -> list[_Worker]:
        start: list[_Worker] = []
        while self._backlog and self._room_for_a_thread():
            start.append(self._new_worker(self._backlog.pop()))
        return start

    def _launch(self, stop: list[_Worker], start: list[_Worker]) -> None:
        for worker in stop:
            worker.wake.release()
        for worker in start:
            self._start(worker)

    def cancel(self, job: Job) -> bool:
        """Withdraw ``job`` if it waits; if it runs, set ``ctx.cancelled`` and give its
        outcome now, as a deadline does: its thread is abandoned (it runs on until it
        returns, what it returns is dropped, and its ordered key stays held until then).
        False when it is not here."""
        start: list[_Worker] = []
        with self._lock:
            ticket = self._backlog.remove(job)
            if ticket is None:
                for worker in self._workers:
                    if worker.ticket is not None and worker.ticket.job is job:
                        ticket = worker.ticket
                        ticket.holds = 2
                        self._abandon(worker)
                        start = self._fill_from_queue()
                        self._notify_drained()
                        break
        if ticket is None:
            return False
        self._launch([], start)
        job.context.cancelled.set()
        ticket.finish(Outcome.cancelled_run(job))
        return True

    def release(self, timeout_s: float) -> list[Ticket]:
        """Accept nothing more, run what is queued and running for up to ``timeout_s``.

        Returns the tickets that did not finish: still queued (never run) and still
        running (marked cancelled; what they return later is dropped).
        """
        with self._lock:
            self._closed = True
            self._space.notify_all()
            self._drained.wait_for(lambda: not (self._backlog or self.running), timeout_s)
            left = self._backlog.drain()
            for worker in list(self._workers):
                if worker.ticket is not None:
                    left.append(worker.ticket)
                    self._abandon(worker)  # drop its result when it comes
            for worker in self._idle:
                self._retire(worker)
                worker.wake.release()
            self._idle.clear()
            self._watch.notify()
        for ticket in left:
            ticket.job.context.cancelled.set()
        return left

    def stats(self) -> dict[str, float]:
        with self._lock:
            now = time.monotonic()
            live_s = sum(now - born for born in self._born.values())
            return {
                "running": self.running,
                "idle": len(self._idle),
                "queued": len(self._backlog),
                "threads": len(self._workers),
                "abandoned": len(self._abandoned),
                **self._counts(),
                "spawned": self.spawned,
                "expired": self.expired,
                "min_workers": self._min,
                "max_workers": self._max,
                "target": self._target,
                "avg_run_s": self._avg_run_s,
                "thread_seconds": self._thread_s_done + live_s,
            }
