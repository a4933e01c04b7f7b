"""Side-by-side workloads for ringpool and its peers (Celery, Dramatiq, arq, RQ).

Every system is a ``Peer``: it starts its own 2 worker processes against the one
Redis the harness started (each system on its own freshly flushed Redis DB),
and offers the primitives the workloads are written in:

* ``submit_many(name, items)`` — enqueue ``(key, args)`` pairs of task ``name``
  (``noop``, ``sleep10``, ``incr``) through the system's fastest client path
  (its batch API where it has one) and return opaque handles;
* ``wait_all(handles, deadline)`` — every handle's result through the
  system's own result API, one handle after another in submission order (the
  uniform completion rule: a task counts as done when its result can be read
  by the client); at the deadline it returns the results it has so far;
* ``round_trip()`` — one ``noop`` dispatch and its result, sequentially;
* ``submit_one(name, key, args)`` — the system's ordinary single-enqueue call
  (Celery ``delay``, Dramatiq ``send``, RQ ``enqueue``, arq ``enqueue_job``,
  ringpool ``dispatch``), which ``submit_loop`` calls in a plain loop.

The workloads are timed here, the same code for every system. ``W1``-``W4`` wait
for results through each system's result API; the loop workloads ``L1`` and
``L3`` read no result at all: every task increments one Redis counter, and a
task counts as done once the counter says so (``L1m`` is ringpool's
``dispatch_many`` in the same loop, 500 per call).
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ringpool.testing.local import ManagedProcess

ROOT = Path(__file__).resolve().parents[2]
SYSTEMS: tuple[str, ...] = ("ringpool", "celery", "dramatiq", "arq", "rq")
WORKERS = 2
SUBMIT_CHUNK = 1_000
COUNTER_POLL_S = 0.01  # how often a loop workload reads its completion counter
WORKLOAD_METHODS = {"w1": "w1_throughput", "w2": "w2_latency", "w3": "w3_io",
                    "w4": "w4_keyed", "l1": "l1_loop", "l1m": "l1_loop_many", "l3": "l3_loop"}
WORKLOADS: tuple[str, ...] = tuple(WORKLOAD_METHODS)


class WorkloadTimeout(Exception):
    """A workload ran past its deadline."""


@dataclass(frozen=True)
class Sizes:
    w1_tasks: int = 20_000
    w1_keys: int = 1_000
    w2_trips: int = 1_000
    w3_tasks: int = 5_000
    w4_keys: int = 1_000
    w4_per_key: int = 3
    loop_tasks: int = 10_000
    loop_keys: int = 1_000
    # Every workload stops at this deadline (per repeat): a system too slow to finish
    # reports what it completed by then (``partial``), so the whole run stays bounded.
    deadline_s: float = 15.0

    @classmethod
    def quick(cls) -> Sizes:
        return cls(w1_tasks=2_000, w1_keys=200, w2_trips=200, w3_tasks=500,
                   w4_keys=200, w4_per_key=3, loop_tasks=2_000, loop_keys=200, deadline_s=10.0)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def time_left(deadline: float) -> float:
    return deadline - time.monotonic()


def check_deadline(deadline: float, what: str) -> float:
    """Seconds left before ``deadline``; WorkloadTimeout when none are."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise WorkloadTimeout(f"{what}: deadline passed")
    return left


class WorkerProcess(ManagedProcess):
    """One worker command run from the repository root, killed with its process group
    (prefork pools and all)."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path,
                 env: dict[str, str]) -> None:
        super().__init__(name, argv, log_path, env, cwd=ROOT)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> int | None:
        """Signal the whole group, then SIGKILL whatever is left of it; the leader's exit code."""
        if self.proc is None:
            return None
        pgid = self.proc.pid  # start_new_session: the group id is the leader's pid
        for signum, wait in ((sig, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, signum)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
            # The leader is gone; make sure its children (prefork pools) are too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            break
        return self.proc.returncode


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra or {})
    return env


def bin_path(name: str) -> str:
    """A console script next to this interpreter (the venv's ``celery``, ``rq``, …)."""
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


