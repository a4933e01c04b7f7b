"""The cpu tier: worker processes (at most one per CPU) that can be killed at a deadline.

Each process has a keeper thread in the node that feeds it one job at a time over a
pipe (JSON both ways: the function's module and qualname, JSON arguments, the
context's fields) and waits for the answer until the job's deadline; the task's
progress reports come back over the same pipe before it (at most one each
``PROGRESS_EVERY_S``, and the latest just before the answer). Past it the
process is killed, the job times out, and a fresh process is started for the next
job. A process may run under an ``RLIMIT_AS`` memory cap and be pinned to a CPU.
"""

from __future__ import annotations

import importlib
import json
import multiprocessing
import os
import threading
import time
import traceback
from dataclasses import fields
from functools import partial
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from ringpool.pool.backlog import Backlog
from ringpool.pool.errors import PoolClosed, PoolOverloaded, TaskTimeout
from ringpool.pool.job import Job, Outcome, PanicHandler, Ticket, run_sync
from ringpool.pool.middleware import Chain
from ringpool.pool.settings import CpuSettings
from ringpool.pool.tier import Tier
from ringpool.task import PermanentError, Retry, TaskContext, TaskProgress, set_current_task

PROGRESS_EVERY_S = 0.05
# The context's fields that stay in the node: its cancel event (a kill ends the job) and
# where its progress goes (the child sends it over the pipe).
_LOCAL_FIELDS = frozenset({"cancelled", "on_progress"})

# forkserver: never fork the node's threads; spawn where forkserver does not exist.
_CONTEXT: Any = multiprocessing.get_context(
    "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
)


class RemoteTaskError(Exception):
    """A task failed in a worker process; carries the child's error type and traceback."""

    def __init__(self, error_type: str, message: str, remote_traceback: str) -> None:
        Exception.__init__(self, message)
        self.error_type = error_type
        self.remote_traceback = remote_traceback


class RemotePermanentError(RemoteTaskError, PermanentError):
    """``PermanentError`` raised by a task in a worker process: straight to the DLQ there too."""


class RemoteRetry(RemoteTaskError, Retry):
    """``Retry`` raised by a task in a worker process, with its countdown."""

    def __init__(self, error_type: str, message: str, remote_traceback: str,
                 countdown: float | None) -> None:
        RemoteTaskError.__init__(self, error_type, message, remote_traceback)
        self.countdown = countdown


def _failure_reply(exc: BaseException) -> dict[str, Any]:
    """What the parent needs to raise the same kind of failure (JSON, never pickled)."""
    reply: dict[str, Any] = {"ok": False, "type": type(exc).__name__, "message": str(exc),
                             "traceback": traceback.format_exc()}
    if isinstance(exc, PermanentError):
        reply["permanent"] = True
    elif isinstance(exc, Retry):
        reply["retry"] = True
        reply["countdown"] = exc.countdown
    return reply


def _remote_failure(reply: dict[str, Any]) -> RemoteTaskError:
    args = (reply["type"], reply["message"], reply["traceback"])
    if reply.get("permanent"):
        return RemotePermanentError(*args)
    if reply.get("retry"):
        countdown = reply.get("countdown")
        return RemoteRetry(*args, countdown=float(countdown) if countdown is not None else None)
    return RemoteTaskError(*args)


class WorkerCrashed(Exception):
    """The worker process died while running the task (e.g. killed by the OOM killer)."""


def _resolve(module: str, qualname: str) -> Any:
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


class _ProgressSender:
    """The child's end of a job's progress: sends a report at most every
    ``PROGRESS_EVERY_S``; a report held back meanwhile goes when that time is up (or just
    before the job's answer, by ``flush``)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()  # the timer's thread, and any thread of the task
        self._sent_at = 0.0
        self._held: TaskProgress | None = None
        self._timer: threading.Timer | None = None

    def __call__(self, progress: TaskProgress) -> None:
        with self._lock:
            wait_s = self._sent_at + PROGRESS_EVERY_S - time.monotonic()
            if wait_s <= 0:
                self._send(progress)
                return
            self._held = progress
            if self._timer is None:
                self._timer = threading.Timer(wait_s, self.flush)
                self._timer.daemon = True
                self._timer.start()

    def flush(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._held is not None:
                self._send(self._held)

    def _send(self, progress: TaskProgress) -> None:
        self._held = None
        self._sent_at = time.monotonic()
        self._conn.send_bytes(json.dumps({"progress": [progress.value, progress.meta,
                                                       progress.at]}).encode())


def _child_main(conn: Connection, memory_limit_bytes: int | None, cpu: int | None) -> None:
    if memory_limit_bytes is not None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    while True:
        try:
            request = json.loads(conn.recv_bytes())
        except EOFError:
            return
        sender = _ProgressSender(conn)
        try:
            fn = _resolve(request["module"], request["qualname"])
            set_current_task(TaskContext(**request["context"], on_progress=sender))
            reply = json.dumps({"ok": True, "value": fn(*request["args"], **request["kwargs"])})
        except BaseException as exc:  # SystemExit too: the task failed, the process goes on
            reply = json.dumps(_failure_reply(exc))
        sender.flush()
        conn.send_bytes(reply.encode())


class _Process:
    """One worker process and the node's end of its pipe."""

    def __init__(self, settings: CpuSettings, index: int) -> None:
        self._conn, child = _CONTEXT.Pipe()
        cpus = settings.cpu_affinity
        self.proc: BaseProcess = _CONTEXT.Process(
            target=_child_main,
            args=(child, settings.memory_limit_bytes, cpus[index % len(cpus)] if cpus else None),
            name=f"ringpool-cpu-{index}",
            daemon=True,
        )
        self.proc.start()
        child.close()

    def call(self, job: Job) -> Any:
        ctx = {f.name: getattr(job.context, f.name) for f in fields(job.context)
               if f.name not in _LOCAL_FIELDS}
        ctx["headers"] = dict(ctx["headers"])
        fn = job.definition.fn
        self._conn.send_bytes(json.dumps({
            "module": fn.__module__, "qualname": fn.__qualname__,
            "args": job.args, "kwargs": job.kwargs, "context": ctx,
        }).encode())
        deadline = time.monotonic() + job.timeout_s
        while True:
            if not self._conn.poll(max(0.0, deadline - time.monotonic())):
                raise TaskTimeout(f"task {job.task_id} timed out after {job.timeout_s}s")
            try:
                reply = json.loads(self._conn.recv_bytes())
            except (EOFError, OSError) as exc:
                raise WorkerCrashed(f"worker process exited with {self.proc.exitcode}") from exc
            if "progress" not in reply:
                break
            if job.context.on_progress is not None:
                value, meta, at = reply["progress"]
                job.context.on_progress(TaskProgress(value, meta, at))
        if not reply["ok"]:
            raise _remote_failure(reply)
        return reply["value"]

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join(5.0)
        self._conn.close()


