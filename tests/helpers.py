"""What the tests share: waiting on a condition with a deadline, a client of a local
cluster and ``taskctl`` run against one, reading task records, a process's metrics
(every sample, its unlabelled ones, or one by labels) and a node's ring version, Redis
clients and keys that work on a single Redis and on a Redis Cluster."""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

import redis
from click.testing import CliRunner, Result
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from redis.cluster import RedisCluster

from ringpool import Cluster
from ringpool.cli.taskctl import cli
from ringpool.store.keys import DEFAULT_PARTITIONS, Keys
from ringpool.store.store import StateStore, TaskRecord
from ringpool.testing.local import LocalCluster

T = TypeVar("T")
# The nodes of the feature tests' cluster (the ``features_cluster`` fixture).
FEATURE_NODES = ("node-0", "node-1", "gpu-0")


class _Waiting(Generic[T]):
    """One wait: tries ``check`` until it gives a truthy value or the deadline passes."""

    def __init__(self, check: Callable[[], T], timeout: float, what: str) -> None:
        self.check, self.timeout, self.what = check, timeout, what
        self.deadline = time.monotonic() + timeout
        self.value: T | None = None

    def done(self) -> bool:
        """True once ``check`` held; AssertionError (chained to its last error) when late."""
        last: Exception | None = None
        try:
            self.value = self.check()
            if self.value:
                return True
        except Exception as exc:
            last = exc
        if time.monotonic() >= self.deadline:
            raise AssertionError(f"timed out after {self.timeout:g}s waiting for {self.what}"
                                 + (f": {last}" if last else "")) from last
        return False


def eventually(check: Callable[[], T], timeout: float = 30.0, what: str = "the condition",
               interval: float = 0.05) -> T:
    """``check()``'s first truthy value (``check`` may also assert), within ``timeout``."""
    waiting = _Waiting(check, timeout, what)
    while not waiting.done():
        time.sleep(interval)
    return waiting.value  # type: ignore[return-value]


async def eventually_async(check: Callable[[], T], timeout: float = 30.0,
                           what: str = "the condition", interval: float = 0.01) -> T:
    """``eventually`` for code on an event loop: polls without blocking the loop."""
    waiting = _Waiting(check, timeout, what)
    while not waiting.done():
        await asyncio.sleep(interval)
    return waiting.value  # type: ignore[return-value]


@contextlib.contextmanager
def connected(local: LocalCluster, nodes: int) -> Iterator[Cluster]:
    """A client of ``local``, once its ring holds ``nodes`` nodes."""
    with local.connect() as cluster:
        eventually(lambda: len(cluster.ring) == nodes, what=f"the client to see {nodes} nodes")
        yield cluster


def taskctl(local: LocalCluster, *args: str, **invoke: Any) -> Result:
    """Run ``taskctl`` in this process against ``local`` (``invoke``: ``CliRunner.invoke``'s
    options, such as ``input``)."""
    return CliRunner().invoke(cli, ["--zk", local.zk, "--redis", local.redis, "--cluster",
                                    local.cluster, *args], **invoke)


def metric_sum(local: LocalCluster, node_ids: Iterable[str], name: str, **labels: str) -> float:
    """A sample summed over nodes (and over the labels not given)."""
    return sum(s.value for node_id in node_ids for s in samples(local.metrics_ports[node_id])
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def node_ring_version(local: LocalCluster, node_id: str) -> float:
    """The ring version ``node_id`` routes by now, from its /metrics endpoint."""
    return gauges(local.metrics_ports[node_id])["ringpool_ring_version"]


def nodes_ring_ready(local: LocalCluster, version: int, timeout: float = 30.0) -> None:
    """Wait until every node has seen ring ``version`` (or a newer one)."""
    eventually(lambda: all(node_ring_version(local, n) >= version for n in local.nodes),
               timeout, f"every node to see ring v{version}")


def records(local: LocalCluster, task_ids: list[str]) -> list[TaskRecord | None]:
    """The records of ``task_ids`` in ``local``'s cluster, as the state store reads them."""
    async def read() -> list[TaskRecord | None]:
        store = StateStore.from_url(local.redis, local.cluster)
        try:
            return await store.records(task_ids)
        finally:
            await store.close()

    return asyncio.run(read())


def redis_client(url: str) -> redis.Redis:
    """A plain client for ``url``, or a Redis Cluster client when it names a cluster node
    (typed as the plain one: the tests use the commands both have)."""
    plain = redis.Redis.from_url(url)
    if not plain.info("cluster").get("cluster_enabled"):
        return plain
    plain.close()
    return RedisCluster.from_url(url)  # type: ignore[return-value]


def dlq_key(cluster: str, task_id: str, partitions: int = DEFAULT_PARTITIONS) -> str:
    """The DLQ zset of ``task_id``'s partition."""
    keys = Keys(cluster, partitions)
    return keys.dlq(keys.partition_of(task_id))


def retry_key(cluster: str, task_id: str, partitions: int = DEFAULT_PARTITIONS) -> str:
    """The retry zset of ``task_id``'s partition."""
    keys = Keys(cluster, partitions)
    return keys.retries(keys.partition_of(task_id))


def dlq_size(client: redis.Redis, cluster: str, partitions: int = DEFAULT_PARTITIONS) -> int:
    """Entries in the DLQ, every partition's."""
    keys = Keys(cluster, partitions)
    return sum(int(client.zcard(keys.dlq(p))) for p in keys.all_partitions)


def put_in_dlq(client: redis.Redis, cluster: str, entries: dict[str, float],
               partitions: int = DEFAULT_PARTITIONS) -> None:
    """Put task ids in the DLQ (each in its partition) at these times."""
    for task_id, at in entries.items():
        client.zadd(dlq_key(cluster, task_id, partitions), {task_id: at})


def samples(port: int) -> list[Sample]:
    """Every sample a process serves on its metrics ``port`` now."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return [s for f in text_string_to_metric_families(text) for s in f.samples]


def gauges(port: int) -> dict[str, float]:
    """The unlabelled samples a process serves on its metrics ``port`` now, by name."""
    return {s.name: s.value for s in samples(port) if not s.labels}


def metric_value(local: LocalCluster, process: str, name: str, **labels: str) -> float:
    """The sample ``name`` with exactly ``labels`` that ``process`` (a node id or
    ``coordinator-N``) serves on its metrics endpoint now; 0.0 when it has none (yet)."""
    return next((s.value for s in samples(local.metrics_ports[process])
                 if s.name == name and s.labels == labels), 0.0)