class Peer(ABC):
    """One system under test; subclasses fill in start/stop and the three primitives."""

    name: str = "?"
    settings: str = ""  # one line: the worker command and its concurrency

    def __init__(self, redis_url: str, workdir: Path, zk: str | None = None) -> None:
        self.redis_url = redis_url
        self.workdir = workdir
        self.zk = zk
        self.workers: list[WorkerProcess] = []

    # -- lifecycle ---------------------------------------------------------------------
    @abstractmethod
    def start(self, timeout: float = 60.0) -> None: ...

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers = []

    def wait_ready(self, marker: str, timeout: float) -> None:
        """Wait until every worker's log shows ``marker``; fail early if one died."""
        deadline = time.monotonic() + timeout
        while True:
            pending = [w for w in self.workers if marker not in w.log_text()]
            if not pending:
                return
            for worker in pending:
                if not worker.alive():
                    raise RuntimeError(f"{worker.name} exited; log {worker.log_path}:\n"
                                       + worker.log_text()[-2000:])
            if time.monotonic() >= deadline:
                raise RuntimeError(f"{self.name}: workers not ready after {timeout:.0f}s; "
                                   f"logs in {self.workdir}")
            time.sleep(0.1)

    # -- primitives ----------------------------------------------------------------------
    @abstractmethod
    def submit_many(self, name: str, items: list[tuple[str, tuple[Any, ...]]],
                    options: dict[str, Any] | None = None) -> list[Any]: ...

    def submit_all(self, name: str, items: list[tuple[str, tuple[Any, ...]]], deadline: float,
                   options: dict[str, Any] | None = None) -> list[Any]:
        """Every item, ``submit_many`` 1,000 at a time, until ``deadline`` (then stop).

        Handles stay in submission order.
        """
        handles: list[Any] = []
        for i in range(0, len(items), SUBMIT_CHUNK):
            if time.monotonic() >= deadline:
                break
            handles.extend(self.submit_many(name, items[i:i + SUBMIT_CHUNK], options))
        return handles

    @abstractmethod
    def wait_all(self, handles: list[Any], deadline: float) -> list[Any]: ...

    @abstractmethod
    def round_trip(self, deadline: float) -> Any: ...

    @abstractmethod
    def submit_one(self, name: str, key: str, args: tuple[Any, ...]) -> None:
        """Enqueue one task of ``name`` (``count``, ``sleep10_count``) the ordinary way."""

    def submit_loop(self, name: str, items: list[tuple[str, tuple[Any, ...]]],
                    deadline: float) -> int:
        """``submit_one`` for every item in a plain loop until ``deadline``; how many went."""
        for index, (key, args) in enumerate(items):
            if not index % 100 and time.monotonic() >= deadline:
                return index
            self.submit_one(name, key, args)
        return len(items)

    def submit_loop_many(self, name: str, items: list[tuple[str, tuple[Any, ...]]],
                         deadline: float) -> int:
        """The loop through the system's batch call (only ringpool's is measured)."""
        raise NotImplementedError

    # -- workloads -----------------------------------------------------------------------
    def warm_up(self, deadline_s: float = 60.0) -> None:
        deadline = time.monotonic() + deadline_s
        handles = self.submit_many("noop", [(f"warm:{i}", ()) for i in range(200)])
        if len(self.wait_all(handles, deadline)) < len(handles):
            raise WorkloadTimeout(f"{self.name}: warm-up did not finish in {deadline_s:.0f}s")
        for _ in range(20):
            self.round_trip(deadline)

    def w1_throughput(self, sizes: Sizes) -> dict[str, Any]:
        items = [(f"k:{i % sizes.w1_keys}", ()) for i in range(sizes.w1_tasks)]
        return self._timed_batch("noop", items, sizes.deadline_s)[0]

    def w2_latency(self, sizes: Sizes) -> dict[str, Any]:
        deadline = time.monotonic() + sizes.deadline_s
        samples: list[float] = []
        for _ in range(sizes.w2_trips):
            if time.monotonic() >= deadline:
                break
            start = time.perf_counter()
            self.round_trip(deadline)
            samples.append((time.perf_counter() - start) * 1000.0)
        return {"trips": len(samples), "partial": len(samples) < sizes.w2_trips,
                "p50_ms": percentile(samples, 50), "p99_ms": percentile(samples, 99),
                "mean_ms": statistics.fmean(samples) if samples else float("nan")}

    def w3_io(self, sizes: Sizes) -> dict[str, Any]:
        items = [(f"k:{i % sizes.w1_keys}", ()) for i in range(sizes.w3_tasks)]
        return self._timed_batch("sleep10", items, sizes.deadline_s)[0]

    def l1_loop(self, sizes: Sizes) -> dict[str, Any]:
        return self._timed_loop("count", sizes.loop_tasks, sizes.loop_keys, sizes.deadline_s,
                                self.submit_loop)

    def l1_loop_many(self, sizes: Sizes) -> dict[str, Any]:
        return self._timed_loop("count", sizes.loop_tasks, sizes.loop_keys, sizes.deadline_s,
                                self.submit_loop_many)

    def l3_loop(self, sizes: Sizes) -> dict[str, Any]:
        return self._timed_loop("sleep10_count", sizes.w3_tasks, sizes.loop_keys,
                                sizes.deadline_s, self.submit_loop)

    def _timed_loop(self, name: str, tasks: int, keys: int, deadline_s: float,
                    submit: Callable[[str, list[tuple[str, tuple[Any, ...]]], float], int]
                    ) -> dict[str, Any]:
        """Enqueue for at most ``deadline_s``, then wait at most as long for the counter."""
        import redis

        counter = f"bench:done:{uuid.uuid4().hex}"
        items = [(f"k:{i % keys}", (self.redis_url, counter)) for i in range(tasks)]
        client = redis.Redis.from_url(self.redis_url)
        try:
            deadline = time.monotonic() + deadline_s
            start = time.perf_counter()
            submitted = submit(name, items, deadline)
            enqueued = time.perf_counter()
            completed = 0
            while completed < submitted and time.monotonic() < deadline + deadline_s:
                time.sleep(COUNTER_POLL_S)
                completed = int(client.get(counter) or 0)
            done = time.perf_counter()
        finally:
            client.close()
        if completed < tasks:
            self.recover()
        return {"tasks": tasks, "submitted": submitted, "completed": completed,
                "partial": completed < tasks, "seconds": done - start,
                "tasks_per_s": completed / (done - start),
                "enqueue_per_s": submitted / max(enqueued - start, 1e-9)}

    def w4_options(self) -> dict[str, Any]:
        """Per-system dispatch options for W4 (ringpool asks for per-key order)."""
        return {}

    def w4_keyed(self, sizes: Sizes) -> dict[str, Any]:
        """Per-key in-memory counters. A task's returned count that another task of the
        same key also returned is a lost or split update: ``wrong_counts``."""
        run = uuid.uuid4().hex[:8]  # fresh keys: every worker's counters start at 0
        keys = [f"{run}:{i}" for i in range(sizes.w4_keys)]
        items = [(key, (key,)) for _ in range(sizes.w4_per_key) for key in keys]
        stats, values = self._timed_batch("incr", items, sizes.deadline_s, self.w4_options())
        seen: dict[str, list[int]] = {}
        for (key, _), value in zip(items, values, strict=False):
            seen.setdefault(key, []).append(int(value))
        stats["wrong_counts"] = sum(len(v) - len(set(v)) for v in seen.values())
        stats["wrong_keys"] = sum(1 for v in seen.values() if max(v) != len(v))
        stats["keys"] = len(keys)
        return stats

    def _timed_batch(self, name: str, items: list[tuple[str, tuple[Any, ...]]],
                     deadline_s: float, options: dict[str, Any] | None = None
                     ) -> tuple[dict[str, Any], list[Any]]:
        """Enqueue in chunks of 1,000 for at most ``deadline_s``, then wait at most as long."""
        deadline = time.monotonic() + deadline_s
        start = time.perf_counter()
        handles = self.submit_all(name, items, deadline, options)
        enqueued = time.perf_counter()
        # Enqueueing stops at the deadline; what was enqueued gets as long again to finish,
        # so a slow enqueuer is not reported as having completed nothing.
        results = self.wait_all(handles, deadline + deadline_s)
        done = time.perf_counter()
        if len(results) < len(items):
            self.recover()
        return {"tasks": len(items), "submitted": len(handles), "completed": len(results),
                "partial": len(results) < len(items), "seconds": done - start,
                "tasks_per_s": len(results) / (done - start),
                "enqueue_per_s": len(handles) / max(enqueued - start, 1e-9)}, results

    def run_once(self, sizes: Sizes, workloads: Sequence[str] = WORKLOADS) -> dict[str, Any]:
        """One repeat of every workload; a failed or late workload records its error."""
        out: dict[str, Any] = {}
        for workload in workloads:
            method = getattr(self, WORKLOAD_METHODS[workload])
            try:
                out[workload] = method(sizes)
            except NotImplementedError:
                continue  # a workload this system does not have
            except Exception as exc:  # recorded, the run goes on
                out[workload] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
                self.recover()
        return out

    def recover(self) -> None:
        """After a failed workload: drop whatever is still queued (best effort)."""
        return None


def load_peer(name: str, redis_url: str, workdir: Path, zk: str | None) -> Peer:
    """The ``Peer`` for system ``name``; its module is imported only here.

    Peer modules configure their broker from ``BENCH_REDIS_URL`` at import (the
    workers import them too), so it is set first.
    """
    os.environ["BENCH_REDIS_URL"] = redis_url
    if name == "ringpool":
        from bench.peers.ringpool_peer import RingpoolPeer as cls
    elif name == "celery":
        from bench.peers.celery_peer import CeleryPeer as cls  # type: ignore[assignment]
    elif name == "dramatiq":
        from bench.peers.dramatiq_peer import DramatiqPeer as cls  # type: ignore[assignment]
    elif name == "arq":
        from bench.peers.arq_peer import ArqPeer as cls  # type: ignore[assignment]
    elif name == "rq":
        from bench.peers.rq_peer import RqPeer as cls  # type: ignore[assignment]
    else:
        raise ValueError(f"unknown system {name!r}; choose from {', '.join(SYSTEMS)}")
    return cls(redis_url, workdir, zk)
