"""The async and cpu tiers, per-key order, and the autoscaler's hysteresis."""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator

import pytest
from test_pool_support import make_job

from ringpool.errors import ConfigError
from ringpool.pool import (
    AdaptivePolicy,
    AutoscalerSettings,
    CpuSettings,
    FixedPolicy,
    LoadSample,
    Pools,
    PoolSettings,
)
from ringpool.pool.autoscaler import Autoscaler
from ringpool.pool.threads import ThreadTier
from ringpool.task import PermanentError, Retry, current_task
from tests.helpers import eventually


@pytest.fixture
async def pools() -> AsyncIterator[Pools]:
    made = Pools(PoolSettings(min_workers=0, max_workers=8, async_concurrency=2,
                              cpu=CpuSettings(processes=1)), policy=FixedPolicy(0))
    yield made
    await made.release(5.0)


# -- async tier -------------------------------------------------------------------------

async def test_an_async_task_is_cancelled_at_its_timeout(pools: Pools) -> None:
    cancelled = asyncio.Event()

    async def stuck() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    job = make_job(stuck, kind="async", timeout_s=0.1)
    outcome = await pools.submit(job)
    assert outcome.timed_out and outcome.error_type == "TaskTimeout"
    assert cancelled.is_set()
    assert job.context.cancelled.is_set()
    assert pools.stats()["async"]["timed_out"] == 1


