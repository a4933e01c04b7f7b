"""Delayed tasks on a real cluster: held in Redis until their eta, fired once each to the
key's owner of that time, across a failover of the leading coordinator; listed soonest
first; deduplicated by idempotency key. (Their results, states and bad input are in the
conformance suite, against the in-memory cluster too.)"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from ringpool.store.listing import TaskQuery
from ringpool.store.store import StateStore
from ringpool.testing.local import LocalCluster, RedisServer, ZooKeeperServer
from tests import tasks_conformance as tasks
from tests.helpers import eventually, metric_value, records

WAIT_S = 60.0


def test_delayed_tasks_fire_once_each_across_a_leader_kill(
    zookeeper: ZooKeeperServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    with LocalCluster(nodes=2, coordinators=2, tasks=["tests.tasks_conformance"],
                      zk=zookeeper.address, redis=redis_server.url,
                      coordinator_args=["--zk-session-timeout", "2"]) as local, \
            local.connect() as client:
        names = ["coordinator-0", "coordinator-1"]

        def leader() -> str | None:
            leading = [n for i, n in enumerate(names) if local.coordinators[i].alive()
                       and metric_value(local, n, "ringpool_coordinator_leader") == 1]
            return leading[0] if len(leading) == 1 else None

        first = eventually(leader, WAIT_S, "a leader")
        handles = [client.dispatch(f"key:{i}", tasks.log.s(str(runs), str(i)),
                                   countdown=1.0 + (i % 10) * 0.3) for i in range(40)]
        client.flush(timeout=WAIT_S)
        assert {h.status() for h in handles} == {"SCHEDULED"}
        local.coordinators[names.index(first)].stop(sig=signal.SIGKILL)
        assert [h.result(timeout=WAIT_S) for h in handles] == [str(i) for i in range(40)]
        second = leader()
        assert second is not None and second != first
        assert metric_value(local, second, "ringpool_delayed_fired_total") >= 1
        done = records(local, [h.task_id for h in handles])
        owners = [client.owner(h.key) for h in handles]
    assert sorted(runs.read_text().split()) == sorted(str(i) for i in range(40))  # once each
    for owner, record in zip(owners, done, strict=True):
        assert record is not None and record.state == "SUCCEEDED" and record.eta is not None
        assert record.started_at is not None and record.started_at >= record.eta - 0.01
        assert record.node == owner


def test_delayed_tasks_are_listed_soonest_first_and_deduplicated(
    zookeeper: ZooKeeperServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    with LocalCluster(nodes=1, coordinators=1, tasks=["tests.tasks_conformance"],
                      zk=zookeeper.address, redis=redis_server.url) as local, \
            local.connect() as client:
        later = client.dispatch("a", tasks.add.s(1, 1), countdown=600)
        sooner = client.dispatch("b", tasks.add.s(2, 2), countdown=300)
        keyed = tasks.add.s(3, 3).with_options(idempotency_key="report-7")
        first = client.dispatch("c", keyed, countdown=900)
        again = client.dispatch("c", keyed, countdown=60)
        assert again.task_id == first.task_id  # the first one, still SCHEDULED
        client.flush(timeout=WAIT_S)

        async def listed() -> tuple[list[str], list[str]]:
            store = StateStore.from_url(local.redis, local.cluster)
            try:
                page = await store.scheduled_list(limit=10)
                named = await store.scheduled_list(TaskQuery(key="b"))
                return ([item.record.task_id for item in page.items],
                        [item.record.task_id for item in named.items])
            finally:
                await store.close()

        everything, only_b = asyncio.run(listed())
        assert everything == [sooner.task_id, later.task_id, first.task_id]
        assert only_b == [sooner.task_id]
        now = time.time()
        assert all(now < r.eta for r in records(local, everything) if r and r.eta)
