"""A node's side of the ordered keys' handoff leases, in process against a real Redis: a
task waits while another node holds its key, a lease lost while the node was paused
stops the key's next start until it is taken again, and a cancel or a drain of waiting
tasks lets the key go."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from ringpool import Task, TaskState
from ringpool.core import codec
from ringpool.core.envelope import build
from ringpool.pool import FixedPolicy, Pools, PoolSettings
from ringpool.store.keys import Keys
from ringpool.store.store import StateStore
from ringpool.task import REGISTRY
from ringpool.v1 import node_pb2 as pb
from ringpool_node.execution import Execution
from tests.helpers import eventually_async
from tests.tasks_ordered import runs, step

EPOCH = 7
TTL_S = 0.6


@dataclass
class Node:
    execution: Execution
    store: StateStore
    keys: Keys
    log: Path

    async def start(self, key: str, gate: Path | None = None) -> pb.TaskEnvelope:
        """Accept and start an ordered ``ordered.step`` of ``key``."""
        envelope = build(key, Task(step.name, args=(str(self.log), str(gate or "")),
                                   ordered=True), 1)
        await self.store.accept("n1", EPOCH, [envelope])
        args, kwargs = codec.decode_call(envelope.payload)
        self.execution.start(envelope, REGISTRY[step.name], args, kwargs, EPOCH, None)
        return envelope

    def started(self, envelope: pb.TaskEnvelope) -> bool:
        return envelope.task_id in runs(str(self.log))

    async def state(self, envelope: pb.TaskEnvelope) -> TaskState:
        (state,) = await self.store.states([envelope.task_id])
        return state


@pytest.fixture
async def node(redis_url: str, cluster_name: str, tmp_path: Path) -> AsyncIterator[Node]:
    store = StateStore.from_url(redis_url, cluster_name, partitions=4)
    pools = Pools(PoolSettings(min_workers=2, max_workers=2), policy=FixedPolicy(2))
    execution = Execution("n1", store, pools, order_lease_ttl_s=TTL_S)
    try:
        yield Node(execution, store, await store.layout(), tmp_path / "runs.log")
    finally:
        await execution.leases.close()
        await pools.release(1.0)
        await store.close()


async def test_a_task_waits_while_another_node_holds_its_key_then_runs(
    node: Node, redis_client: redis.Redis
) -> None:
    lease = node.keys.order_lease("k")
    redis_client.set(lease, "n2:3", px=60_000)
    task = await node.start("k")
    await eventually_async(lambda: node.execution.leases.waiting == 1, 10, "the task to wait")
    assert await node.state(task) is TaskState.QUEUED and not node.started(task)
    released_at = time.time()
    redis_client.delete(lease)  # n2 is done with the key
    await eventually_async(lambda: node.execution.pending == 0, 10, "the task to run")
    assert runs(str(node.log))[task.task_id]["start"] >= released_at
    assert await node.state(task) is TaskState.SUCCEEDED
    # Released once its last task here is done (after a short linger).
    await eventually_async(lambda: not redis_client.exists(lease), 10, "the lease to go")


async def test_a_lease_lost_while_paused_stops_the_keys_next_start_until_taken_again(
    node: Node, redis_client: redis.Redis, tmp_path: Path
) -> None:
    lease, gate = node.keys.order_lease("k"), tmp_path / "gate"
    gate.touch()
    first = await node.start("k", gate)
    second = await node.start("k")
    await eventually_async(lambda: node.started(first), 10, "the first task to start")
    assert redis_client.get(lease) == f"n1:{EPOCH}".encode()
    # A pause past the lease's TTL (the event loop stops, as under SIGSTOP): the lease
    # lapses and another node takes it; meanwhile the first task's thread finishes.
    time.sleep(TTL_S * 1.5)
    assert not redis_client.exists(lease)
    redis_client.set(lease, "n2:3", px=60_000)
    gate.unlink()
    await eventually_async(lambda: runs(str(node.log))[first.task_id].get("end"), 10,
                           "the first task to end")
    await eventually_async(lambda: node.execution.pending == 1, 10, "the first to be recorded")
    assert node.execution.leases.waiting == 1 and not node.started(second)
    assert await node.state(second) is TaskState.QUEUED
    released_at = time.time()
    redis_client.delete(lease)
    await eventually_async(lambda: node.execution.pending == 0, 10, "the second task to run")
    assert runs(str(node.log))[second.task_id]["start"] >= released_at


async def test_a_cancelled_waiting_task_never_runs_and_leaves_the_key(
    node: Node, redis_client: redis.Redis
) -> None:
    lease = node.keys.order_lease("k")
    redis_client.set(lease, "n2:3", px=60_000)
    task = await node.start("k")
    await eventually_async(lambda: node.execution.leases.waiting == 1, 10, "the task to wait")
    assert node.execution.stop(task.task_id, cancelled=True)
    assert node.execution.pending == 0 and node.execution.leases.waiting == 0
    redis_client.delete(lease)
    assert not node.execution.stop(task.task_id, cancelled=True)
    assert redis_client.get(lease) is None  # nobody asks for it any more
    assert not node.started(task)


async def test_a_drain_gives_up_other_holders_keys_at_once_hands_back_the_rest_keeps_what_runs(
    node: Node, redis_client: redis.Redis, tmp_path: Path
) -> None:
    ours, theirs, gate = node.keys.order_lease("k"), node.keys.order_lease("j"), tmp_path / "gate"
    redis_client.set(theirs, "n2:3", px=60_000)
    gate.touch()
    running = await node.start("k", gate)
    behind = await node.start("k")
    elsewhere = await node.start("j")
    await eventually_async(lambda: node.started(running), 10, "the first task to start")
    await eventually_async(lambda: node.execution.leases.waiting == 2, 10, "two tasks to wait")
    node.execution.leases.drain()
    # Another node's key is given up at once; ours waits for the drain's end.
    assert (node.execution.leases.waiting, node.execution.pending) == (1, 2)
    assert node.execution.withdraw() == 1  # handed back: it never starts here
    assert node.execution.pending == 1
    # The lease of what still runs is kept (renewed past its TTL) ...
    deadline = time.monotonic() + TTL_S * 2
    while time.monotonic() < deadline:
        assert redis_client.get(ours) == f"n1:{EPOCH}".encode()
        await asyncio.sleep(0.05)
    gate.unlink()
    # ... and released as soon as it is done.
    await eventually_async(lambda: node.execution.pending == 0, 10, "the running task to end")
    await eventually_async(lambda: not redis_client.exists(ours), 5, "the lease to go at once")
    assert redis_client.get(theirs) == b"n2:3"
    assert not node.started(behind) and not node.started(elsewhere)


async def test_a_redelivered_task_waiting_beside_its_stale_copy_runs_and_leaves_the_books(
    node: Node, redis_client: redis.Redis
) -> None:
    """A task handed back after a lost session comes back while its stale copy still waits
    here: both copies wait in the key's line, both leave it."""
    lease = node.keys.order_lease("k")
    redis_client.set(lease, "n2:3", px=60_000)
    task = await node.start("k")
    args, kwargs = codec.decode_call(task.payload)
    node.execution.start(task, REGISTRY[step.name], args, kwargs, EPOCH, None)
    await eventually_async(lambda: node.execution.leases.waiting == 2, 10, "both to wait")
    redis_client.delete(lease)
    await eventually_async(lambda: node.execution.pending == 0, 10, "both copies to finish")
    assert node.execution.leases.waiting == 0 and not node.execution.active
    assert await node.state(task) is TaskState.SUCCEEDED


async def test_a_start_the_pools_refuse_leaves_its_key_free_for_the_next(
    node: Node, redis_client: redis.Redis
) -> None:
    await node.execution.pools.release(1.0)  # the node is stopping: the pools take nothing
    first = await node.start("k")
    await eventually_async(lambda: node.execution.pending == 0, 10,
                           "the refused start to leave the books")
    assert not node.started(first)
    assert await node.state(first) is TaskState.QUEUED  # in flight, for the hand-back
    assert node.execution.leases.waiting == 0
    await eventually_async(lambda: not redis_client.exists(node.keys.order_lease("k")), 10,
                           "the key's lease to go with its last task")
