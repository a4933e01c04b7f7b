"""The handoff leases of ordered keys in the state store (``lua/order.lua``), against a real
Redis and a real Redis Cluster: take, renew, release, a lease held by another, expiry by
Redis' TTL, and bad calls that change nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import redis

from ringpool.errors import ConfigError
from ringpool.store.keys import Keys
from ringpool.store.scripts import call
from ringpool.store.store import ORDER, LeaseAnswer, StateStore
from tests.helpers import redis_client as client_of

T = TypeVar("T")
KEYS = [f"user:{n}" for n in range(12)]  # spread over partitions (and Redis Cluster slots)


def with_store(url: str, cluster: str, body: Callable[[StateStore], Awaitable[T]]) -> T:
    async def run() -> T:
        store = StateStore.from_url(url, cluster)
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(run())


def leases(client: Any, cluster: str, keys: list[str]) -> dict[str, tuple[bytes | None, int]]:
    """Each key's lease as Redis holds it: (holder, remaining ms)."""
    layout = Keys(cluster)
    return {key: (client.get(layout.order_lease(key)), client.pttl(layout.order_lease(key)))
            for key in keys}


@pytest.mark.redis_cluster
def test_leases_are_taken_renewed_and_released_only_by_their_holder(
    any_redis: str, cluster_name: str
) -> None:
    client = client_of(any_redis)
    a, b = {key: "node-a:7" for key in KEYS}, {key: "node-b:9" for key in KEYS}

    async def body(store: StateStore) -> None:
        assert await store.take_order_leases(a, 30.0) == {key: LeaseAnswer(True) for key in KEYS}
        # Already ours: granted again, its TTL starting over.
        assert all(answer.granted for answer in (await store.take_order_leases(a, 30.0)).values())
        refused = await store.take_order_leases(b, 30.0)
        assert all(not r.granted and r.holder == "node-a:7" and 25 < r.remaining_s <= 30
                   for r in refused.values()), refused
        assert await store.renew_order_leases(b, 60.0) == {key: False for key in KEYS}
        assert await store.release_order_leases(b) == {key: False for key in KEYS}
        assert all(holder == b"node-a:7" and ms <= 30_000
                   for holder, ms in leases(client, cluster_name, KEYS).values())
        assert await store.renew_order_leases(a, 60.0) == {key: True for key in KEYS}
        assert all(ms > 30_000 for _, ms in leases(client, cluster_name, KEYS).values())
        assert await store.release_order_leases(a) == {key: True for key in KEYS}
        assert leases(client, cluster_name, KEYS) == {key: (None, -2) for key in KEYS}
        assert await store.take_order_leases(b, 30.0) == {key: LeaseAnswer(True) for key in KEYS}
        assert await store.release_order_leases(b) == {key: True for key in KEYS}

    with_store(any_redis, cluster_name, body)


def test_a_lease_lapses_by_its_ttl_and_another_holder_takes_it(
    redis_url: str, cluster_name: str
) -> None:
    async def body(store: StateStore) -> None:
        assert (await store.take_order_leases({"k": "node-a:1"}, 0.3))["k"].granted
        # The holder stopped renewing (it crashed): the lease goes by Redis' clock.
        await asyncio.sleep(0.4)
        assert await store.renew_order_leases({"k": "node-a:1"}, 10.0) == {"k": False}
        assert (await store.take_order_leases({"k": "node-b:2"}, 10.0))["k"].granted
        answer = (await store.take_order_leases({"k": "node-a:1"}, 10.0))["k"]
        assert answer == LeaseAnswer(False, "node-b:2", answer.remaining_s)
        assert await store.release_order_leases({"k": "node-a:1"}) == {"k": False}
        assert await store.release_order_leases({"k": "node-b:2"}) == {"k": True}

    with_store(redis_url, cluster_name, body)


def test_bad_lease_calls_are_refused_and_change_nothing(
    redis_url: str, redis_client: redis.Redis, cluster_name: str
) -> None:
    layout = Keys(cluster_name, 1)  # every lease in one partition: one script call
    wrong = layout.order_lease("wrong")
    redis_client.hset(wrong, "not", "a lease")

    async def body(store: StateStore) -> None:
        client = redis_client
        # Nothing to do: no round trip, nothing written.
        assert await store.take_order_leases({}, 10.0) == {}
        assert await store.release_order_leases({}) == {}
        for ttl_s in (0.0, -1.0, float("nan"), float("inf")):
            with pytest.raises(ConfigError, match="lease TTL"):
                await store.take_order_leases({"k": "node-a:1"}, ttl_s)
        with pytest.raises(redis.ResponseError, match=r"WRONGTYPE the lease key .* holds a hash"):
            await store.take_order_leases({"free": "node-a:1", "wrong": "node-a:1"}, 10.0)
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            await store.release_order_leases({"wrong": "node-a:1"})
        assert client.get(layout.order_lease("free")) is None  # checked before any write
        assert client.hgetall(wrong) == {b"not": b"a lease"}
        raw = await store._connection.client()
        bad_calls: list[tuple[list[str], list[Any], str]] = [
            ([], ["take", 1000], "no lease keys given"),
            ([layout.order_lease("k")], ["steal", 1000, "node-a:1"], "unknown lease op"),
            ([layout.order_lease("k")], ["take", 1000], "one holder per lease key"),
            ([layout.order_lease("k")], ["take", 0, "node-a:1"], "positive number of ms"),
            ([layout.order_lease("k")], ["renew", 1.5, "node-a:1"], "positive number of ms"),
            ([layout.order_lease("k")], ["take", 1000, ""], "empty lease holder"),
        ]
        for keys, args, message in bad_calls:
            with pytest.raises(redis.ResponseError, match=message):
                await call(raw, ORDER, keys, args)
        assert client.get(layout.order_lease("k")) is None

    async def run() -> None:
        store = StateStore.from_url(redis_url, cluster_name, partitions=1)
        try:
            await body(store)
        finally:
            await store.close()

    asyncio.run(run())