class ProcessTier(Tier):
    def __init__(
        self, settings: CpuSettings, chain: Chain | None = None,
        panic_handler: PanicHandler | None = None,
    ) -> None:
        super().__init__(chain, panic_handler)
        self._settings = settings
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._drained = threading.Condition(self._lock)
        self._backlog = Backlog()
        self._keepers: list[threading.Thread] = []
        self._running: dict[int, tuple[Ticket, _Process]] = {}
        self._closed = False
        self.restarts = 0

    def submit(self, ticket: Ticket, *, force: bool = False) -> None:
        with self._lock:
            if self._closed and not force:
                raise PoolClosed("the cpu pool is released")
            idle = len(self._keepers) - len(self._running)
            if len(self._backlog) >= self._settings.max_queue + idle and not force:
                self.rejected += 1
                raise PoolOverloaded(0.1 * (len(self._backlog) // len(self._keepers) + 1))
            self._backlog.push(ticket)
            self.submitted += 1
            if len(self._keepers) < self._settings.processes and len(self._backlog) > idle:
                # Processes start on first need, not at construction.
                keeper = threading.Thread(target=self._keep, args=(len(self._keepers),),
                                          name="ringpool-cpu-keeper", daemon=True)
                self._keepers.append(keeper)
                keeper.start()
            else:
                self._work.notify()

    def _keep(self, index: int) -> None:
        process: _Process | None = None
        try:
            while True:
                with self._lock:
                    while not self._backlog and not self._closed:
                        self._work.wait()
                    if not self._backlog:
                        return
                    ticket = self._backlog.pop()
                if process is None:
                    process = _Process(self._settings, index)
                with self._lock:
                    self._running[index] = (ticket, process)
                outcome = run_sync(ticket.job, self._chain, self._panic,
                                   partial(process.call, ticket.job))
                if outcome.timed_out or isinstance(outcome.exception, WorkerCrashed):
                    ticket.job.context.cancelled.set()
                    process.kill()
                    process = None
                with self._lock:
                    # None when release() gave up on the job and returned it as unfinished,
                    # or cancel() stopped it: either killed the process.
                    kept = self._running.pop(index, None) is not None
                    if not kept and process is not None:
                        process.kill()
                        process = None
                    if kept and outcome.timed_out:
                        self.timed_out += 1
                    elif kept and outcome.ok:
                        self.completed += 1
                    elif kept:
                        self.failed += 1
                    if process is None:
                        self.restarts += 1
                    if self._closed and not self._backlog and not self._running:
                        self._drained.notify_all()
                if kept:
                    ticket.finish(outcome)
        finally:
            if process is not None:
                process.kill()

    def cancel(self, job: Job) -> bool:
        """Withdraw ``job`` if it waits, or kill its process if it runs (a fresh one starts
        for the next job); False when it is not here."""
        with self._lock:
            ticket = self._backlog.remove(job)
            if ticket is None:
                for index, (running, process) in list(self._running.items()):
                    if running.job is job:
                        ticket = running
                        del self._running[index]
                        process.proc.kill()  # SIGKILL: the keeper sees it gone and replaces it
                        break
        if ticket is None:
            return False
        job.context.cancelled.set()
        ticket.finish(Outcome.cancelled_run(job))
        return True

    def release(self, timeout_s: float) -> list[Ticket]:
        """Run what is queued and running for up to ``timeout_s``; kill the rest.

        Returns the tickets that did not finish (queued, or running and killed).
        """
        with self._lock:
            self._closed = True
            self._work.notify_all()
            self._drained.wait_for(lambda: not (self._backlog or self._running), timeout_s)
            left = self._backlog.drain()
            running = list(self._running.values())
            self._running.clear()
        for ticket, process in running:
            ticket.job.context.cancelled.set()
            process.kill()
            left.append(ticket)
        return left

    def stats(self) -> dict[str, float]:
        with self._lock:
            return {
                "running": len(self._running),
                "idle": len(self._keepers) - len(self._running),
                "queued": len(self._backlog),
                "processes": len(self._keepers),
                **self._counts(),
                "restarts": self.restarts,
            }
