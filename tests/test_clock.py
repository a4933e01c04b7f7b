"""One clock: due times, leases, dead-letter ages, etas and schedule ticks are Redis' own,
whatever the clocks of the hosts that write and read them say. Writes run here under a
skewed clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import pytest

from ringpool import Task
from ringpool.core.envelope import build
from ringpool.core.protocol import TaskState
from ringpool.core.schedule import Timing
from ringpool.store.store import StateStore, Transition, Waiting
from ringpool_coordinator.retention import DlqRetention
from ringpool_coordinator.ticker import ScheduleTicker

HOUR = 3600.0


@pytest.fixture
async def stores(redis_url: str, cluster_name: str) -> AsyncIterator[tuple[StateStore, StateStore]]:
    """A node's store and the coordinator's: two hosts, one Redis."""
    node, coordinator = (StateStore.from_url(redis_url, cluster_name) for _ in range(2))
    yield node, coordinator
    for store in (node, coordinator):
        await store.close()


@contextmanager
def clock_off_by(seconds: float, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    real = time.time
    with monkeypatch.context() as patched:
        patched.setattr(time, "time", lambda: real() + seconds)
        yield


async def test_dead_letters_age_by_redis_clock_not_the_nodes(
    stores: tuple[StateStore, StateStore], monkeypatch: pytest.MonkeyPatch,
) -> None:
    node, coordinator = stores
    dead = build("k", Task("demo.fail"), 1)
    await node.accept("n1", 1, [dead])
    with clock_off_by(-HOUR, monkeypatch):  # a node whose clock is an hour behind
        await node.transition("n1", 1, [Transition.dead(dead.task_id, time.time(), "permanent",
                                                        "E", "m", "tb")])
    # A retention of ten minutes keeps a dead letter from a moment ago.
    assert await DlqRetention(coordinator, retention_s=600).expire() == 0
    assert await coordinator.dlq_times([dead.task_id]) != [None]


async def test_recovered_tasks_are_due_now_by_redis_clock(
    stores: tuple[StateStore, StateStore], monkeypatch: pytest.MonkeyPatch,
) -> None:
    node, coordinator = stores
    held = build("k", Task("demo.add", args=(1, 1)), 1)
    await node.accept("n1", 1, [held])
    with clock_off_by(HOUR, monkeypatch):  # a node an hour ahead hands back what it held
        await node.recover("n1", None, 0)
    claimed = await coordinator.claim_due(10.0, 10)
    assert [t.task_id for t in claimed.tasks] == [held.task_id]


async def test_a_retry_is_due_after_its_delay_by_redis_clock(
    stores: tuple[StateStore, StateStore], monkeypatch: pytest.MonkeyPatch,
) -> None:
    node, coordinator = stores
    failed = build("k", Task("demo.add", args=(1, 1)), 1)
    await node.accept("n1", 1, [failed])
    with clock_off_by(-HOUR, monkeypatch):  # an hour behind: its own "now + 2 s" is long past
        await node.transition("n1", 1, [Transition.retry(failed.task_id, time.time(), 2.0,
                                                         "E", "m", "tb")])
    written = time.monotonic()
    assert (await coordinator.claim_due(10.0, 10)).tasks == []  # not due yet
    due_in = await coordinator.due_in()
    assert due_in is not None and 1.0 < due_in <= 2.0
    while not (claimed := await coordinator.claim_due(10.0, 10)).tasks:
        assert time.monotonic() - written < 10, "the retry never came due"
        await asyncio.sleep(0.05)
    assert time.monotonic() - written >= due_in - 0.1
    assert [t.task_id for t in claimed.tasks] == [failed.task_id]
    assert claimed.tasks[0].claims == 1


async def test_a_delayed_task_waits_for_its_eta_by_redis_clock(
    stores: tuple[StateStore, StateStore], monkeypatch: pytest.MonkeyPatch,
) -> None:
    node, coordinator = stores
    later = build("k", Task("demo.add", args=(1, 1)), 1, eta=await node.now() + 60)
    with clock_off_by(HOUR, monkeypatch):  # a node an hour ahead: its "now" is past the eta
        (accepted,) = await node.accept("n1", 1, [later])
    assert accepted.state is TaskState.SCHEDULED
    assert (await coordinator.claim_due(10.0, 10, Waiting.SCHEDULED)).tasks == []
    due_in = await coordinator.due_in(Waiting.SCHEDULED)
    assert due_in is not None and 50 < due_in <= 60
    with clock_off_by(-HOUR, monkeypatch):  # cancelled from a host an hour behind
        assert await node.cancel(later.task_id) is TaskState.SCHEDULED
    (record,) = await coordinator.records([later.task_id])
    assert record is not None and record.finished_at is not None
    assert abs(record.finished_at - await coordinator.now()) < 60


async def test_schedule_ticks_are_worked_out_and_claimed_by_redis_clock(
    stores: tuple[StateStore, StateStore], monkeypatch: pytest.MonkeyPatch,
) -> None:
    node, coordinator = stores
    with clock_off_by(HOUR, monkeypatch):  # published by a node an hour ahead
        await node.schedules.put("skewed", "k", build("k", Task("demo.add", args=(1, 1)), 1),
                                 Timing(every_s=1), "test")
    stored = await coordinator.schedules.get("skewed")
    assert stored is not None and stored.next_at is not None
    assert 0 < stored.next_at - await coordinator.now() <= 1
    with clock_off_by(-HOUR, monkeypatch):  # a leader an hour behind still ticks on time
        ticker = ScheduleTicker(coordinator)
        started = time.monotonic()
        while not await ticker.tick_due():
            assert time.monotonic() - started < 10, "the tick never came due"
            await asyncio.sleep(0.05)
    ticked = await coordinator.schedules.get("skewed")
    assert ticked is not None and (ticked.fired, ticked.skipped) == (1, 0)
    claimed = await coordinator.claim_due(10.0, 10, Waiting.SCHEDULED)
    assert [t.task_id for t in claimed.tasks] == [ticked.last_task_id]
    await coordinator.schedules.remove("skewed")
