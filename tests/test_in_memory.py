"""What only the in-memory cluster has: its modes, the test's clock (and delayed tasks
on it), expiry, nesting, cancelling a run, its settings and the plugin's fixture. What
it shares with a real cluster is in ``test_conformance.py``."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from ringpool import (
    ConfigError,
    ResultTimeout,
    Retry,
    RetryPolicy,
    Task,
    TaskAlreadyFinished,
    TaskCancelled,
    TaskFailed,
    TaskNotFound,
    UnknownTask,
    current_task,
    task,
)
from ringpool.core.ring import Member, Ring
from ringpool.testing import AsyncInMemoryCluster, InMemoryCluster
from tests import tasks_conformance as tasks

TASKS = ["tests.tasks_conformance"]
SLOW = RetryPolicy(max_retries=2, base_s=10.0, factor=2.0, jitter=False)  # waits 10 s, then 20 s
ran: list[str] = []  # names of runs, in the order they ran
current: list[InMemoryCluster | AsyncInMemoryCluster] = []  # the cluster the tasks below use


@task("memory.slow_fail_until", timeout=5.0, retry=SLOW)
def slow_fail_until(succeeding_attempt: int) -> int:
    ctx = current_task()
    assert ctx is not None
    if ctx.attempt < succeeding_attempt:
        raise ValueError(f"attempt {ctx.attempt}")
    return ctx.attempt


@task("memory.wait_then_log", timeout=5.0, retry=SLOW)
def wait_then_log(name: str, countdown_s: float) -> str:
    ctx = current_task()
    assert ctx is not None
    if ctx.attempt == 1:
        raise Retry(countdown=countdown_s)
    ran.append(name)
    return name


@task("memory.parent", timeout=5.0)
def parent(wait: bool) -> object:
    cluster = current[0]
    assert isinstance(cluster, InMemoryCluster)
    child = cluster.dispatch("child", tasks.add.s(20, 1))
    return child.result(timeout=5) if wait else child.task_id


@task("memory.async_parent", timeout=5.0)
async def async_parent() -> int:
    cluster = current[0]
    assert isinstance(cluster, AsyncInMemoryCluster)
    child = await cluster.dispatch("child", tasks.async_add.s(40, 2))
    return await child.result(timeout=5)  # type: ignore[no-any-return]


@pytest.fixture
def cluster() -> Iterator[InMemoryCluster]:
    with InMemoryCluster(TASKS) as memory:
        yield memory


# -- modes ------------------------------------------------------------------------------


def test_eager_mode_runs_a_task_before_dispatch_returns(cluster: InMemoryCluster) -> None:
    assert cluster.mode == "eager"
    handle = cluster.dispatch("k", tasks.add.s(1, 2))
    assert handle.status() == "SUCCEEDED"
    record = cluster.record(handle.task_id)
    assert record is not None and record.result == b"3" and record.completions == 1


def test_queued_mode_runs_on_run_pending() -> None:
    with InMemoryCluster(TASKS, mode="queued") as queued:
        handles = queued.dispatch_many([(f"k{i}", tasks.add.s(i, 1)) for i in range(3)])
        assert [h.status() for h in handles] == ["QUEUED"] * 3
        assert queued.run_pending() == 3
        assert [h.status() for h in handles] == ["SUCCEEDED"] * 3
        assert queued.run_pending() == 0


def test_queued_mode_runs_on_advance_and_on_waiting_for_a_result() -> None:
    with InMemoryCluster(TASKS, mode="queued") as queued:
        first = queued.dispatch("k", tasks.add.s(1, 1))
        assert queued.advance(0) == 1 and first.status() == "SUCCEEDED"
        second = queued.dispatch("k", tasks.add.s(2, 2))
        assert second.status() == "QUEUED"
        assert second.result(timeout=0) == 4  # waiting runs what is due


def test_a_refused_dispatch_many_accepts_nothing() -> None:
    with InMemoryCluster(TASKS, mode="queued") as queued:
        with pytest.raises(UnknownTask):
            queued.dispatch_many([("k", tasks.add.s(1, 1)), ("k", Task("no.such.task"))])
        assert queued.run_pending() == 0


# -- the clock ------------------------------------------------------------------------


def test_a_retry_waits_for_the_clock_with_the_tasks_backoff(cluster: InMemoryCluster) -> None:
    start = cluster.now
    handle = cluster.dispatch("k", slow_fail_until.s(3))
    assert handle.status() == "RETRY_SCHEDULED"
    assert cluster.advance(9.9) == 0 and handle.status() == "RETRY_SCHEDULED"
    assert cluster.advance(0.1) == 1  # attempt 2, due 10 s after the first failure, fails
    record = cluster.record(handle.task_id)
    assert record is not None and (record.state, record.attempt) == ("RETRY_SCHEDULED", 2)
    assert cluster.advance(20) == 1
    record = cluster.record(handle.task_id)
    assert record is not None and (record.state, record.attempt) == ("SUCCEEDED", 3)
    assert (record.first_failure_at, record.last_failure_at) == (start, start + 10)
    assert cluster.now == start + 30


def test_advance_runs_what_falls_due_in_time_order(cluster: InMemoryCluster) -> None:
    ran.clear()
    cluster.dispatch_many([("a", wait_then_log.s("late", 5.0)), ("b", wait_then_log.s("early", 2.0))])
    assert ran == []
    assert cluster.advance(10) == 2
    assert ran == ["early", "late"]


def test_waiting_for_a_result_lets_cluster_time_pass(cluster: InMemoryCluster) -> None:
    start = cluster.now
    handle = cluster.dispatch("k", slow_fail_until.s(3))
    assert handle.result(timeout=60) == 3
    assert cluster.now == start + 30  # the two backoffs, and no more


def test_a_wait_shorter_than_the_backoff_times_out_typed(cluster: InMemoryCluster) -> None:
    start = cluster.now
    handle = cluster.dispatch("k", slow_fail_until.s(2))
    with pytest.raises(ResultTimeout):
        handle.result(timeout=5)
    with pytest.raises(TimeoutError):
        handle.result(timeout=0)
    assert cluster.now == start + 5 and handle.status() == "RETRY_SCHEDULED"
    assert handle.result() == 2


@pytest.mark.parametrize("seconds", [-1, math.nan, math.inf, "1", True, None])
def test_advance_refuses_what_is_not_a_duration(cluster: InMemoryCluster, seconds: object) -> None:
    handle = cluster.dispatch("k", slow_fail_until.s(2))
    start = cluster.now
    with pytest.raises(ValueError, match="seconds"):
        cluster.advance(seconds)  # type: ignore[arg-type]
    assert cluster.now == start and handle.status() == "RETRY_SCHEDULED"


def test_results_expire_after_their_ttl_and_fingerprints_after_theirs() -> None:
    with InMemoryCluster(TASKS, result_ttl_s=60, fingerprint_ttl_s=120) as cluster:
        keyed = tasks.add.s(1, 1).with_options(idempotency_key="once")
        first = cluster.dispatch("k", keyed)
        dead = cluster.dispatch("k", tasks.permanent.s("no"))
        cluster.advance(61)
        assert first.status() == "UNKNOWN"
        with pytest.raises(TaskNotFound):
            first.result()
        assert cluster.dispatch("k", keyed).task_id == first.task_id  # still fingerprinted
        cluster.advance(60)
        assert cluster.dispatch("k", keyed).task_id != first.task_id
        assert [r.task_id for r in cluster.dlq()] == [dead.task_id]  # dead letters stay


# -- the DLQ ----------------------------------------------------------------------------


def test_dlq_replay_and_purge_take_ids_or_everything(cluster: InMemoryCluster) -> None:
    dead = [cluster.dispatch("k", tasks.permanent.s(str(i))) for i in range(3)]
    assert [r.task_id for r in cluster.dlq()] == [h.task_id for h in dead]
    assert cluster.dlq_replay(dead[0].task_id, "not-in-the-dlq") == 1
    assert dead[0].status() == "FAILED"  # replayed, and failed again: back at the end
    assert [r.task_id for r in cluster.dlq()] == [dead[1].task_id, dead[2].task_id, dead[0].task_id]
    assert cluster.record(dead[0].task_id).replays == 1  # type: ignore[union-attr]
    assert cluster.dlq_replay() == 3
    assert cluster.dlq_purge(dead[1].task_id, "not-in-the-dlq") == 1
    assert dead[1].status() == "UNKNOWN"
    assert cluster.dlq_purge() == 2 and cluster.dlq() == []


def test_a_replay_in_queued_mode_waits_for_its_run() -> None:
    with InMemoryCluster(TASKS, mode="queued") as queued:
        handle = queued.dispatch("k", tasks.permanent.s("no"))
        queued.run_pending()
        assert queued.dlq_replay() == 1 and handle.status() == "QUEUED"
        assert queued.run_pending() == 1 and handle.status() == "FAILED"


def test_records_handed_out_are_copies(cluster: InMemoryCluster) -> None:
    handle = cluster.dispatch("k", tasks.permanent.s("no"))
    record = cluster.record(handle.task_id)
    assert record is not None
    record.state = "SUCCEEDED"
    cluster.dlq()[0].envelope.attempt = 99
    assert handle.status() == "FAILED"
    with pytest.raises(TaskFailed) as caught:
        handle.result()
    assert caught.value.attempts == 1


# -- tasks that dispatch tasks ------------------------------------------------------------


@pytest.mark.parametrize("wait", [True, False], ids=["waits-for-it", "fire-and-forget"])
def test_a_task_may_dispatch_another(cluster: InMemoryCluster, wait: bool) -> None:
    current[:] = [cluster]
    outcome = cluster.dispatch("parent", parent.s(wait)).result()
    if wait:
        assert outcome == 21
    else:  # queued while the parent ran, run as soon as it finished
        assert cluster.handle(outcome).status() == "SUCCEEDED"


async def test_the_async_twin_has_the_same_api() -> None:
    async with AsyncInMemoryCluster(TASKS, nodes=["n1", "n2"]) as cluster:
        current[:] = [cluster]
        handle = await cluster.dispatch("user:1", async_parent.s())
        assert await handle.result() == 42 and await handle.status() == "SUCCEEDED"
        assert await handle.accepted() == handle.task_id
        await cluster.flush()
        retried = await cluster.dispatch("user:2", slow_fail_until.s(2))
        assert await cluster.advance(10) == 1 and await retried.status() == "SUCCEEDED"
        failed = (await cluster.dispatch_many([("user:3", tasks.permanent.s("no"))]))[0]
        assert [r.task_id for r in await cluster.dlq()] == [failed.task_id]
        assert await cluster.dlq_purge() == 1 and await cluster.record(failed.task_id) is None
        assert cluster.owner("user:1") in ("n1", "n2")
    async with AsyncInMemoryCluster(TASKS, mode="queued") as queued:
        handle = await queued.dispatch("k", tasks.add.s(1, 1))
        assert await handle.status() == "QUEUED"
        assert await queued.run_pending() == 1 and await handle.result() == 2


# -- settings -------------------------------------------------------------------------


def test_nodes_are_named_as_a_local_cluster_names_them(cluster: InMemoryCluster) -> None:
    assert cluster.ring.members.keys() == {"node-0", "node-1", "node-2"}
    expected = Ring({n: Member(n, addr="") for n in ("node-0", "node-1", "node-2")})
    for key in ("a", "b", "user:42"):
        owner = cluster.owner(key)
        assert owner == expected.owner(key)
        handle = cluster.dispatch(key, tasks.where.s())
        assert handle.result()["node"] == owner
        assert cluster.record(handle.task_id).node == owner  # type: ignore[union-attr]


@pytest.mark.parametrize("options", [
    {"mode": "lazy"}, {"nodes": 0}, {"nodes": []}, {"nodes": ["a", "a"]}, {"nodes": "abc"},
    {"nodes": [""]}, {"nodes": True}, {"result_ttl_s": 0}, {"fingerprint_ttl_s": -1},
], ids=["mode", "no-nodes", "empty-list", "twice", "string", "empty-name", "bool", "result-ttl",
        "fingerprint-ttl"])
def test_bad_settings_are_refused_typed(options: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        InMemoryCluster(TASKS, **options)


def test_task_modules_that_do_not_import_are_refused_typed() -> None:
    with pytest.raises(ConfigError, match="no_such_module"):
        InMemoryCluster(["tests.no_such_module"])
    with pytest.raises(ConfigError, match="list of module names"):
        InMemoryCluster("tests.tasks_conformance")


def test_accepted_flush_and_close_return(cluster: InMemoryCluster) -> None:
    handle = cluster.dispatch("k", Task("conformance.add", args=(1,)))
    assert handle.accepted(timeout=1) == handle.task_id and cluster.flush(timeout=1) is None
    assert repr(handle) == f"<TaskHandle {handle.task_id} key='k'>"
    cluster.close()
    cluster.close()


# -- the plugin's fixture ---------------------------------------------------------------


@pytest.mark.ringpool(mode="queued", tasks=TASKS, nodes=["solo"])
def test_the_plugin_fixture_takes_the_marker_options(ringpool_cluster: InMemoryCluster) -> None:
    handle = ringpool_cluster.dispatch("k", tasks.where.s())
    assert handle.status() == "QUEUED"
    assert ringpool_cluster.run_pending() == 1
    assert handle.result()["node"] == "solo"


# -- delays and cancels ----------------------------------------------------------------------


@task("memory.log", timeout=5.0)
def log_run(name: str) -> str:
    ran.append(name)
    return name


def test_advance_fires_delayed_tasks_at_their_time_in_order(cluster: InMemoryCluster) -> None:
    ran.clear()
    late = cluster.dispatch("a", log_run.s("late"), countdown=30)
    early = cluster.dispatch("b", log_run.s("early"), countdown=10)
    assert (late.status(), early.status()) == ("SCHEDULED", "SCHEDULED")
    assert cluster.advance(9.9) == 0 and ran == []
    assert cluster.advance(0.1) == 1 and ran == ["early"]
    record = cluster.record(early.task_id)
    assert record is not None and record.started_at == record.eta == cluster.now
    assert cluster.advance(20) == 1 and ran == ["early", "late"]


def test_a_cancelled_delayed_task_is_skipped_by_advance(cluster: InMemoryCluster) -> None:
    ran.clear()
    handle = cluster.dispatch("a", log_run.s("never"), countdown=5)
    assert cluster.cancel(handle.task_id) == "SCHEDULED"
    assert cluster.advance(60) == 0 and ran == []
    with pytest.raises(TaskCancelled):
        handle.result(timeout=1)


async def test_the_async_twin_cancels_a_running_task(tmp_path: Path) -> None:
    async with AsyncInMemoryCluster(TASKS, mode="queued") as cluster:
        path = tmp_path / "run"
        handle = await cluster.dispatch("a", tasks.linger_async.s(str(path), 60))
        running = asyncio.ensure_future(cluster.run_pending())
        while await handle.status() != "RUNNING":
            await asyncio.sleep(0.01)
        assert await handle.cancel() == "RUNNING"
        assert await running == 1
        assert (tmp_path / "run.cancelled").exists()
        with pytest.raises(TaskCancelled):
            await handle.result(timeout=1)
        with pytest.raises(TaskAlreadyFinished):
            await handle.cancel()
