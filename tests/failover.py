"""A Redis primary killed under load: how many accepted tasks does each accept durability
lose? Shared by the reliability test and ``bench/redis_failover.py``.

Two nodes and a coordinator run on a Redis Cluster; a producer dispatches probe tasks
as fast as it is let. The primary's replica is cut off for ``lag_s`` (paused with
SIGSTOP, its link closed), as a replica that falls behind under load or across a slow
link would be; then the primary is killed with SIGKILL and the replica resumed: it
takes over with what it had, and the killed server comes back as a replica. A task is
lost when it was accepted (``handle.accepted()`` returned) and its caller can never get
a result: its record went with the primary. The probe tasks count their runs in another
Redis, which nothing kills.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass

from ringpool import Cluster, Task
from ringpool.errors import ClusterUnavailable, Overloaded, TaskNotFound
from ringpool.testing.local import LocalCluster, RedisClusterServers
from tests.helpers import eventually, redis_client
from tests.tasks_flaky import probe_runs_key

RESULT_WAIT_S = 180.0


@dataclass(frozen=True)
class FailoverCounts:
    durability: str
    accepted: int
    refused: int  # tasks whose accept raised (never accepted: the caller knows)
    lost: int  # accepted, and no result will ever come
    never_ran: int  # accepted tasks that did not run
    ran_twice: int
    kill_to_healthy_s: float

    def line(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.__dict__.items())


def _produce(client: Cluster, tag: str, accepted: list[str], stop: threading.Event,
             refused: list[int]) -> None:
    i = 0
    while not stop.is_set():
        batch = [(f"fo:{j}", Task("probe.run", args=(tag, 0.005))) for j in range(i, i + 50)]
        i += 50
        for handle in client.dispatch_many(batch):
            try:
                accepted.append(handle.accepted())
            except (ClusterUnavailable, Overloaded):
                refused[0] += 1  # never accepted: the caller knows and may send again


def failover_drill(zk: str, servers: RedisClusterServers, probe_redis: str, durability: str,
                   before: int = 1500, after: int = 1500, lag_s: float = 0.5) -> FailoverCounts:
    """Kill one primary of ``servers`` after ``before`` accepted tasks (its replica paused
    for ``lag_s`` first); stop after ``after`` more; count. ``servers`` is healthy again
    (the killed server a replica) at the end."""
    tag = f"failover-{durability}-{time.monotonic_ns()}"
    with LocalCluster(nodes=2, coordinators=1, tasks=["ringpool.demo", "tests.tasks_flaky"],
                      zk=zk, redis=servers.url, env={"PROBE_REDIS": probe_redis},
                      node_args=["--accept-durability", durability]) as local, \
            local.connect() as client:
        accepted: list[str] = []
        refused = [0]
        stop = threading.Event()
        producer = threading.Thread(target=_produce, args=(client, tag, accepted, stop, refused))
        producer.start()
        try:
            eventually(lambda: len(accepted) >= before, 120, f"{before} accepted tasks", 0.01)
            victim = servers.primaries()[0]
            (follower,) = servers.replicas_of(victim)
            follower.send_signal(signal.SIGSTOP)
            victim.command("CLIENT", "KILL", "TYPE", "replica")  # nothing more reaches it
            time.sleep(lag_s)  # accepts go on meanwhile: the replica falls behind
            killed_at = time.monotonic()
            victim.stop(sig=signal.SIGKILL)
            follower.send_signal(signal.SIGCONT)
            servers.wait_healthy()  # its replica serves its slots
            victim.start()  # back, as the new primary's replica
            servers.wait_healthy()
            healthy_s = time.monotonic() - killed_at
            at_kill = len(accepted)
            eventually(lambda: len(accepted) >= at_kill + after, 120,
                       f"{after} more accepted tasks after the failover", 0.01)
        finally:
            stop.set()
            producer.join(timeout=120)
        lost = 0
        for task_id in accepted:
            try:
                client.handle(task_id).result(timeout=RESULT_WAIT_S)
            except TaskNotFound:
                lost += 1
        runs = {k.decode(): int(v) for k, v in
                redis_client(probe_redis).hgetall(probe_runs_key(tag)).items()}
        counts = Counter(runs.get(task_id, 0) for task_id in accepted)
    return FailoverCounts(durability, len(accepted), refused[0], lost, counts[0],
                          sum(n for c, n in counts.items() if c > 1), round(healthy_s, 2))
