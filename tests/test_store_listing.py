"""The store's listings against a real Redis: pages of the DLQ, the retry set and the
in-flight tasks, their filters and cursors, and their refusals."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
import redis

from ringpool import Task, TaskState
from ringpool.core.envelope import build
from ringpool.store.keys import DEFAULT_PARTITIONS
from ringpool.store.listing import InvalidQuery, Page, TaskQuery, lua_pattern
from ringpool.store.store import StateStore, Transition
from ringpool.v1 import node_pb2 as pb
from tests.helpers import put_in_dlq

T = TypeVar("T")


def with_store(redis_url: str, cluster: str, body: Callable[[StateStore], Awaitable[T]],
               partitions: int | None = None) -> T:
    async def run() -> T:
        store = StateStore.from_url(redis_url, cluster, partitions=partitions)
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(run())


def envelopes(specs: list[tuple[str, str]]) -> list[pb.TaskEnvelope]:
    """(task name, key) -> envelopes of new tasks."""
    return [build(key, Task(name, args=(i,)), 1) for i, (name, key) in enumerate(specs)]


async def dead_letter(store: StateStore, node: str, batch: list[tuple[pb.TaskEnvelope, str]]
                      ) -> list[str]:
    """Accept each envelope on ``node`` and bury it with its error type."""
    await store.accept(node, 1, [e for e, _ in batch])
    await store.transition(node, 1, [
        Transition.dead(e.task_id, 1.0, dead_reason="permanent", error_type=error,
                        error_message=f"{error} in {e.name}", traceback="tb")
        for e, error in batch])
    return [e.task_id for e, _ in batch]


def seed_dlq(redis_url: str, redis_client: redis.Redis, cluster: str,
             partitions: int = DEFAULT_PARTITIONS) -> list[str]:
    """Twelve DLQ entries dead-lettered at 100, 101, ... (ids in that order): billing.charge
    (keys user:0..) failing with ConnError, every third one email.send with ValueError."""
    specs = [("email.send" if i % 3 == 0 else "billing.charge", f"user:{i}") for i in range(12)]
    batch = list(zip(envelopes(specs),
                     ["ValueError" if i % 3 == 0 else "ConnError" for i in range(12)],
                     strict=True))
    ids = with_store(redis_url, cluster, lambda store: dead_letter(store, "n1", batch),
                     partitions)
    put_in_dlq(redis_client, cluster, {task_id: 100.0 + i for i, task_id in enumerate(ids)},
               partitions)
    return ids


async def every_page(read: Callable[[str | None], Awaitable[Page]]) -> list[Page]:
    pages, cursor = [], None
    while True:
        page = await read(cursor)
        pages.append(page)
        if page.next is None:
            return pages
        cursor = page.next


def ids_of(pages: list[Page]) -> list[str]:
    return [item.record.task_id for page in pages for item in page.items]


def test_dlq_pages_newest_first_with_summaries_and_times(
    redis_url: str, redis_client: redis.Redis, cluster_name: str
) -> None:
    ids = seed_dlq(redis_url, redis_client, cluster_name)
    pages = with_store(redis_url, cluster_name, lambda store: every_page(
        lambda cursor: store.dlq_list(cursor=cursor, limit=5)))
    assert ids_of(pages) == ids[::-1]
    assert [len(p.items) for p in pages] == [5, 5, 2]
    first = pages[0].items[0]
    assert first.at == 111.0
    summary = first.record
    assert (summary.name, summary.key, summary.state, summary.error_type, summary.node,
            summary.attempt) == ("billing.charge", "user:11", TaskState.FAILED, "ConnError",
                                 "n1", 1)
    assert summary.error_message == "ConnError in billing.charge"
    oldest = with_store(redis_url, cluster_name,
                        lambda store: store.dlq_list(limit=3, newest_first=False))
    assert [i.record.task_id for i in oldest.items] == ids[:3]


def test_dlq_filters_by_name_error_key_and_time_range(
    redis_url: str, redis_client: redis.Redis, cluster_name: str
) -> None:
    ids = seed_dlq(redis_url, redis_client, cluster_name)

    def listed(query: TaskQuery, limit: int = 50) -> list[str]:
        return ids_of(with_store(redis_url, cluster_name, lambda store: every_page(
            lambda cursor: store.dlq_list(query, cursor=cursor, limit=limit))))

    emails = [ids[i] for i in range(12) if i % 3 == 0][::-1]
    assert listed(TaskQuery(name="email.send")) == emails
    assert listed(TaskQuery(name="email.*"), limit=1) == emails
    assert listed(TaskQuery(name="email")) == []  # globs are anchored
    assert listed(TaskQuery(error="Conn*")) == [t for t in ids[::-1] if t not in emails]
    assert listed(TaskQuery(name="billing.?harge", error="ValueError")) == []
    assert listed(TaskQuery(key="user:1?")) == [ids[11], ids[10]]
    assert listed(TaskQuery(since=103.0, until=105.0)) == [ids[5], ids[4], ids[3]]
    assert listed(TaskQuery(name="email.send", since=103.0)) == [ids[9], ids[6], ids[3]]
    # Lua's pattern characters in a filter are plain characters.
    assert lua_pattern("a.b%(c)*") == "^a%.b%%%(c%).*$"
    assert listed(TaskQuery(name="email%.send")) == []

    counted = with_store(redis_url, cluster_name, lambda store: store.dlq_count(102.0, 104.5))
    assert counted == 3


def test_a_budget_bounds_each_read_and_the_cursor_goes_on(
    redis_url: str, redis_client: redis.Redis, cluster_name: str
) -> None:
    ids = seed_dlq(redis_url, redis_client, cluster_name, partitions=1)
    query = TaskQuery(name="email.send")
    pages = with_store(redis_url, cluster_name, lambda store: every_page(
        lambda cursor: store.dlq_list(query, cursor=cursor, limit=50, budget=4)))
    assert [p.scanned for p in pages] == [4, 4, 4]
    assert [[i.record.task_id for i in p.items] for p in pages] == [
        [ids[9]], [ids[6]], [ids[3], ids[0]]]


def test_over_many_partitions_a_page_reads_a_budget_share_of_each(
    redis_url: str, redis_client: redis.Redis, cluster_name: str
) -> None:
    ids = seed_dlq(redis_url, redis_client, cluster_name, partitions=8)
    query = TaskQuery(name="email.send")
    pages = with_store(redis_url, cluster_name, lambda store: every_page(
        lambda cursor: store.dlq_list(query, cursor=cursor, limit=50, budget=8)))
    assert all(p.scanned <= 8 for p in pages)  # one entry of each partition per page
    assert ids_of(pages) == [ids[9], ids[6], ids[3], ids[0]]


def test_entries_leaving_between_pages_make_none_skip(
    redis_url: str, redis_client: redis.Redis, cluster_name: str
) -> None:
    # Equal times, as one script call buries a whole batch at the same instant.
    put_in_dlq(redis_client, cluster_name, {f"t{i:02}": 10.0 + i // 4 for i in range(12)})

    async def read_while_replaying(store: StateStore) -> list[str]:
        seen: list[str] = []
        cursor: str | None = None
        while True:
            page = await store.dlq_list(cursor=cursor, limit=3, newest_first=False)
            seen += [i.record.task_id for i in page.items]
            # The whole page leaves the DLQ (replayed), the cursor's entry with it.
            await store.dlq_purge([i.record.task_id for i in page.items])
            if page.next is None:
                return seen
            cursor = page.next

    assert with_store(redis_url, cluster_name, read_while_replaying) == [
        f"t{i:02}" for i in range(12)]


def test_a_listed_entry_whose_record_is_gone_shows_only_unfiltered(
    redis_url: str, redis_client: redis.Redis, cluster_name: str
) -> None:
    put_in_dlq(redis_client, cluster_name, {"ghost": 5.0})
    page = with_store(redis_url, cluster_name, lambda store: store.dlq_list())
    assert [(i.record.task_id, i.record.exists, i.at) for i in page.items] == [
        ("ghost", False, 5.0)]
    filtered = with_store(redis_url, cluster_name,
                          lambda store: store.dlq_list(TaskQuery(name="*")))
    assert filtered.items == [] and filtered.next is None


def test_retries_soonest_due_first(
    redis_url: str, redis_client: redis.Redis, cluster_name: str
) -> None:
    batch = envelopes([("billing.charge", f"k{i}") for i in range(4)])

    async def seed(store: StateStore) -> Page:
        await store.accept("n1", 1, batch)
        now = await store.now()  # due times are Redis' clock: now plus each delay
        await store.transition("n1", 1, [
            Transition.retry(e.task_id, 1.0, retry_in_s=5000.0 - i, error_type="Flaky",
                             error_message="again", traceback="tb")
            for i, e in enumerate(batch)])
        return await store.retries_list(TaskQuery(error="Flaky", until=now + 4998.5), limit=10)

    page = with_store(redis_url, cluster_name, seed)
    assert [(i.record.task_id, i.record.state) for i in page.items] == [
        (batch[3].task_id, TaskState.RETRY_SCHEDULED),
        (batch[2].task_id, TaskState.RETRY_SCHEDULED)]
    assert page.items[1].at - page.items[0].at == pytest.approx(1.0)
    assert page.next is None


def test_in_flight_tasks_node_by_node_queued_or_running(
    redis_url: str, cluster_name: str
) -> None:
    first = envelopes([("billing.charge", f"a{i}") for i in range(30)])
    second = envelopes([("email.send", f"b{i}") for i in range(5)])

    async def run(store: StateStore) -> tuple[list[Page], list[Page], list[Page], int]:
        await store.accept("node-a", 1, first)
        await store.accept("node-b", 1, second)
        await store.transition("node-a", 1, [Transition.started(e.task_id, 1.0)
                                             for e in first[:10]])
        everything = await every_page(lambda c: store.inflight_list(cursor=c, limit=8))
        running = await every_page(lambda c: store.inflight_list(
            state=TaskState.RUNNING, cursor=c, limit=100))
        emails = await every_page(lambda c: store.inflight_list(
            TaskQuery(name="email.*"), state=TaskState.QUEUED, cursor=c))
        return everything, running, emails, await store.inflight_count()

    everything, running, emails, count = with_store(redis_url, cluster_name, run)
    assert count == 35
    assert set(ids_of(everything)) == {e.task_id for e in first + second}
    assert all(len(p.items) <= 8 + 50 for p in everything)
    assert set(ids_of(running)) == {e.task_id for e in first[:10]}
    assert {i.record.state for p in running for i in p.items} == {TaskState.RUNNING}
    assert set(ids_of(emails)) == {e.task_id for e in second}
    assert {i.record.node for p in emails for i in p.items} == {"node-b"}


@pytest.mark.parametrize("make", [
    lambda: TaskQuery(since=10.0, until=5.0),
    lambda: TaskQuery(name="x" * 300),
    lambda: TaskQuery(key="a\x00b"),
    lambda: TaskQuery(since=float("nan")),
])
def test_malformed_queries_are_refused(make: Callable[[], TaskQuery]) -> None:
    with pytest.raises(InvalidQuery):
        make()


@pytest.mark.parametrize("call", [
    lambda store: store.dlq_list(cursor="nonsense"),
    lambda store: store.dlq_list(cursor="abc:t1"),
    lambda store: store.dlq_list(limit=0),
    lambda store: store.retries_list(limit=5000),
    lambda store: store.inflight_list(cursor="x:node"),
    lambda store: store.inflight_list(state=TaskState.FAILED),
])
def test_bad_cursors_sizes_and_states_are_refused(
    redis_url: str, cluster_name: str, call: Callable[[StateStore], Awaitable[Page]]
) -> None:
    with pytest.raises(InvalidQuery):
        with_store(redis_url, cluster_name, call)
