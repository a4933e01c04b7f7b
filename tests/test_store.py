"""The state store against a real Redis: partitions, the DLQ in pages, sizes, accept codes,
transitions, slim records, shrinking in-flight sets, done announcements, durability,
rate-limit tokens and progress."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import redis

from ringpool import Task, TaskProgress, TaskState
from ringpool.core.envelope import build
from ringpool.errors import ConfigError
from ringpool.store.durability import AcceptDurability, ServerFacts
from ringpool.store.keys import DEFAULT_PARTITIONS, Keys
from ringpool.store.store import AcceptCode, QueueSizes, StateStore, TokenAsk, Transition
from tests.helpers import dlq_key, put_in_dlq, retry_key

T = TypeVar("T")


def with_store(redis_url: str, cluster: str, body: Callable[[StateStore], Awaitable[T]],
               **options: Any) -> T:
    async def run() -> T:
        store = StateStore.from_url(redis_url, cluster, **options)
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(run())


async def pages(store: StateStore, page_size: int, **bounds: float) -> list[list[tuple[str, float]]]:
    return [page async for page in store.dlq_pages(page_size=page_size, **bounds)]


# -- partitions ---------------------------------------------------------------------------


def test_the_first_store_records_the_partition_count_and_another_count_is_refused(
    redis_url: str, redis_client: redis.Redis, cluster_name: str
) -> None:
    async def count(store: StateStore) -> int:
        return (await store.layout()).partitions

    assert with_store(redis_url, cluster_name, count, partitions=8) == 8
    assert redis_client.get(Keys(cluster_name).partition_count) == b"8"
    assert with_store(redis_url, cluster_name, count) == 8  # no count asked: the recorded one
    with pytest.raises(ConfigError, match="has 8 partitions"):
        with_store(redis_url, cluster_name, count, partitions=16)
    assert redis_client.get(Keys(cluster_name).partition_count) == b"8"


@pytest.mark.parametrize("partitions", [0, -1, 4097, True])
def test_a_bad_partition_count_is_refused_before_anything_is_written(
    redis_client: redis.Redis, cluster_name: str, partitions: int
) -> None:
    with pytest.raises(ConfigError, match="partition count"):
        StateStore.from_url("redis://127.0.0.1:1/0", cluster_name, partitions=partitions)
    assert redis_client.get(Keys(cluster_name).partition_count) is None


def test_a_batch_spreads_over_partitions_and_each_task_lands_in_its_own(
    redis_url: str, redis_client: redis.Redis, cluster_name: str
) -> None:
    batch = [build(f"user:{i}", Task("demo.add", args=(i, i)), 1) for i in range(200)]

    async def accept(store: StateStore) -> list[AcceptCode]:
        return [r.code for r in await store.accept("n1", 3, batch)]

    assert with_store(redis_url, cluster_name, accept) == [AcceptCode.ACCEPTED] * 200
    keys = Keys(cluster_name)
    partitions = {keys.partition_of(e.task_id) for e in batch}
    assert len(partitions) > DEFAULT_PARTITIONS // 2
    for envelope in batch[:20]:
        p = keys.partition_of(envelope.task_id)
        assert redis_client.hget(keys.task(envelope.task_id), "state") == b"QUEUED"
        assert keys.task(envelope.task_id).startswith(f"ringpool:{{{cluster_name}:{p}}}:")
        assert redis_client.hget(keys.inflight("n1", p), envelope.task_id) == b"3"
        assert redis_client.sismember(keys.inflight_nodes(p), "n1")


# -- the DLQ --------------------------------------------------------------------------------


def test_dlq_pages_hold_every_entry_once_in_order_even_across_equal_times(
    redis_url: str, redis_client: redis.Redis, cluster_name: str
) -> None:
    # Ten entries over four partitions, most sharing a dead-letter time with others (one
    # script call buries many at the same instant), read a few at a time.
    times = {"a": 1.5, "b": 1.5, "c": 1.5, "d": 1.5, "e": 2.25, "f": 2.25, "g": 3.0,
             "h": 3.0, "i": 3.0, "j": 4.0}
    put_in_dlq(redis_client, cluster_name, times, partitions=4)
    assert len({Keys(cluster_name, 4).partition_of(i) for i in times}) > 1
    read = with_store(redis_url, cluster_name, lambda store: pages(store, 4), partitions=4)
    assert [p for page in read for p in page] == sorted(times.items(), key=lambda p: (p[1], p[0]))
    assert len(read) > 1

    inclusive = with_store(redis_url, cluster_name,
                           lambda store: pages(store, 4, since=2.25, until=3.0))
    assert [i for page in inclusive for i, _ in page] == ["e", "f", "g", "h", "i"]
    assert with_store(redis_url, cluster_name, lambda store: pages(store, 3, since=5.0)) == []


def test_entries_leaving_mid_read_make_none_of_the_others_skip(
    redis_url: str, redis_client: redis.Redis, cluster_name: str
) -> None:
    entries = {f"t{i:02}": 10.0 + i // 2 for i in range(12)}
    put_in_dlq(redis_client, cluster_name, entries, partitions=4)

    async def read_while_replaying(store: StateStore) -> list[str]:
        seen: list[str] = []
        async for page in store.dlq_pages(page_size=4):
            if not seen:
                put_in_dlq(redis_client, cluster_name, {"late": 100.0}, partitions=4)
            seen += [task_id for task_id, _ in page]
            await store.dlq_purge([task_id for task_id, _ in page])  # as a replay would
        return seen

    seen = with_store(redis_url, cluster_name, read_while_replaying, partitions=4)
    assert seen == [f"t{i:02}" for i in range(12)] + ["late"]


def test_queue_sizes_and_dead_letter_times(
    redis_url: str, redis_client: redis.Redis, cluster_name: str
) -> None:
    keys = Keys(cluster_name)
    put_in_dlq(redis_client, cluster_name, {"x": 7.5, "y": 8.0})
    redis_client.zadd(retry_key(cluster_name, "r"), {"r": 1.0})
    for task_id, eta in {"s1": 9.0, "s2": 9.5, "s3": 10.0}.items():
        redis_client.zadd(keys.scheduled(keys.partition_of(task_id)), {task_id: eta})

    async def read(store: StateStore) -> tuple[QueueSizes, list[float | None], int]:
        return (await store.queue_sizes(), await store.dlq_times(["y", "nope", "x"]),
                await store.dlq_count(7.6, 9.0))

    assert with_store(redis_url, cluster_name, read) == (
        QueueSizes(retries=1, dlq=2, scheduled=3), [8.0, None, 7.5], 1)


# -- accepts and transitions ------------------------------------------------------------------


def test_accept_codes_and_each_transition_land_in_the_record(
    redis_url: str, redis_client: redis.Redis, cluster_name: str
) -> None:
    ok, retried, dead = (build(f"k{i}", Task("demo.add", args=(i, i)), 1) for i in range(3))
    again = build("k0", Task("demo.add", args=(0, 0)), 1)
    again.task_id = ok.task_id  # the same task sent twice: its fingerprint is taken

    async def run(store: StateStore) -> list[object]:
        accepted = await store.accept("n1", 7, [ok, retried, dead])
        duplicate = await store.accept("n1", 7, [again])
        applied = await store.transition("n1", 7, [
            Transition.started(ok.task_id, 100.0),
            Transition.succeeded(ok.task_id, b"0", 100.0),
            Transition.retry(retried.task_id, 101.0, retry_in_s=5000.0, error_type="E",
                             error_message="m", traceback="tb"),
            Transition.dead(dead.task_id, 102.0, dead_reason="permanent", error_type="P",
                            error_message="no", traceback="tb2"),
        ])
        stale = await store.transition("n1", 6, [Transition.started(retried.task_id, 1.0)])
        return [accepted, duplicate, applied, stale,
                await store.records([ok.task_id, retried.task_id, dead.task_id])]

    accepted, duplicate, applied, stale, records = with_store(redis_url, cluster_name, run)
    assert [(a.code, a.state) for a in accepted] == [(AcceptCode.ACCEPTED, TaskState.QUEUED)] * 3
    assert [(d.code, d.task_id, d.state) for d in duplicate] == [
        (AcceptCode.DUPLICATE, ok.task_id, TaskState.QUEUED)]
    assert applied == [True] * 4 and stale == [False]
    done, waiting, buried = records
    assert (done.state, done.result, done.started_at) == (TaskState.SUCCEEDED, b"0", 100.0)
    assert (waiting.state, waiting.error_type, waiting.error_message, waiting.traceback) == (
        TaskState.RETRY_SCHEDULED, "E", "m", "tb")
    due = redis_client.zscore(retry_key(cluster_name, retried.task_id), retried.task_id)
    seconds, micros = redis_client.time()
    assert due is not None and 4990 < due - (seconds + micros / 1e6) <= 5000.0
    assert (buried.state, buried.dead_reason, buried.error_type, buried.traceback) == (
        TaskState.FAILED, "permanent", "P", "tb2")
    assert redis_client.zscore(dlq_key(cluster_name, dead.task_id), dead.task_id) is not None


def test_an_idempotent_task_is_a_duplicate_whatever_its_key(
    redis_url: str, cluster_name: str
) -> None:
    charge = Task("billing.charge", args=(1,), idempotency_key="order-1")
    first, second = build("user:1", charge, 1), build("user:2", charge, 1)

    async def run(store: StateStore) -> list[tuple[AcceptCode, str]]:
        results = await store.accept("n1", 1, [first]) + await store.accept("n2", 1, [second])
        return [(r.code, r.task_id) for r in results]

    assert with_store(redis_url, cluster_name, run) == [
        (AcceptCode.ACCEPTED, first.task_id), (AcceptCode.DUPLICATE, first.task_id)]


def test_a_finished_task_keeps_a_slim_record_and_its_fingerprint_outlives_it(
    redis_url: str, redis_client: redis.Redis, cluster_name: str
) -> None:
    envelope = build("user:1", Task("demo.add", args=(1, 2)), 1, reply_to="c1")

    async def run(store: StateStore) -> None:
        await store.accept("n1", 5, [envelope])
        await store.transition("n1", 5, [Transition.succeeded(envelope.task_id, b"3", 10.0)])

    with_store(redis_url, cluster_name, run, result_ttl_s=60, fingerprint_ttl_s=600)
    keys = Keys(cluster_name)
    record = {k.decode(): v.decode() for k, v in
              redis_client.hgetall(keys.task(envelope.task_id)).items()}
    assert set(record) == {"state", "result", "name", "key", "node", "epoch", "attempt",
                           "completions", "created_at", "accepted_at", "started_at",
                           "finished_at"}
    assert (record["state"], record["result"], record["name"], record["key"]) == (
        "SUCCEEDED", "3", "demo.add", "user:1")
    assert redis_client.object("encoding", keys.task(envelope.task_id)) == b"listpack"
    assert 0 < redis_client.ttl(keys.task(envelope.task_id)) <= 60
    fingerprint = keys.fingerprint(envelope.task_id, envelope.name, "")
    assert redis_client.get(fingerprint) == b"1" and 60 < redis_client.ttl(fingerprint) <= 600
    redis_client.delete(keys.task(envelope.task_id))  # as when the result TTL runs out

    async def resend(store: StateStore) -> tuple[AcceptCode, str]:
        (result,) = await store.accept("n1", 5, [envelope])
        return result.code, result.task_id

    assert with_store(redis_url, cluster_name, resend) == (AcceptCode.DUPLICATE, envelope.task_id)


def test_a_node_leaves_the_in_flight_sets_with_its_last_task(
    redis_url: str, cluster_name: str
) -> None:
    batch = [build(f"k{i}", Task("demo.add", args=(i, i)), 1) for i in range(40)]

    async def run(store: StateStore) -> list[set[str]]:
        await store.accept("n1", 1, batch[:20])
        await store.accept("n2", 1, batch[20:])
        seen = [await store.inflight_nodes()]
        await store.transition("n1", 1, [Transition.succeeded(e.task_id, b"0", 1.0)
                                         for e in batch[:20]])
        seen.append(await store.inflight_nodes())
        recovery = await store.recover("n2", None, max_recoveries=3)
        assert recovery.recovered == 20
        seen.append(await store.inflight_nodes())
        return seen

    assert with_store(redis_url, cluster_name, run) == [{"n1", "n2"}, {"n2"}, set()]


def test_done_announcements_reach_only_the_sender(redis_url: str, cluster_name: str) -> None:
    async def run() -> tuple[list[str], list[str]]:
        sender = StateStore.from_url(redis_url, cluster_name)
        other = StateStore.from_url(redis_url, cluster_name)
        heard: dict[str, list[str]] = {"sender": [], "other": []}
        subscribed = asyncio.Event()

        async def watch(store: StateStore, name: str) -> None:
            async def on_done(task_id: str) -> None:
                heard[name].append(task_id)

            async def ready() -> None:
                subscribed.set()

            await store.watch_done(on_done, ready)

        watchers = [asyncio.create_task(watch(sender, "sender")),
                    asyncio.create_task(watch(other, "other"))]
        envelope = build("k", Task("demo.add", args=(1, 1)), 1, reply_to=sender.reply_to)
        try:
            await subscribed.wait()
            await asyncio.sleep(0.2)  # both subscribed
            await sender.accept("n1", 1, [envelope])
            await sender.transition("n1", 1, [Transition.dead(
                envelope.task_id, 1.0, "permanent", "E", "m", "tb")])
            for _ in range(100):
                if heard["sender"]:
                    break
                await asyncio.sleep(0.05)
        finally:
            for watcher in watchers:
                watcher.cancel()
            await sender.close()
            await other.close()
        return heard["sender"], heard["other"]

    sender_heard, other_heard = asyncio.run(run())
    assert len(sender_heard) == 1 and other_heard == []


# -- durability ----------------------------------------------------------------------------


def test_replica_durability_without_a_replica_refuses_and_memory_accepts(
    redis_url: str, cluster_name: str
) -> None:
    envelope = build("k", Task("demo.add", args=(1, 1)), 1)

    async def run(store: StateStore) -> list[tuple[AcceptCode, str]]:
        store.durability = AcceptDurability.REPLICA
        refused = await store.accept("n1", 1, [envelope])
        store.durability = AcceptDurability.MEMORY
        again = build("k", Task("demo.add", args=(1, 1)), 1)
        accepted = await store.accept("n1", 1, [again])
        return [(r.code, r.message) for r in refused + accepted]

    (refused, why), (accepted, _) = with_store(redis_url, cluster_name, run)
    assert refused is AcceptCode.UNAVAILABLE and "replica durability not confirmed" in why
    assert accepted is AcceptCode.ACCEPTED


@pytest.mark.parametrize(("facts", "durability", "command", "warned"), [
    (ServerFacts((7, 0, 15), True, "always", 1), "aof", (), None),
    (ServerFacts((7, 0, 15), True, "everysec", 1), "aof", (), "no WAITAOF"),
    (ServerFacts((7, 2, 4), True, "everysec", 1), "aof", ("WAITAOF", 1, 0, 2000), None),
    (ServerFacts((7, 4, 2), False, "everysec", 1), "aof", (), "appendonly no"),
    (ServerFacts((7, 0, 15), False, None, 1), "replica", ("WAIT", 1, 2000), None),
    (ServerFacts((7, 0, 15), True, "always", 0), "replica", ("WAIT", 1, 2000), "no replica"),
    (ServerFacts((7, 0, 15), False, None, 0), "memory", (), None),
])
def test_each_durability_is_kept_by_the_command_the_server_has_or_said_why_not(
    facts: ServerFacts, durability: str, command: tuple[object, ...], warned: str | None
) -> None:
    mode = AcceptDurability.parse(durability)
    assert facts.wait_command(mode) == command
    warning = facts.warning(mode)
    assert (warning is None) if warned is None else (warning is not None and warned in warning)


def test_an_unknown_durability_is_refused() -> None:
    with pytest.raises(ConfigError, match="memory, replica, aof"):
        AcceptDurability.parse("disk")


def test_a_new_task_with_a_taken_id_is_refused_and_the_record_kept(
    redis_url: str, redis_client: redis.Redis, cluster_name: str
) -> None:
    """A client task whose id has a record is refused, even with a fresh idempotency key."""
    first = build("k1", Task("demo.add", args=(1, 1)), 1)
    intruder = build("k2", Task("demo.add", args=(9, 9), idempotency_key="fresh"), 1)
    intruder.task_id = first.task_id

    async def run(store: StateStore) -> list[object]:
        await store.accept("n1", 7, [first])
        await store.transition("n1", 7, [Transition.succeeded(first.task_id, b"2", 1.0)])
        before = redis_client.hgetall(Keys(cluster_name).task(first.task_id))
        refused = await store.accept("n2", 8, [intruder])
        return [before, refused, await store.inflight("n2")]

    before, refused, inflight = with_store(redis_url, cluster_name, run)
    assert [(r.code, r.task_id, r.state) for r in refused] == [
        (AcceptCode.ID_TAKEN, first.task_id, TaskState.SUCCEEDED)]
    assert redis_client.hgetall(Keys(cluster_name).task(first.task_id)) == before
    assert inflight == {}
    assert redis_client.get(
        Keys(cluster_name).fingerprint(first.task_id, "demo.add", "fresh")) is None


def test_fingerprints_of_different_names_and_keys_never_meet(
    redis_url: str, cluster_name: str
) -> None:
    """Name ``a`` with key ``b:c`` and name ``a:b`` with key ``c`` are two submissions."""
    keys = Keys(cluster_name)
    one = build("k", Task("a", idempotency_key="b:c"), 1)
    other = build("k", Task("a:b", idempotency_key="c"), 1)
    assert keys.fingerprint(one.task_id, "a", "b:c") != keys.fingerprint(other.task_id, "a:b", "c")
    results = with_store(redis_url, cluster_name, lambda store: store.accept("n1", 1, [one, other]))
    assert [(r.code, r.task_id) for r in results] == [
        (AcceptCode.ACCEPTED, one.task_id), (AcceptCode.ACCEPTED, other.task_id)]


def test_recovery_is_fenced_by_epoch_and_counts_only_when_asked(
    redis_url: str, cluster_name: str
) -> None:
    old, new, blip = (build(f"k{i}", Task("demo.add", args=(i, i)), 1) for i in range(3))

    async def run(store: StateStore) -> list[object]:
        await store.accept("n1", 100, [old])
        await store.accept("n1", 2**60 + 5, [new])  # a later registration (zxids pass 2^53)
        fenced = await store.recover("n1", max_epoch=2**60 + 4, max_recoveries=3)
        left = await store.inflight("n1")
        await store.accept("n1", 2**60 + 5, [blip])
        uncounted = await store.recover("n1", max_epoch=None, max_recoveries=0)
        return [fenced, left, uncounted, await store.records([old.task_id, new.task_id,
                                                               blip.task_id])]

    fenced, left, uncounted, (r_old, r_new, r_blip) = with_store(redis_url, cluster_name, run)
    assert (fenced.recovered, fenced.poisoned) == (1, 0)
    assert left == {new.task_id: 2**60 + 5}  # the live owner's task stays its own
    assert uncounted.recovered == 2
    assert (r_old.state, r_old.recoveries) == (TaskState.RETRY_SCHEDULED, 1)
    assert (r_new.state, r_new.recoveries) == (TaskState.RETRY_SCHEDULED, 0)
    assert (r_blip.state, r_blip.recoveries) == (TaskState.RETRY_SCHEDULED, 0)


# -- rate-limit tokens and progress ------------------------------------------------------


def test_a_bucket_grants_its_burst_then_its_rate_and_says_when_to_ask_again(
    redis_url: str, cluster_name: str
) -> None:
    async def body(store: StateStore) -> None:
        first = await store.take_tokens({"t.fast": TokenAsk(100, 50.0, 10.0),
                                         "t.slow": TokenAsk(3, 1.0, 1.0)})
        assert first["t.fast"].granted == 10  # a missing bucket is a full one
        assert 0.09 <= first["t.fast"].wait_s <= 0.11  # until half a burst is back: 5 / 50
        assert first["t.slow"].granted == 1 and 0.9 <= first["t.slow"].wait_s <= 1.0
        again = await store.take_tokens({"t.fast": TokenAsk(100, 50.0, 10.0)})
        assert again["t.fast"].granted == 0  # the other caller (here: us) took them
        await asyncio.sleep(first["t.fast"].wait_s)
        later = await store.take_tokens({"t.fast": TokenAsk(3, 50.0, 10.0)})
        assert later["t.fast"].granted == 3 and later["t.fast"].wait_s == 0.0

    with_store(redis_url, cluster_name, body)


def test_progress_is_written_only_for_tasks_still_in_flight_under_the_epoch(
    redis_url: str, redis_client: redis.Redis, cluster_name: str
) -> None:
    keys = Keys(cluster_name)
    for task_id, epoch in (("live", 7), ("other-epoch", 6)):
        redis_client.hset(keys.inflight("n1", keys.partition_of(task_id)), task_id, epoch)
    redis_client.hset(keys.task("live"), "state", "RUNNING")
    report = TaskProgress(0.5, {"step": 2}, 1234.5)

    async def body(store: StateStore) -> tuple[int, TaskProgress | None]:
        written = await store.record_progress("n1", 7, [("live", report), ("other-epoch", report),
                                                        ("finished", report)])
        return written, await store.progress("live")

    assert with_store(redis_url, cluster_name, body) == (1, report)
    assert not redis_client.exists(keys.task("finished"))  # never creates a record
    assert not redis_client.hexists(keys.task("other-epoch"), "progress")
