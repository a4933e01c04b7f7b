"""Cancelling tasks on a real cluster (2 nodes, a coordinator): every state a task can be
cancelled in, through the sync and async clients and ``taskctl``, and what a cancel
refuses. (Cancelling a delayed task, a finished one and an unknown id is in the
conformance suite, against the in-memory cluster too.)"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from ringpool import (
    AsyncCluster,
    Cluster,
    TaskAlreadyFinished,
    TaskCancelled,
    TaskHandle,
    TaskState,
)
from ringpool.testing.local import LocalCluster, RedisServer, ZooKeeperServer
from tests import tasks_conformance as tasks
from tests.helpers import connected, eventually, metric_value, records, taskctl

WAIT_S = 30.0


@pytest.fixture(scope="module")
def local(zookeeper: ZooKeeperServer, redis_server: RedisServer) -> Iterator[LocalCluster]:
    with LocalCluster(nodes=2, coordinators=1, tasks=["tests.tasks_conformance"],
                      zk=zookeeper.address, redis=redis_server.url,
                      cluster=f"cx{uuid.uuid4().hex[:10]}") as cluster:
        yield cluster


@pytest.fixture(scope="module")
def client(local: LocalCluster) -> Iterator[Cluster]:
    with connected(local, 2) as cluster:
        yield cluster


def started(path: Path, handle: TaskHandle) -> None:
    """Wait until the task runs and its record says so (the mark is written late)."""
    eventually(Path(f"{path}.started").exists, WAIT_S, f"{path.name} to start")
    eventually(lambda: handle.status() == "RUNNING", WAIT_S, f"{path.name} to be marked RUNNING")


def cancelled_record(local: LocalCluster, task_id: str) -> None:
    record = records(local, [task_id])[0]
    assert record is not None and record.state == "CANCELLED" and record.finished_at


def test_a_running_io_task_sees_ctx_cancelled(
    local: LocalCluster, client: Cluster, tmp_path: Path
) -> None:
    path = tmp_path / "io"
    handle = client.dispatch("run:io", tasks.linger.s(str(path), 60))
    started(path, handle)
    assert handle.cancel() == "RUNNING"
    eventually(Path(f"{path}.cancelled").exists, WAIT_S, "the task to see ctx.cancelled")
    with pytest.raises(TaskCancelled):
        handle.result(timeout=WAIT_S)
    cancelled_record(local, handle.task_id)


def test_a_running_async_task_is_cancelled(
    local: LocalCluster, client: Cluster, tmp_path: Path
) -> None:
    path = tmp_path / "async"
    handle = client.dispatch("run:async", tasks.linger_async.s(str(path), 60))
    started(path, handle)
    assert client.cancel(handle.task_id) == "RUNNING"
    eventually(Path(f"{path}.cancelled").exists, WAIT_S, "the coroutine to be cancelled")
    with pytest.raises(TaskCancelled):
        handle.result(timeout=WAIT_S)
    assert handle.status() == "CANCELLED"


def test_a_running_cpu_task_has_its_process_killed(
    local: LocalCluster, client: Cluster, tmp_path: Path
) -> None:
    path = tmp_path / "cpu"
    handle = client.dispatch("run:cpu", tasks.linger_cpu.s(str(path), 60))
    started(path, handle)
    pid = int(Path(f"{path}.started").read_text())
    assert handle.cancel() == "RUNNING"

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    eventually(gone, WAIT_S, f"the cpu worker {pid} to be killed")
    with pytest.raises(TaskCancelled):
        handle.result(timeout=WAIT_S)
    # The tier starts a fresh process for the next cpu task.
    assert client.dispatch("run:cpu", tasks.square.s(7)).result(timeout=WAIT_S) == 49


def test_a_queued_task_never_runs(local: LocalCluster, client: Cluster, tmp_path: Path) -> None:
    path, runs = tmp_path / "ahead", tmp_path / "runs"
    ahead = client.dispatch("queue:1", tasks.linger.s(str(path), 60).with_options(ordered=True))
    started(path, ahead)
    queued = client.dispatch("queue:1", tasks.log.s(str(runs), "queued").with_options(
        ordered=True))
    after = client.dispatch("queue:1", tasks.log.s(str(runs), "after").with_options(ordered=True))
    assert queued.status() == "QUEUED"
    assert queued.cancel() == "QUEUED"
    ahead.cancel()
    assert after.result(timeout=WAIT_S) == "after"
    assert runs.read_text() == "after\n"
    with pytest.raises(TaskCancelled):
        queued.result(timeout=WAIT_S)


def test_a_task_waiting_for_its_retry_is_not_retried(
    local: LocalCluster, client: Cluster, tmp_path: Path
) -> None:
    handle = client.dispatch("retry:9", tasks.retry_later.s(60))
    eventually(lambda: handle.status() == "RETRY_SCHEDULED", WAIT_S, "the retry to be scheduled")
    assert handle.cancel() == "RETRY_SCHEDULED"
    with pytest.raises(TaskCancelled):
        handle.result(timeout=WAIT_S)
    record = records(local, [handle.task_id])[0]
    assert record is not None and (record.state, record.attempt) == ("CANCELLED", 1)


def test_the_async_client_cancels_the_same_way(local: LocalCluster, tmp_path: Path) -> None:
    path = tmp_path / "aio"

    async def scenario() -> tuple[TaskState, TaskState, str]:
        async with AsyncCluster.connect(zk=local.zk, redis=local.redis,
                                        cluster=local.cluster) as cluster:
            handle = await cluster.dispatch("aio:1", tasks.linger_async.s(str(path), 60))
            while await handle.status() != "RUNNING":
                await asyncio.sleep(0.02)
            was = await handle.cancel()
            with pytest.raises(TaskCancelled):
                await handle.result(timeout=WAIT_S)
            done = await cluster.dispatch("aio:1", tasks.add.s(1, 1))
            await done.result(timeout=WAIT_S)
            with pytest.raises(TaskAlreadyFinished) as caught:
                await cluster.cancel(done.task_id)
            return was, await handle.status(), caught.value.state

    assert asyncio.run(scenario()) == ("RUNNING", "CANCELLED", "SUCCEEDED")


def test_taskctl_task_cancel_in_both_modes(local: LocalCluster, client: Cluster) -> None:
    waiting = client.dispatch("ctl:1", tasks.add.s(1, 2), countdown=600)
    shown = taskctl(local, "task", "show", waiting.accepted())
    assert shown.exit_code == 0 and "SCHEDULED" in shown.output and "due" in shown.output
    done = taskctl(local, "--json", "task", "cancel", waiting.task_id)
    assert done.exit_code == 0, done.output
    assert json.loads(done.output) == {"task_id": waiting.task_id, "cancelled": True,
                                       "was": "SCHEDULED"}
    again = taskctl(local, "task", "cancel", waiting.task_id)
    assert again.exit_code == 5
    assert "already finished (CANCELLED); nothing was cancelled" in again.output
    assert "CANCELLED" in taskctl(local, "task", "show", waiting.task_id).output
    other = client.dispatch("ctl:1", tasks.add.s(1, 2), countdown=600)
    human = taskctl(local, "task", "cancel", other.accepted())
    assert human.exit_code == 0 and f"cancelled task {other.task_id} (it was SCHEDULED)" \
        in human.output
    missing = taskctl(local, "task", "cancel", "f" * 32)
    assert missing.exit_code == 3 and "no task" in missing.output


def test_cancels_are_counted(local: LocalCluster, tmp_path: Path) -> None:
    path = tmp_path / "counted"
    registry = CollectorRegistry()
    with local.connect(metrics_registry=registry) as client:
        owner = client.owner("count:1")

        def stopped() -> float:
            return metric_value(local, owner, "ringpool_runs_stopped_total",
                                task="conformance.linger", reason="cancelled")

        before = stopped()
        handle = client.dispatch("count:1", tasks.linger.s(str(path), 60))
        started(path, handle)
        handle.cancel()
        eventually(lambda: stopped() == before + 1, WAIT_S, "the node to count the stopped run")
        with pytest.raises(TaskAlreadyFinished):
            client.cancel(handle.task_id)
        client.dispatch("count:1", tasks.add.s(1, 1), countdown=600).accepted()

    def count(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert count("ringpool_client_cancels_total", outcome="cancelled") == 1
    assert count("ringpool_client_cancels_total", outcome="finished") == 1
    assert count("ringpool_client_delayed_total") == 1