async def test_async_tier_is_bounded_and_sees_its_context(pools: Pools) -> None:
    running, peak = 0, 0
    seen: list[str] = []

    async def work(i: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        ctx = current_task()
        seen.append(ctx.task_id if ctx else "")
        await asyncio.sleep(0.005)
        running -= 1
        return i

    jobs = [make_job(work, i, kind="async") for i in range(10)]
    outcomes = await asyncio.gather(*(pools.submit(job) for job in jobs))
    assert [o.value for o in outcomes] == list(range(10))
    assert peak == 2
    assert sorted(seen) == sorted(job.task_id for job in jobs)


async def test_async_errors_and_middleware(pools: Pools) -> None:
    trail: list[str] = []

    async def mw(ctx: object, call_next: object) -> object:
        trail.append("before")
        try:
            return await call_next()  # type: ignore[operator]
        finally:
            trail.append("after")

    pools.use(mw)

    async def fail() -> None:
        raise KeyError("missing")

    outcome = await pools.submit(make_job(fail, kind="async"))
    assert (outcome.ok, outcome.error_type) == (False, "KeyError")
    assert "KeyError" in outcome.traceback
    assert trail == ["before", "after"]


# -- per-key order ----------------------------------------------------------------------

async def test_per_key_order_holds_under_8_concurrent_keys(pools: Pools) -> None:
    keys = [f"user:{i}" for i in range(8)]
    ran: dict[str, list[int]] = defaultdict(list)
    active: dict[str, int] = defaultdict(int)
    overlaps: list[str] = []
    lock = threading.Lock()
    rng = random.Random(7)

    def step(key: str, seq: int, pause_s: float) -> None:
        with lock:
            active[key] += 1
            if active[key] > 1:
                overlaps.append(key)
        threading.Event().wait(pause_s)  # a varying amount of work
        with lock:
            ran[key].append(seq)
            active[key] -= 1

    futures = [
        pools.submit(make_job(step, key, seq, rng.uniform(0, 0.003), key=key, ordered=True))
        for seq in range(15) for key in keys
    ]
    await asyncio.gather(*futures)
    assert overlaps == []
    assert dict(ran) == {key: list(range(15)) for key in keys}
    assert pools.stats()["ordered_waiting"] == 0


async def test_release_hands_back_ordered_jobs_still_waiting(pools: Pools) -> None:
    gate = threading.Event()
    jobs = [make_job(gate.wait, 10, key="k", ordered=True) for _ in range(3)]
    futures = [pools.submit(job) for job in jobs]
    assert pools.stats()["ordered_waiting"] == 2
    left = await pools.release(0.1)
    assert {job.task_id for job in left} == {job.task_id for job in jobs}
    assert all(f.cancelled() for f in futures)
    gate.set()


# -- cpu tier ---------------------------------------------------------------------------

def child_pid() -> int:
    return os.getpid()


def snooze(seconds: float) -> str:
    time.sleep(seconds)
    return "woke"


def square(x: int) -> int:
    return x * x


def divide(x: int) -> float:
    return 1 / x


def not_json() -> object:
    return object()


def hog(megabytes: int) -> int:
    return len(bytearray(megabytes * 2**20))


def give_up(reason: str) -> None:
    raise PermanentError(reason)


def later(countdown: float) -> None:
    raise Retry(countdown=countdown, reason="not yet")


async def test_cpu_tasks_keep_the_meaning_of_permanent_error_and_retry(pools: Pools) -> None:
    gave_up = await pools.submit(make_job(give_up, "bad input", kind="cpu"))
    assert isinstance(gave_up.exception, PermanentError)
    assert (gave_up.error_type, gave_up.error_message) == ("PermanentError", "bad input")
    assert "give_up" in gave_up.traceback  # the child's traceback, not the node's
    retried = await pools.submit(make_job(later, 7.5, kind="cpu"))
    assert isinstance(retried.exception, Retry) and retried.exception.countdown == 7.5
    assert retried.error_type == "Retry"


async def test_cpu_tasks_run_in_another_process_and_errors_come_back(pools: Pools) -> None:
    assert (await pools.submit(make_job(square, 12, kind="cpu"))).value == 144
    pid = (await pools.submit(make_job(child_pid, kind="cpu"))).value
    assert pid != os.getpid()
    failed = await pools.submit(make_job(divide, 0, kind="cpu"))
    assert (failed.ok, failed.error_type) == (False, "ZeroDivisionError")
    assert "ZeroDivisionError" in failed.traceback
    bad = await pools.submit(make_job(not_json, kind="cpu"))
    assert bad.error_type == "TypeError"
    # Errors never cost the worker process.
    assert (await pools.submit(make_job(child_pid, kind="cpu"))).value == pid
    assert pools.stats()["cpu"]["restarts"] == 0


async def test_a_timed_out_cpu_task_is_killed_and_replaced(pools: Pools) -> None:
    first = (await pools.submit(make_job(child_pid, kind="cpu"))).value
    outcome = await pools.submit(make_job(snooze, 30, kind="cpu", timeout_s=0.5))
    assert outcome.timed_out and outcome.error_type == "TaskTimeout"
    with pytest.raises(ProcessLookupError):
        os.kill(first, 0)
    second = (await pools.submit(make_job(child_pid, kind="cpu"))).value
    assert second != first
    stats = pools.stats()["cpu"]
    assert (stats["timed_out"], stats["restarts"], stats["completed"]) == (1, 1, 2)


async def test_cpu_memory_cap_fails_the_task_not_the_node() -> None:
    pools = Pools(PoolSettings(cpu=CpuSettings(processes=1, memory_limit_bytes=512 * 2**20,
                                               cpu_affinity=(0,))), policy=FixedPolicy(0))
    try:
        outcome = await pools.submit(make_job(hog, 1024, kind="cpu"))
        assert (outcome.ok, outcome.error_type) == (False, "MemoryError")
        assert (await pools.submit(make_job(hog, 8, kind="cpu"))).value == 8 * 2**20
    finally:
        await pools.release(5.0)


def test_cpu_settings_are_checked() -> None:
    for bad in [dict(processes=0), dict(processes=(os.cpu_count() or 1) + 1),
                dict(memory_limit_bytes=1024), dict(cpu_affinity=()),
                dict(cpu_affinity=(os.cpu_count() or 1,))]:
        with pytest.raises(ConfigError):
            CpuSettings(**bad)  # type: ignore[arg-type]


# -- autoscaler -------------------------------------------------------------------------

def sample(arrivals_per_s: float, queued: int = 0, gc_per_s: float = 0.0) -> LoadSample:
    return LoadSample(arrivals_per_s=arrivals_per_s, queued=queued, avg_run_s=0.01,
                      gc_per_s=gc_per_s, min_workers=2, max_workers=42)


def test_adaptive_policy_moves_after_3_ticks_up_and_5_ticks_down() -> None:
    policy = AdaptivePolicy()
    busy = sample(arrivals_per_s=4200, queued=42, gc_per_s=50)  # every signal saturated
    assert [policy.target(busy, 2) for _ in range(3)] == [2, 2, 42]
    idle = sample(arrivals_per_s=0)
    assert [policy.target(idle, 42) for _ in range(5)] == [42, 42, 42, 42, 2]


def test_adaptive_policy_does_not_flap_on_a_steady_noisy_load() -> None:
    policy = AdaptivePolicy()
    rng = random.Random(11)
    current, changes = 2, 0
    for _ in range(500):
        # ~10 busy workers' worth of arrivals, +-10% noise, and a little queueing.
        noisy = sample(arrivals_per_s=1000 * rng.uniform(0.9, 1.1), queued=rng.randint(0, 2),
                       gc_per_s=rng.uniform(4, 6))
        target = policy.target(noisy, current)
        changes += target != current
        current = target
    assert changes <= 1
    assert 2 < current < 42


def test_autoscaler_prespawns_its_target_and_weights_are_checked() -> None:
    tier = ThreadTier(1, 6, 10, 30.0)
    scaler = Autoscaler(tier, FixedPolicy(4), tick_s=0.05)
    scaler.start()
    try:
        eventually(lambda: tier.stats()["threads"] == 4 and tier.stats()["idle"] == 4)
        assert scaler.changes == 1
    finally:
        scaler.stop()
        tier.release(5.0)
    for bad in [dict(arrival_weight=-1), dict(arrival_weight=0, queue_weight=0, gc_weight=0),
                dict(up_ticks=0), dict(tick_s=0), dict(policy="sometimes")]:
        with pytest.raises(ConfigError):
            AutoscalerSettings(**bad)  # type: ignore[arg-type]
