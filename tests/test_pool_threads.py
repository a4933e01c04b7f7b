"""The io tier through ``Pools``: growth, shrink, priority, overload, timeouts, release."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from test_pool_support import make_job

from ringpool.errors import ConfigError, InvalidTask
from ringpool.pool import FixedPolicy, Job, PoolClosed, PoolOverloaded, Pools, PoolSettings
from ringpool.pool.job import Ticket
from ringpool.pool.threads import ThreadTier
from ringpool.task import current_task
from tests.helpers import eventually_async

PoolFactory = Callable[..., Pools]


@pytest.fixture
async def make_pools() -> AsyncIterator[PoolFactory]:
    made: list[Pools] = []

    def make(**settings: Any) -> Pools:
        pools = Pools(PoolSettings(**settings), policy=FixedPolicy(settings.get("min_workers", 0)))
        made.append(pools)
        return pools

    yield make
    for pools in made:
        await pools.release(5.0)


def io_stats(pools: Pools) -> dict[str, float]:
    stats: dict[str, float] = pools.stats()["io"]
    return stats


async def test_workers_grow_under_a_burst_and_shrink_back_after_idle(
    make_pools: PoolFactory,
) -> None:
    pools = make_pools(min_workers=1, max_workers=8, idle_timeout_s=0.2)
    gate = threading.Event()
    futures = [pools.submit(make_job(gate.wait, 10)) for _ in range(8)]
    await eventually_async(lambda: io_stats(pools)["running"] == 8)
    assert io_stats(pools)["threads"] == 8
    gate.set()
    outcomes = await asyncio.gather(*futures)
    assert all(o.ok for o in outcomes)
    await eventually_async(lambda: io_stats(pools)["threads"] == 1)
    stats = io_stats(pools)
    assert stats["expired"] == 7
    assert stats["idle"] == 1
    assert stats["completed"] == 8


async def test_priority_order_higher_first_fifo_within_a_priority(
    make_pools: PoolFactory,
) -> None:
    pools = make_pools(min_workers=1, max_workers=1)
    gate = threading.Event()
    blocker = pools.submit(make_job(gate.wait, 10))
    await eventually_async(lambda: io_stats(pools)["running"] == 1)
    ran: list[str] = []
    labels = [("a", 0), ("b", 5), ("c", 1), ("d", 5), ("e", 9), ("f", 0)]
    futures = [
        pools.submit(make_job(ran.append, label, priority=priority)) for label, priority in labels
    ]
    gate.set()
    await asyncio.gather(blocker, *futures)
    assert ran == ["e", "b", "d", "c", "a", "f"]


async def test_overload_raises_the_typed_error_at_once_and_changes_nothing(
    make_pools: PoolFactory,
) -> None:
    pools = make_pools(min_workers=0, max_workers=1, max_queue=2)
    gate = threading.Event()
    accepted = [pools.submit(make_job(gate.wait, 10)) for _ in range(3)]
    await eventually_async(lambda: io_stats(pools)["running"] == 1)
    before = io_stats(pools)
    with pytest.raises(PoolOverloaded) as refused:
        pools.submit(make_job(gate.wait, 10))
    assert refused.value.retry_after_s > 0
    after = io_stats(pools)
    assert after["queued"] == before["queued"] == 2
    assert after["rejected"] == 1
    assert after["submitted"] == before["submitted"]
    gate.set()
    assert all(o.ok for o in await asyncio.gather(*accepted))


async def test_a_timed_out_thread_is_abandoned_and_replaced_and_its_late_result_dropped(
    make_pools: PoolFactory,
) -> None:
    pools = make_pools(min_workers=0, max_workers=1)
    gate = threading.Event()
    seen_cancel = threading.Event()

    def overrun() -> str:
        ctx = current_task()
        assert ctx is not None
        ctx.cancelled.wait(10)
        seen_cancel.set()
        gate.wait(10)  # ignores the cancellation for a while: a badly behaved task
        return "late"

    outcome = await pools.submit(make_job(overrun, timeout_s=0.2))
    assert outcome.timed_out and not outcome.ok
    assert outcome.error_type == "TaskTimeout"
    assert seen_cancel.wait(5)
    stats = io_stats(pools)
    assert (stats["running"], stats["abandoned"], stats["timed_out"]) == (0, 1, 1)
    # The abandoned thread no longer counts against max_workers: a fresh one runs the next.
    follow = pools.submit(make_job(lambda: "next"))
    assert (await asyncio.wait_for(follow, 5)).value == "next"
    assert not gate.is_set()
    gate.set()
    await eventually_async(lambda: io_stats(pools)["abandoned"] == 0, 5,
                           "the abandoned thread to return and leave")
    stats = io_stats(pools)
    assert (stats["completed"], stats["failed"], stats["threads"]) == (1, 0, 1)


async def test_forty_hung_tasks_do_not_wedge_the_pool_and_the_ceiling_holds(
    make_pools: PoolFactory,
) -> None:
    """The reproduced wedge: io tasks hanging past their timeout took every worker."""
    pools = make_pools(min_workers=0, max_workers=4, max_abandoned=50)
    hang = threading.Event()
    try:
        hung = [pools.submit(make_job(hang.wait, 30, timeout_s=0.2)) for _ in range(40)]
        assert all(o.timed_out for o in await asyncio.wait_for(asyncio.gather(*hung), 30))
        assert (await asyncio.wait_for(pools.submit(make_job(lambda: 2)), 5)).value == 2
        stats = io_stats(pools)
        assert stats["abandoned"] == 40 and not pools.wedged
    finally:
        hang.set()
    await eventually_async(lambda: io_stats(pools)["abandoned"] == 0, 10)


async def test_past_max_abandoned_the_pool_is_wedged_and_stops_replacing(
    make_pools: PoolFactory,
) -> None:
    pools = make_pools(min_workers=0, max_workers=2, max_abandoned=3)
    hang = threading.Event()
    try:
        for _ in range(3):
            assert (await pools.submit(make_job(hang.wait, 30, timeout_s=0.1))).timed_out
        assert pools.wedged
        # Two more hang: replaced no further than max_workers + max_abandoned threads.
        late = [pools.submit(make_job(hang.wait, 30, timeout_s=0.1)) for _ in range(2)]
        await asyncio.gather(*late)
        stats = io_stats(pools)
        assert stats["abandoned"] == 5 and stats["threads"] == 0
        waiting = pools.submit(make_job(lambda: "after"))
        await asyncio.sleep(0.3)
        assert not waiting.done() and io_stats(pools)["queued"] == 1
    finally:
        hang.set()
    assert (await asyncio.wait_for(waiting, 10)).value == "after"
    await eventually_async(lambda: not pools.wedged and io_stats(pools)["abandoned"] == 0, 10)


async def test_an_ordered_key_waits_for_its_abandoned_run_to_really_end(
    make_pools: PoolFactory,
) -> None:
    pools = make_pools(min_workers=0, max_workers=4)
    release = threading.Event()
    log: list[str] = []

    def first() -> None:
        log.append("first starts")
        release.wait(10)
        log.append("first ends")

    def second() -> str:
        log.append("second starts")
        return "second"

    hung = pools.submit(make_job(first, timeout_s=0.2, key="k", ordered=True))
    follow = pools.submit(make_job(second, key="k", ordered=True))
    other = pools.submit(make_job(lambda: "other key", key="other", ordered=True))
    assert (await hung).timed_out
    assert (await other).value == "other key"  # other keys never wait on it
    await asyncio.sleep(0.3)
    assert not follow.done() and log == ["first starts"]
    release.set()
    assert (await asyncio.wait_for(follow, 5)).value == "second"
    assert log == ["first starts", "first ends", "second starts"]


async def test_a_cancelled_run_is_abandoned_like_a_timed_out_one(
    make_pools: PoolFactory,
) -> None:
    pools = make_pools(min_workers=0, max_workers=1)
    release = threading.Event()
    started = threading.Event()
    log: list[str] = []

    def first() -> str:
        started.set()
        release.wait(10)  # ignores ctx.cancelled: a thread cannot be stopped
        log.append("first ends")
        return "dropped"

    def second() -> str:
        log.append("second starts")
        return "second"

    job = make_job(first, key="k", ordered=True)
    running = pools.submit(job)
    follow = pools.submit(make_job(second, key="k", ordered=True))
    assert await asyncio.to_thread(started.wait, 5)
    assert pools.cancel(job)
    outcome = await asyncio.wait_for(running, 5)
    assert outcome.cancelled and not outcome.ok and job.context.cancelled.is_set()
    stats = io_stats(pools)
    assert (stats["running"], stats["abandoned"]) == (0, 1)
    # A fresh thread takes its place, but its key's next job waits for the thread's end.
    assert (await asyncio.wait_for(pools.submit(make_job(lambda: "other")), 5)).value == "other"
    await asyncio.sleep(0.3)
    assert not follow.done() and log == []
    release.set()
    assert (await asyncio.wait_for(follow, 5)).value == "second"
    assert log == ["first ends", "second starts"]
    assert not pools.cancel(job)  # over: nothing left to cancel


async def test_an_exception_never_kills_the_worker(make_pools: PoolFactory) -> None:
    panics: list[tuple[str, BaseException]] = []
    pools = Pools(PoolSettings(min_workers=0, max_workers=1), policy=FixedPolicy(0),
                  panic_handler=lambda job, exc: panics.append((job.task_id, exc)))

    def boom() -> None:
        raise ValueError("bad value")

    try:
        job = make_job(boom)
        failed = await pools.submit(job)
        assert not failed.ok
        assert failed.error_type == "ValueError"
        assert failed.error_message == "bad value"
        assert "ValueError: bad value" in failed.traceback
        assert isinstance(failed.exception, ValueError)
        assert [task_id for task_id, _ in panics] == [job.task_id]
        assert (await pools.submit(make_job(lambda: 7))).value == 7
        stats = io_stats(pools)
        assert (stats["spawned"], stats["failed"], stats["completed"]) == (1, 1, 1)
    finally:
        await pools.release(5.0)


async def test_release_finishes_every_queued_task(make_pools: PoolFactory) -> None:
    pools = make_pools(min_workers=0, max_workers=2)
    done: list[int] = []
    pause = threading.Event()
    futures = [pools.submit(make_job(lambda i=i: (pause.wait(0.01), done.append(i)))) for i in
               range(20)]
    assert await pools.release(10.0) == []
    assert sorted(done) == list(range(20))
    assert all(f.done() and f.result().ok for f in futures)
    with pytest.raises(PoolClosed):
        pools.submit(make_job(lambda: None))


async def test_release_returns_the_jobs_it_could_not_finish(make_pools: PoolFactory) -> None:
    pools = make_pools(min_workers=0, max_workers=1)
    gate = threading.Event()
    jobs = [make_job(gate.wait, 10) for _ in range(4)]
    futures = [pools.submit(job) for job in jobs]
    await eventually_async(lambda: io_stats(pools)["running"] == 1)
    left = await pools.release(0.1)
    assert {j.task_id for j in left} == {j.task_id for j in jobs}
    assert all(f.cancelled() for f in futures)
    assert all(j.context.cancelled.is_set() for j in jobs)
    gate.set()


async def test_tune_applies_live_and_invalid_values_change_nothing(
    make_pools: PoolFactory,
) -> None:
    pools = make_pools(min_workers=0, max_workers=4, idle_timeout_s=30)
    gate = threading.Event()
    futures = [pools.submit(make_job(gate.wait, 10)) for _ in range(4)]
    await eventually_async(lambda: io_stats(pools)["running"] == 4)
    for bad in [(-1, 4), (3, 2), (0, 0), ("1", 4), (True, 4), (1, 2.5)]:
        with pytest.raises(ConfigError):
            pools.tune(*bad)  # type: ignore[arg-type]
        stats = io_stats(pools)
        assert (stats["min_workers"], stats["max_workers"], stats["threads"]) == (0, 4, 4)
    pools.tune(1, 2)
    gate.set()
    await asyncio.gather(*futures)
    # Busy workers above the new cap exit as they finish, without waiting for idle expiry.
    await eventually_async(lambda: io_stats(pools)["threads"] == 2)
    assert (io_stats(pools)["min_workers"], io_stats(pools)["max_workers"]) == (1, 2)


async def test_bad_jobs_and_settings_are_refused_with_typed_errors(
    make_pools: PoolFactory,
) -> None:
    pools = make_pools()
    for timeout_s in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(InvalidTask):
            pools.submit(make_job(lambda: None, timeout_s=timeout_s))
    assert pools.stats()["inflight"] == 0
    for bad in [dict(min_workers=5, max_workers=1), dict(max_queue=-1),
                dict(idle_timeout_s=0), dict(async_concurrency=0), dict(max_abandoned=0)]:
        with pytest.raises(ConfigError):
            PoolSettings(**bad)  # type: ignore[arg-type]


async def test_submit_wait_waits_for_room_until_its_deadline(make_pools: PoolFactory) -> None:
    pools = make_pools(min_workers=0, max_workers=1, max_queue=0)
    gate = threading.Event()
    blocker = pools.submit(make_job(gate.wait, 10))
    with pytest.raises(PoolOverloaded):
        await pools.submit_wait(make_job(lambda: None), timeout_s=0.05)
    waiting = asyncio.ensure_future(pools.submit_wait(make_job(lambda: "in"), 10))
    await eventually_async(lambda: pools.stats()["io"]["rejected"] >= 2)
    gate.set()
    assert (await (await waiting)).value == "in"
    assert (await blocker).ok


def test_blocking_submit_on_the_tier_takes_the_freed_slot() -> None:
    tier = ThreadTier(0, 1, 1, 1.0)
    gate = threading.Event()
    results: list[Any] = []

    def collect(ticket: Ticket, outcome: Any) -> None:
        results.append(outcome.value)

    tier.submit(Ticket(make_job(gate.wait, 10), collect))
    tier.submit(Ticket(make_job(lambda: 1), collect))
    with pytest.raises(PoolOverloaded):
        tier.submit(Ticket(make_job(lambda: 2), collect))
    threading.Timer(0.05, gate.set).start()
    # The worker takes the queued job as the blocker ends, which frees the queue slot.
    tier.submit(Ticket(make_job(lambda: 2), collect), block_s=10.0)
    assert tier.release(10.0) == []
    assert results == [True, 1, 2]
    assert tier.stats()["rejected"] == 1


async def test_current_task_and_middleware_order(make_pools: PoolFactory) -> None:
    pools = make_pools()
    trail: list[str] = []

    def outer(ctx: Any, call_next: Callable[[], Any]) -> Any:
        trail.append(f"outer>{ctx.key}")
        try:
            return call_next()
        finally:
            trail.append("outer<")

    def inner(ctx: Any, call_next: Callable[[], Any]) -> Any:
        trail.append("inner>")
        value = call_next()
        trail.append("inner<")
        return value * 10

    pools.use(outer)
    pools.use(inner)

    def task() -> int:
        ctx = current_task()
        trail.append(f"task:{ctx.task_id == job.task_id if ctx else None}")
        return 4

    job: Job = make_job(task, key="user:1")
    assert (await pools.submit(job)).value == 40
    assert trail == ["outer>user:1", "inner>", "task:True", "inner<", "outer<"]


async def test_reconfigure_changes_idle_expiry_and_weights_live_and_refuses_bad_values() -> None:
    pools = Pools(PoolSettings(min_workers=0, max_workers=4, idle_timeout_s=30.0))
    try:
        pools.reconfigure(idle_timeout_s=0.05, weights=(0.5, 0.3, 0.2))
        assert pools.settings.idle_timeout_s == 0.05
        assert pools.settings.autoscaler.arrival_weight == 0.5
        # A worker started now expires at the new, short idle timeout.
        assert (await pools.submit(make_job(lambda: 1))).ok
        await eventually_async(lambda: pools.stats()["io"]["threads"] == 0, 10)
        for bad in ({"idle_timeout_s": 0.0}, {"weights": (-1.0, 0.5, 0.5)}):
            with pytest.raises(ConfigError):
                pools.reconfigure(**bad)  # type: ignore[arg-type]
            assert pools.settings.idle_timeout_s == 0.05
            assert pools.settings.autoscaler.arrival_weight == 0.5
    finally:
        await pools.release(1.0)
