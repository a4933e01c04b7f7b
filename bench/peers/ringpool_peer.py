"""ringpool: 2 nodes (``python -m ringpool_node``) started by ``ringpool.testing.local.LocalCluster``.

Workers: ``LocalCluster(nodes=2, coordinators=0, tasks=["bench.peers.ringpool_peer"])``
against the harness's ZooKeeper and Redis: 2 node processes, each with its
default pools (the dynamic ``io`` thread pool runs these sync tasks). No
coordinator: it is not on the dispatch path and would be a third process.
Durable accept is on (it always is): every task's idempotency fingerprint,
record and in-flight entry are written to Redis before its node acknowledges it.

Client: the public sync API. W1/W3/W4 ``Cluster.dispatch_many`` in batches of
``CHUNK`` tasks (keyed: ``k:0`` .. ``k:999``), one call after another (each returns
once its tasks are queued; the client pipelines them), then ``TaskHandle.result()``
per handle in submission order (results are pushed back on the open stream; one that is
already here returns without a hop through the event loop). W2:
``cluster.dispatch(key, noop.s()).result()``, one after another. L1/L3: a plain
loop of ``cluster.dispatch(key, count.s(...))`` (it returns once the task is
queued; the client batches by itself); L1m: a loop of ``dispatch_many`` of
``LOOP_CHUNK``. W4 sends ``ordered=True`` — the
per-key ordering ringpool offers, so same-key increments never overlap on a
node's threads; affinity puts all of a key's increments in one process.

Importing this module registers the task bodies of ``bench.tasks`` as ringpool
tasks ``bench.noop``, ``bench.sleep10``, ``bench.incr``, ``bench.count`` and
``bench.sleep10_count`` (kind ``io``); the nodes load it as their ``--tasks``
module.
"""

from __future__ import annotations

import time
from typing import Any

from bench import tasks
from bench.peers import WORKERS, Peer, check_deadline, time_left
from ringpool.task import task

CHUNK = 1_000  # tasks per dispatch_many call
LOOP_CHUNK = 500  # tasks per dispatch_many call in L1m

ringpool_noop = task("bench.noop", kind="io", timeout=60.0)(tasks.noop)
ringpool_sleep10 = task("bench.sleep10", kind="io", timeout=60.0)(tasks.sleep10)
ringpool_incr = task("bench.incr", kind="io", timeout=60.0)(tasks.incr)
ringpool_count = task("bench.count", kind="io", timeout=60.0)(tasks.count)
ringpool_sleep10_count = task("bench.sleep10_count", kind="io", timeout=60.0)(tasks.sleep10_count)
DEFINITIONS = {"noop": ringpool_noop, "sleep10": ringpool_sleep10, "incr": ringpool_incr,
               "count": ringpool_count, "sleep10_count": ringpool_sleep10_count}


class RingpoolPeer(Peer):
    name = "ringpool"
    settings = (f"2 nodes (default pools, io kind), durable accept, no coordinator; "
                f"dispatch_many {CHUNK:,}/call")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.local: Any = None
        self.cluster: Any = None
        self._trip = 0

    def start(self, timeout: float = 60.0) -> None:
        from ringpool import Cluster
        from ringpool.testing.local import LocalCluster

        if not self.zk:
            raise RuntimeError("ringpool needs the harness's ZooKeeper")
        self.local = LocalCluster(
            nodes=WORKERS, coordinators=0, tasks=["bench.peers.ringpool_peer"],
            zk=self.zk, redis=self.redis_url, workdir=self.workdir,
        )
        self.local.start(timeout=timeout)
        self.cluster = Cluster.connect(zk=self.local.zk, redis=self.local.redis,
                                       cluster=self.local.cluster)
        deadline = time.monotonic() + timeout
        while len(self.cluster.ring.members) < WORKERS:
            check_deadline(deadline, "ringpool client ring")
            time.sleep(0.05)

    def stop(self) -> None:
        try:
            if self.cluster is not None:
                self.cluster.close()
        finally:
            self.cluster = None
            if self.local is not None:
                self.local.stop()
                self.local = None

    def submit_many(self, name: str, items: list[tuple[str, tuple[Any, ...]]],
                    options: dict[str, Any] | None = None) -> list[Any]:
        definition = DEFINITIONS[name]
        handles: list[Any] = []
        for i in range(0, len(items), CHUNK):
            batch = []
            for key, args in items[i:i + CHUNK]:
                t = definition.s(*args)
                batch.append((key, t.with_options(**options) if options else t))
            handles.extend(self.cluster.dispatch_many(batch))
        return handles

    def wait_all(self, handles: list[Any], deadline: float) -> list[Any]:
        from ringpool import ResultTimeout

        out: list[Any] = []
        for handle in handles:
            left = time_left(deadline)
            if left <= 0:
                break
            try:
                out.append(handle.result(timeout=left))
            except ResultTimeout:
                break
        return out

    def round_trip(self, deadline: float) -> Any:
        self._trip += 1
        handle = self.cluster.dispatch(f"trip:{self._trip % 1000}", ringpool_noop.s())
        return handle.result(timeout=check_deadline(deadline, "ringpool round trip"))

    def submit_one(self, name: str, key: str, args: tuple[Any, ...]) -> None:
        self.cluster.dispatch(key, DEFINITIONS[name].s(*args))

    def submit_loop_many(self, name: str, items: list[tuple[str, tuple[Any, ...]]],
                         deadline: float) -> int:
        definition = DEFINITIONS[name]
        for start in range(0, len(items), LOOP_CHUNK):
            if time.monotonic() >= deadline:
                return start
            self.cluster.dispatch_many(
                [(key, definition.s(*args)) for key, args in items[start:start + LOOP_CHUNK]])
        return len(items)

    def w4_options(self) -> dict[str, Any]:
        return {"ordered": True}
