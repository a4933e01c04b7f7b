"""The state store against a real Redis: the DLQ in pages, sizes, accept codes, transitions,
rate-limit tokens and progress."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis

from ringpool import Task, TaskProgress, TaskState
from ringpool.core.envelope import build
from ringpool.store.keys import Keys
from ringpool.store.store import AcceptCode, QueueSizes, StateStore, TokenAsk, Transition

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
    redis_client.zadd(keys.scheduled, {"s1": 9.0, "s2": 9.5, "s3": 10.0})

    async def read(store: StateStore) -> tuple[QueueSizes, list[float | None]]:
        return await store.queue_sizes(), await store.dlq_times(["y", "nope", "x"])

    assert with_store(redis_url, cluster_name, read) == (
        QueueSizes(retries=1, dlq=2, scheduled=3), [8.0, None, 7.5])


def test_accept_codes_and_each_transition_land_in_the_record(
    redis_url: str, redis_client: redis.Redis, cluster_name: str
) -> None:
    keys = Keys(cluster_name)
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
    assert [(d.code, d.task_id) for d in duplicate] == [(AcceptCode.DUPLICATE, ok.task_id)]
    assert applied == [True] * 4 and stale == [False]
    done, waiting, buried = records
    assert (done.state, done.result, done.started_at) == (TaskState.SUCCEEDED, b"0", 100.0)
    assert (waiting.state, waiting.error_type, waiting.error_message, waiting.traceback) == (
        TaskState.RETRY_SCHEDULED, "E", "m", "tb")
    due = redis_client.zscore(keys.retries, retried.task_id)
    seconds, micros = redis_client.time()
    assert due is not None and 4990 < due - (seconds + micros / 1e6) <= 5000.0
    assert (buried.state, buried.dead_reason, buried.error_type, buried.traceback) == (
        TaskState.FAILED, "permanent", "P", "tb2")
    assert redis_client.zscore(keys.dlq, dead.task_id) is not None


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
        before = redis_client.hgetall(store.keys.task(first.task_id))
        refused = await store.accept("n2", 8, [intruder])
        return [before, refused, await store.inflight("n2")]

    before, refused, inflight = with_store(redis_url, cluster_name, run)
    assert [(r.code, r.task_id, r.state) for r in refused] == [
        (AcceptCode.ID_TAKEN, first.task_id, TaskState.SUCCEEDED)]
    assert redis_client.hgetall(Keys(cluster_name).task(first.task_id)) == before
    assert inflight == {}
    assert redis_client.get(Keys(cluster_name).fingerprint("demo.add", "fresh", "")) is None


def test_fingerprints_of_different_names_and_keys_never_meet(
    redis_url: str, cluster_name: str
) -> None:
    """Name ``a`` with key ``b:c`` and name ``a:b`` with key ``c`` are two submissions."""
    keys = Keys(cluster_name)
    assert keys.fingerprint("a", "b:c", "") != keys.fingerprint("a:b", "c", "")
    one = build("k", Task("a", idempotency_key="b:c"), 1)
    other = build("k", Task("a:b", idempotency_key="c"), 1)
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
    redis_client.hset(keys.inflight("n1"), mapping={"live": 7, "other-epoch": 6})
    redis_client.hset(keys.task("live"), "state", "RUNNING")
    report = TaskProgress(0.5, {"step": 2}, 1234.5)

    async def body(store: StateStore) -> tuple[int, TaskProgress | None]:
        written = await store.record_progress("n1", 7, [("live", report), ("other-epoch", report),
                                                        ("finished", report)])
        return written, await store.progress("live")

    assert with_store(redis_url, cluster_name, body) == (1, report)
    assert not redis_client.exists(keys.task("finished"))  # never creates a record
    assert not redis_client.hexists(keys.task("other-epoch"), "progress")
