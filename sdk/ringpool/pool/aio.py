"""The async tier: ``async def`` handlers on the node's event loop, at most ``limit`` at once.

Beyond the limit, jobs wait in a bounded priority heap. A handler past its timeout is
really cancelled (``asyncio.timeout``) and ``ctx.cancelled`` is set; so is one whose
task was cancelled (``cancel``): its outcome says cancelled. Every other way out of a
handler is its failure: an exception, ``SystemExit`` or ``KeyboardInterrupt`` it
raises, and a ``CancelledError`` that escapes it without anyone having cancelled its
task (only ``cancel()`` and ``release()`` do). Everything here runs on the event loop,
so there is no lock.
"""

from __future__ import annotations

import asyncio
import contextlib

from ringpool.pool.backlog import Backlog
from ringpool.pool.errors import PoolClosed, PoolOverloaded
from ringpool.pool.job import Job, Outcome, PanicHandler, Ticket, report_panic
from ringpool.pool.middleware import Chain
from ringpool.pool.tier import Tier
from ringpool.task import set_current_task


class AsyncTier(Tier):
    def __init__(
        self, limit: int, max_queue: int, chain: Chain | None = None,
        panic_handler: PanicHandler | None = None,
    ) -> None:
        super().__init__(chain, panic_handler)
        self._limit = limit
        self._max_queue = max_queue
        self._backlog = Backlog()
        self._tasks: dict[asyncio.Task[None], Ticket] = {}
        self._cancelling: set[Ticket] = set()
        self._quiet: asyncio.Event | None = None
        self._closed = False

    def submit(self, ticket: Ticket, *, force: bool = False) -> None:
        """Start or queue ``ticket``; call from the event loop."""
        if self._closed and not force:
            raise PoolClosed("the async pool is released")
        if len(self._tasks) < self._limit:
            self._start(ticket)
        elif len(self._backlog) < self._max_queue or force:
            self._backlog.push(ticket)
        else:
            self.rejected += 1
            raise PoolOverloaded(0.01 * (len(self._backlog) // self._limit + 1))
        self.submitted += 1

    def _start(self, ticket: Ticket) -> None:
        task = asyncio.get_running_loop().create_task(self._run(ticket))
        self._tasks[task] = ticket
        task.add_done_callback(self._ended)

    async def _run(self, ticket: Ticket) -> None:
        job = ticket.job
        set_current_task(job.context)  # this task's own context copy
        try:
            async with asyncio.timeout(job.timeout_s) as scope:
                value = await self._chain.run_async(
                    job.context, lambda: job.definition.fn(*job.args, **job.kwargs)
                )
            outcome = Outcome(ok=True, value=value)
            self.completed += 1
        except TimeoutError as exc:
            if not scope.expired():
                outcome = self._failed(ticket, exc)
            else:
                job.context.cancelled.set()
                outcome = Outcome.timeout(job)
                self.timed_out += 1
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if ticket in self._cancelling:  # cancel() asked for it: the run is cancelled
                outcome = Outcome.cancelled_run(job)
            elif task is not None and task.cancelling():
                raise  # release() cancelled it: it is handed back, not finished
            else:  # nobody asked: the handler's own doing, so its failure
                outcome = self._failed(ticket, exc)
        except BaseException as exc:
            outcome = self._failed(ticket, exc)
        finally:
            self._cancelling.discard(ticket)
        ticket.finish(outcome)

    def cancel(self, job: Job) -> bool:
        """Withdraw ``job`` if it waits, or cancel its coroutine if it runs; False when it
        is not here."""
        ticket = self._backlog.remove(job)
        if ticket is not None:
            ticket.finish(Outcome.cancelled_run(job))
            return True
        for task, running in self._tasks.items():
            if running.job is job:
                job.context.cancelled.set()
                self._cancelling.add(running)
                task.cancel()
                return True
        return False

    def _failed(self, ticket: Ticket, exc: BaseException) -> Outcome:
        self.failed += 1
        report_panic(self._panic, ticket.job, exc)
        return Outcome.failure(exc)

    def _ended(self, task: asyncio.Task[None]) -> None:
        del self._tasks[task]
        while self._backlog and len(self._tasks) < self._limit:
            self._start(self._backlog.pop())
        if self._quiet is not None and not self._tasks and not self._backlog:
            self._quiet.set()

    async def release(self, timeout_s: float) -> list[Ticket]:
        """Accept nothing more, let queued and running handlers finish for ``timeout_s``.

        Returns the tickets that did not finish: queued ones, and running ones, which
        are cancelled.
        """
        self._closed = True
        if self._tasks or self._backlog:
            self._quiet = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._quiet.wait(), timeout_s)
        left = self._backlog.drain()
        running = list(self._tasks.items())
        for task, ticket in running:
            ticket.job.context.cancelled.set()
            task.cancel()
            left.append(ticket)
        if running:
            await asyncio.gather(*(task for task, _ in running), return_exceptions=True)
        return left

    def stats(self) -> dict[str, float]:
        return {
            "running": len(self._tasks),
            "idle": max(0, self._limit - len(self._tasks)),
            "queued": len(self._backlog),
            "limit": self._limit,
            **self._counts(),
        }
