"""The state store's reads against a real Redis: the DLQ in pages, sizes, dead-letter times."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis

from ringpool.store.keys import Keys
from ringpool.store.store import QueueSizes, StateStore

T = TypeVar("T")


def with_store(redis_url: str, cluster: str, body: Callable[[StateStore], Awaitable[T]]) -> T:
    async def run() -> T:
        store = StateStore.from_url(redis_url, cluster)
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(run())


async def pages(store: StateStore, page_size: int, **bounds: float) -> list[list[tuple[str, float]]]:
    return [page async for page in store.dlq_pages(page_size=page_size, **bounds)]


def test_dlq_pages_hold_every_entry_once_in_order_even_across_equal_times(
    redis_url: str, redis_client: redis.Redis, cluster_name: str
) -> None:
    # Ten entries, most sharing a dead-letter time with others (one script call buries
    # many at the same instant), read three at a time.
    times = {"a": 1.5, "b": 1.5, "c": 1.5, "d": 1.5, "e": 2.25, "f": 2.25, "g": 3.0,
             "h": 3.0, "i": 3.0, "j": 4.0}
    redis_client.zadd(Keys(cluster_name).dlq, times)
    read = with_store(redis_url, cluster_name, lambda store: pages(store, 3))
    assert [p for page in read for p in page] == sorted(times.items(), key=lambda p: (p[1], p[0]))
    assert read[0] == [("a", 1.5), ("b", 1.5), ("c", 1.5), ("d", 1.5)]  # ties kept together

    inclusive = with_store(redis_url, cluster_name,
                           lambda store: pages(store, 2, since=2.25, until=3.0))
    assert [i for page in inclusive for i, _ in page] == ["e", "f", "g", "h", "i"]
    assert with_store(redis_url, cluster_name, lambda store: pages(store, 3, since=5.0)) == []


def test_entries_leaving_mid_read_make_none_of_the_others_skip(
    redis_url: str, redis_client: redis.Redis, cluster_name: str
) -> None:
    dlq = Keys(cluster_name).dlq
    redis_client.zadd(dlq, {f"t{i:02}": 10.0 + i // 2 for i in range(12)})

    async def read_while_replaying(store: StateStore) -> list[str]:
        seen: list[str] = []
        async for page in store.dlq_pages(page_size=4):
            if not seen:
                redis_client.zadd(dlq, {"late": 100.0})  # dead-lettered meanwhile
            seen += [task_id for task_id, _ in page]
            await store.dlq_purge([task_id for task_id, _ in page])  # as a replay would
        return seen

    seen = with_store(redis_url, cluster_name, read_while_replaying)
    assert seen == [f"t{i:02}" for i in range(12)] + ["late"]


def test_queue_sizes_and_dead_letter_times(
    redis_url: str, redis_client: redis.Redis, cluster_name: str
) -> None:
    keys = Keys(cluster_name)
    redis_client.zadd(keys.dlq, {"x": 7.5, "y": 8.0})
    redis_client.zadd(keys.retries, {"r": 1.0})

    async def read(store: StateStore) -> tuple[QueueSizes, list[float | None]]:
        return await store.queue_sizes(), await store.dlq_times(["y", "nope", "x"])

    assert with_store(redis_url, cluster_name, read) == (QueueSizes(retries=1, dlq=2),
                                                         [8.0, None, 7.5])
