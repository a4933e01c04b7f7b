"""One suite, two clusters: ``InMemoryCluster`` and a real ``LocalCluster`` agree.

Every test runs against both (``backend`` is parametrized): results, typed errors,
retries with the task's policy, the DLQ and its replay, idempotency, per-key order,
key affinity, delayed tasks and cancels. The in-memory side gets a fresh cluster per
test; the real side is one local cluster for the module (3 nodes named as the in-memory
ones, a coordinator).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ringpool import (
    Cluster,
    InvalidKey,
    InvalidTask,
    PayloadTooLarge,
    PermanentError,
    Task,
    TaskAlreadyFinished,
    TaskCancelled,
    TaskFailed,
    TaskNotFound,
    UnknownTask,
)
from ringpool.store.store import StateStore, TaskRecord
from ringpool.testing import InMemoryCluster
from ringpool.testing.local import LocalCluster, RedisServer, ZooKeeperServer
from tests import tasks_conformance as tasks
from tests.helpers import eventually, records, taskctl

TASKS = ["tests.tasks_conformance"]
NODES = 3
WAIT_S = 30.0  # of cluster time in memory, of real time on the local cluster


class InMemoryBackend:
    name = "in-memory"

    def __init__(self, cluster: InMemoryCluster) -> None:
        self.cluster = cluster

    def let_pass(self, seconds: float) -> None:
        """Let ``seconds`` of cluster time pass."""
        self.cluster.advance(seconds)

    def in_dlq(self, task_id: str) -> bool:
        return task_id in [record.task_id for record in self.cluster.dlq()]

    def record(self, task_id: str) -> TaskRecord | None:
        return self.cluster.record(task_id)

    def replay(self, task_id: str) -> None:
        assert self.cluster.dlq_replay(task_id) == 1


class LocalBackend:
    """The real cluster, read through the state store, replayed through ``taskctl``."""

    name = "local"

    def __init__(self, local: LocalCluster, cluster: Cluster) -> None:
        self.local = local
        self.cluster = cluster

    def let_pass(self, seconds: float) -> None:
        """Real time passes on its own: the caller waits for what it brings."""

    def in_dlq(self, task_id: str) -> bool:
        async def read() -> list[float | None]:
            store = StateStore.from_url(self.local.redis, self.local.cluster)
            try:
                return await store.dlq_times([task_id])
            finally:
                await store.close()

        return asyncio.run(read()) != [None]

    def record(self, task_id: str) -> TaskRecord | None:
        return records(self.local, [task_id])[0]

    def replay(self, task_id: str) -> None:
        local = self.local
        done = taskctl(local, "--json", "dlq", "replay", task_id, "--yes")
        assert done.exit_code == 0, done.output
        assert json.loads(done.stdout)["replayed"] == 1


Backend = InMemoryBackend | LocalBackend


@pytest.fixture(scope="module")
def local(zookeeper: ZooKeeperServer, redis_server: RedisServer) -> Iterator[LocalCluster]:
    with LocalCluster(nodes=NODES, coordinators=1, tasks=TASKS, zk=zookeeper.address,
                      redis=redis_server.url) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def local_client(local: LocalCluster) -> Iterator[Cluster]:
    with local.connect() as client:
        eventually(lambda: len(client.ring) == NODES, what="the client to see every node")
        yield client


@pytest.fixture(params=["in-memory", "local"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "local":
        yield LocalBackend(request.getfixturevalue("local"),
                           request.getfixturevalue("local_client"))
        return
    with InMemoryCluster(TASKS, nodes=NODES) as cluster:
        yield InMemoryBackend(cluster)


# -- results ----------------------------------------------------------------------------


@pytest.mark.parametrize(("task", "expected"), [
    (tasks.add.s(1, 2), 3),
    (tasks.add.s(1, b=41), 42),
    (tasks.async_add.s(2, 3), 5),
    (tasks.square.s(12), 144),
    (Task("conformance.add", args=(0.5,), kwargs={"b": 1}), 1.5),
], ids=["io", "kwargs", "async", "cpu", "task-object"])
def test_a_task_returns_its_result(backend: Backend, task: Task, expected: object) -> None:
    handle = backend.cluster.dispatch("user:42", task)
    assert handle.result(timeout=WAIT_S) == expected
    assert handle.status() == "SUCCEEDED"


def test_dispatch_many_returns_every_result_in_order(backend: Backend) -> None:
    handles = backend.cluster.dispatch_many([(f"k{i % 7}", tasks.add.s(i, 1)) for i in range(50)])
    assert len({h.task_id for h in handles}) == 50
    assert [h.result(timeout=WAIT_S) for h in handles] == [i + 1 for i in range(50)]


def test_a_task_runs_on_the_owner_of_its_key_with_its_headers(backend: Backend) -> None:
    keys = [f"account:{i}" for i in range(12)]
    for key in keys:
        ran = backend.cluster.dispatch(key, tasks.where.s(), headers={"tenant": "t1"})
        seen = ran.result(timeout=WAIT_S)
        assert seen["node"] == backend.cluster.owner(key)
        assert seen["key"] == key and seen["attempt"] == 1
        assert seen["headers"]["tenant"] == "t1"
    assert len({backend.cluster.owner(k) for k in keys}) > 1  # keys spread over the nodes


def test_both_route_every_key_to_the_same_node_id(local_client: Cluster) -> None:
    with InMemoryCluster(TASKS, nodes=NODES) as memory:
        keys = [f"user:{i}" for i in range(500)]
        assert [memory.owner(k) for k in keys] == [local_client.owner(k) for k in keys]


def test_an_unknown_task_id_has_no_record(backend: Backend) -> None:
    handle = backend.cluster.handle("f" * 32)
    assert handle.status() == "UNKNOWN"
    with pytest.raises(TaskNotFound):
        handle.result(timeout=WAIT_S)


# -- typed errors ---------------------------------------------------------------------


BAD_INPUT = [
    ("k", Task("no.such.task"), UnknownTask),
    ("k", Task("conformance.add", args=(object(), 1)), InvalidTask),
    ("k", Task("conformance.add", args=("x" * (1024 * 1024 + 1), 1)), PayloadTooLarge),
    ("", Task("conformance.add", args=(1, 1)), InvalidKey),
    ("k" * 2000, Task("conformance.add", args=(1, 1)), InvalidKey),
    ("k", Task("conformance.add", args=(1, 1), timeout=-1), InvalidTask),
    ("k", Task("conformance.add", args=(float("nan"), 1)), InvalidTask),
    ("k", Task("conformance.add", args=(1, 1), max_retries=1000), InvalidTask),
    ("k", Task("conformance.add", args=(1, 1), result_ttl=0), InvalidTask),
    ("k", Task("conformance.add", args=(1, 1), group="no spaces"), InvalidTask),
    ("k", Task("conformance.add", args=(1, 1), group="gpu"), UnknownTask),
    ("k", tasks.gpu_only.s(), UnknownTask),
]


@pytest.mark.parametrize(("key", "task", "error"), BAD_INPUT, ids=[
    "unknown-task", "non-json", "oversized", "empty-key", "long-key", "bad-timeout", "nan",
    "too-many-retries", "bad-result-ttl", "bad-group", "no-such-group", "group-not-served"])
def test_bad_input_raises_the_same_typed_error(
    backend: Backend, key: str, task: Task, error: type[Exception]
) -> None:
    with pytest.raises(error):
        backend.cluster.dispatch(key, task)
    with pytest.raises(error):
        backend.cluster.dispatch_many([("fine", tasks.add.s(1, 1)), (key, task)])
    assert backend.cluster.dispatch("k", tasks.add.s(2, 2)).result(timeout=WAIT_S) == 4


@pytest.mark.parametrize("key", ["", "k" * 2000])
def test_owner_of_a_bad_key_is_refused(backend: Backend, key: str) -> None:
    with pytest.raises(InvalidKey):
        backend.cluster.owner(key)


# -- result expiry --------------------------------------------------------------------


@pytest.mark.parametrize("task", [tasks.brief.s(5), tasks.add.s(2, 3).with_options(result_ttl=1)],
                         ids=["declared", "dispatched"])
def test_a_result_with_its_own_ttl_is_gone_after_it(backend: Backend, task: Task) -> None:
    handle = backend.cluster.dispatch("ttl:1", task)
    assert handle.result(timeout=WAIT_S) == 5
    kept = backend.cluster.dispatch("ttl:1", tasks.add.s(1, 1))
    kept.result(timeout=WAIT_S)
    backend.let_pass(1.5)
    eventually(lambda: backend.record(handle.task_id) is None, timeout=WAIT_S,
               what="the record to expire")
    assert backend.record(kept.task_id) is not None  # the cluster's TTL: a day


# -- retries and the DLQ --------------------------------------------------------------


def test_a_failing_task_is_retried_until_it_succeeds(backend: Backend) -> None:
    handle = backend.cluster.dispatch("retry:1", tasks.fail_until.s(3))
    assert handle.result(timeout=WAIT_S) == 3
    record = backend.record(handle.task_id)
    assert record is not None and record.state == "SUCCEEDED" and record.attempt == 3
    assert record.error_type == "Flaky" and record.first_failure_at is not None


def test_retry_with_a_countdown_runs_again(backend: Backend) -> None:
    handle = backend.cluster.dispatch("retry:2", tasks.retry_later.s(0.3))
    assert handle.result(timeout=WAIT_S) == 2
    record = backend.record(handle.task_id)
    assert record is not None and record.error_type == "Retry"
    assert record.error_message == "not yet"


@pytest.mark.parametrize(("task", "error_type", "attempts", "reason"), [
    (tasks.always_fail.s("kaput"), "Flaky", tasks.FAST.max_retries + 1, "retries exhausted"),
    (tasks.always_fail.s("kaput").with_options(max_retries=0), "Flaky", 1, "retries exhausted"),
    (tasks.permanent.s("no way"), PermanentError.__name__, 1, "permanent"),
    (tasks.add.s(1, 2, 3), "InvalidArguments", 1, "permanent"),
    (tasks.not_json.s(), "ResultNotSerializable", 1, "permanent"),
], ids=["exhausted", "task-max-retries", "permanent", "arguments-do-not-bind", "result-not-json"])
def test_a_task_that_cannot_succeed_ends_in_the_dlq(
    backend: Backend, task: Task, error_type: str, attempts: int, reason: str
) -> None:
    handle = backend.cluster.dispatch("dead:1", task)
    with pytest.raises(TaskFailed) as caught:
        handle.result(timeout=WAIT_S)
    assert (caught.value.error_type, caught.value.attempts) == (error_type, attempts)
    assert caught.value.task_id == handle.task_id
    assert handle.status() == "FAILED"
    assert backend.in_dlq(handle.task_id)
    record = backend.record(handle.task_id)
    assert record is not None
    assert (record.state, record.attempt, record.dead_reason) == ("FAILED", attempts, reason)
    assert record.node == backend.cluster.owner("dead:1")


def test_the_traceback_of_a_failure_is_kept(backend: Backend) -> None:
    handle = backend.cluster.dispatch("dead:2", tasks.always_fail.s("kaput").with_options(
        max_retries=0))
    with pytest.raises(TaskFailed) as caught:
        handle.result(timeout=WAIT_S)
    assert caught.value.message == "kaput"
    assert "raise Flaky(message)" in caught.value.traceback


def test_a_replayed_dead_letter_runs_again_under_its_id(backend: Backend, tmp_path: Path) -> None:
    closed = tmp_path / "gate"
    closed.touch()
    handle = backend.cluster.dispatch("replay:1", tasks.gate.s(str(closed)))
    with pytest.raises(TaskFailed):
        handle.result(timeout=WAIT_S)
    closed.unlink()
    backend.replay(handle.task_id)

    def succeeded() -> TaskRecord | None:
        record = backend.record(handle.task_id)
        return record if record is not None and record.state == "SUCCEEDED" else None

    record = eventually(succeeded, timeout=WAIT_S, what="the replay to succeed")
    assert (record.result, record.attempt, record.replays) == (b'"open"', 1, 1)
    assert not backend.in_dlq(handle.task_id)


# -- idempotency and order ------------------------------------------------------------


def test_the_same_idempotency_key_returns_the_first_task(backend: Backend, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    task = tasks.log.s(str(runs), "once").with_options(idempotency_key="order-17")
    first = backend.cluster.dispatch("order:17", task)
    assert first.result(timeout=WAIT_S) == "once"
    second = backend.cluster.dispatch("order:17", task)
    assert second.task_id == first.task_id
    assert second.result(timeout=WAIT_S) == "once"
    assert runs.read_text() == "once\n"
    other = backend.cluster.dispatch("order:17", tasks.add.s(1, 1).with_options(
        idempotency_key="order-17"))  # keys are scoped by task name
    assert other.task_id != first.task_id and other.result(timeout=WAIT_S) == 2


@pytest.mark.parametrize("many", [True, False], ids=["dispatch_many", "dispatch"])
def test_ordered_tasks_of_a_key_run_in_dispatch_order(
    backend: Backend, tmp_path: Path, many: bool
) -> None:
    runs = tmp_path / "runs"
    items = [("cart:9", tasks.log.s(str(runs), str(i), 0.005).with_options(ordered=True))
             for i in range(20)]
    if many:
        handles = backend.cluster.dispatch_many(items)
    else:
        handles = [backend.cluster.dispatch(key, task) for key, task in items]
    assert [h.result(timeout=WAIT_S) for h in handles] == [str(i) for i in range(20)]
    assert runs.read_text().split() == [str(i) for i in range(20)]


# -- delayed tasks ------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["countdown", "eta"])
def test_a_delayed_task_is_scheduled_until_its_time_then_runs(backend: Backend, how: str) -> None:
    cluster = backend.cluster
    delay = {"countdown": 0.5} if how == "countdown" else {
        "eta": datetime.fromtimestamp(cluster_now(backend) + 0.5, UTC)}
    handle = cluster.dispatch("delay:1", tasks.where.s(), **delay)  # type: ignore[arg-type]
    handle.accepted(timeout=WAIT_S)
    assert handle.status() == "SCHEDULED"
    record = backend.record(handle.task_id)
    assert record is not None and record.state == "SCHEDULED" and record.eta is not None
    seen = handle.result(timeout=WAIT_S)
    assert seen["eta"] == pytest.approx(record.eta) and seen["attempt"] == 1
    assert seen["node"] == cluster.owner("delay:1")
    assert handle.status() == "SUCCEEDED"


def test_an_eta_in_the_past_runs_at_once(backend: Backend) -> None:
    handle = backend.cluster.dispatch("delay:2", tasks.add.s(2, 3),
                                      eta=datetime.now(UTC) - timedelta(hours=1))
    assert handle.result(timeout=WAIT_S) == 5


@pytest.mark.parametrize("delay", [
    {"eta": datetime(2030, 1, 1, 12, 0)},
    {"countdown": -1},
    {"countdown": math.nan},
    {"countdown": math.inf},
    {"countdown": "5"},
    {"countdown": 400 * 86400},
    {"countdown": 5, "eta": datetime.now(UTC)},
    {"eta": "2030-01-01T12:00:00Z"},
    {"eta": datetime.now(UTC) + timedelta(days=400)},
], ids=["naive-eta", "negative", "nan", "inf", "text", "too-far", "both", "eta-text",
        "eta-too-far"])
def test_bad_delays_are_refused_typed(backend: Backend, delay: dict[str, object]) -> None:
    with pytest.raises(InvalidTask):
        backend.cluster.dispatch("delay:3", tasks.add.s(1, 1), **delay)  # type: ignore[arg-type]
    assert backend.cluster.dispatch("delay:3", tasks.add.s(1, 1)).result(timeout=WAIT_S) == 2


# -- cancelling -----------------------------------------------------------------------------


def test_a_cancelled_delayed_task_never_runs(backend: Backend, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    cancelled = backend.cluster.dispatch("cancel:1", tasks.log.s(str(runs), "cancelled"),
                                         countdown=0.5)
    assert cancelled.cancel() == "SCHEDULED"
    assert cancelled.status() == "CANCELLED"
    with pytest.raises(TaskCancelled) as caught:
        cancelled.result(timeout=WAIT_S)
    assert caught.value.task_id == cancelled.task_id
    # A later task of the same file, due after the cancelled one was: only it runs.
    later = backend.cluster.dispatch("cancel:1", tasks.log.s(str(runs), "later"), countdown=1.0)
    assert later.result(timeout=WAIT_S) == "later"
    assert runs.read_text() == "later\n"
    record = backend.record(cancelled.task_id)
    assert record is not None and record.state == "CANCELLED" and record.finished_at


def test_cancelling_a_finished_task_says_so(backend: Backend) -> None:
    done = backend.cluster.dispatch("cancel:2", tasks.add.s(1, 1))
    assert done.result(timeout=WAIT_S) == 2
    with pytest.raises(TaskAlreadyFinished) as caught:
        backend.cluster.cancel(done.task_id)
    assert caught.value.state == "SUCCEEDED"
    waiting = backend.cluster.dispatch("cancel:2", tasks.add.s(1, 1), countdown=60)
    assert backend.cluster.cancel(waiting.accepted()) == "SCHEDULED"
    with pytest.raises(TaskAlreadyFinished) as again:
        waiting.cancel()
    assert again.value.state == "CANCELLED"
    assert backend.record(done.task_id).state == "SUCCEEDED"  # type: ignore[union-attr]


def test_cancelling_an_unknown_task_says_so(backend: Backend) -> None:
    with pytest.raises(TaskNotFound):
        backend.cluster.cancel("f" * 32)


def cluster_now(backend: Backend) -> float:
    """The backend's clock: the in-memory cluster's own, the wall clock for a real one."""
    return backend.cluster.now if isinstance(backend, InMemoryBackend) else \
        datetime.now(UTC).timestamp()
