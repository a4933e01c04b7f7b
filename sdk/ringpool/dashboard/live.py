"""The dashboard's live view of one cluster, kept current in the background.

ZooKeeper watches keep the ring current (``Membership``); a poller asks every member
for its Status each ``poll_interval_s``, all at once, each with a deadline, and reads
the queue sizes and the coordinator leader. Pages render from the last ``Snapshot``
and never wait on a node; server-sent events push each new one to open pages.
Throughput and latency come from the nodes' counters of finished runs and their
summed run time, differenced between polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import grpc
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NoNodeError

from ringpool.client.links import call_metadata, open_channel
from ringpool.client.settings import ClientSettings
from ringpool.core.membership import Membership
from ringpool.core.naming import Names
from ringpool.core.ring import Member, Ring
from ringpool.ops.members import member_state
from ringpool.store.store import StateStore
from ringpool.v1 import node_pb2 as pb
from ringpool.v1 import node_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
HISTORY = 90  # polls kept for the sparklines


@dataclass(frozen=True)
class Pool:
    kind: str
    workers: int
    max_workers: int
    running: int
    queued: int


@dataclass(frozen=True)
class NodeView:
    """One member as the last poll saw it."""

    node_id: str
    address: str
    share: float  # of the key space
    state: str  # ringpool.ops.members.MEMBER_STATES
    version: str = ""
    group: str = ""  # '' is the default group
    in_flight: int = 0
    queued: int = 0
    running: int = 0
    pools: tuple[Pool, ...] = ()
    throughput: float = 0.0  # finished runs per second since the previous poll
    started_at: float = 0.0
    error: str = ""
    ring_stale_s: float = 0.0  # how long it has served on its last ring without ZooKeeper

    @property
    def load(self) -> float:
        """The busiest tier's running share of the most it may run (0..1)."""
        return max((p.running / p.max_workers for p in self.pools if p.max_workers), default=0.0)


@dataclass(frozen=True)
class Snapshot:
    at: float
    ring_version: int
    nodes: tuple[NodeView, ...]
    leader: str | None
    retry_set: int
    dlq: int
    throughput: tuple[float, ...]  # cluster finished runs per second, oldest first
    latency_ms: tuple[float | None, ...]  # mean run time of those runs
    error: str = ""  # what could not be read this time (Redis, ZooKeeper)

    @property
    def in_flight(self) -> int:
        return sum(n.in_flight for n in self.nodes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for node, view in zip(data["nodes"], self.nodes, strict=True):
            node["load"] = round(view.load, 3)
        data["in_flight"] = self.in_flight
        return data


EMPTY = Snapshot(0.0, 0, (), None, 0, 0, (), ())


@dataclass
class _Counters:
    runs: int
    seconds: float
    at: float


@dataclass
class _History:
    throughput: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))
    latency_ms: deque[float | None] = field(default_factory=lambda: deque(maxlen=HISTORY))


def coordinator_leader(zk: KazooClient, names: Names) -> str | None:
    """The identifier of the coordinator that leads, if any (the first in election order)."""
    try:
        contenders = zk.Election(names.election).contenders()
    except NoNodeError:
        return None
    return str(contenders[0]) if contenders else None


class ClusterView:
    """Ring, node status, queue sizes and throughput history of one cluster."""

    def __init__(self, zk: KazooClient, store: StateStore, client: ClientSettings,
                 poll_interval_s: float) -> None:
        self.zk = zk
        self.store = store
        self.client = client
        self.names = Names(client.cluster)
        self.poll_interval_s = poll_interval_s
        self.membership = Membership(zk, client.cluster)
        self.snapshot = EMPTY
        self._channels: dict[str, tuple[str, grpc.aio.Channel]] = {}
        self._counters: dict[str, _Counters] = {}
        self._history = _History()
        self._changed = asyncio.Condition()
        self._leader: str | None = None

    @property
    def ring(self) -> Ring:
        return self.membership.ring

    async def run(self) -> None:
        """Poll until cancelled; every failure is logged and shown, never fatal."""
        await asyncio.to_thread(self.membership.start)
        try:
            while True:
                started = time.monotonic()
                try:
                    snapshot = await self.poll()
                except Exception as exc:
                    log.warning("polling the cluster failed: %s", exc)
                    snapshot = replace(self.snapshot, error=str(exc))
                async with self._changed:
                    self.snapshot = snapshot
                    self._changed.notify_all()
                await asyncio.sleep(max(0.0, self.poll_interval_s - (time.monotonic() - started)))
        finally:
            await asyncio.to_thread(self.membership.stop)
            for _, channel in self._channels.values():
                await channel.close(grace=None)

    async def snapshots(self) -> AsyncIterator[Snapshot]:
        """The current snapshot, then each new one as it comes."""
        seen: Snapshot | None = None
        while True:
            async with self._changed:
                while self.snapshot is seen:
                    await self._changed.wait()
                seen = self.snapshot
            yield seen

    async def poll(self) -> Snapshot:
        ring = self.ring
        members = sorted(ring.members.values(), key=lambda m: m.node_id)
        timeout = min(2.0, self.poll_interval_s)
        replies, sizes, leader = await asyncio.gather(
            asyncio.gather(*(self._status(m, timeout) for m in members)),
            self.store.queue_sizes(),
            self._last_leader(),
        )
        await self._forget_departed(ring)
        now = time.time()
        shares = ring.shares()
        nodes, runs, seconds, rate = [], 0, 0.0, 0.0
        for member, reply in zip(members, replies, strict=True):
            share = shares.get(member.node_id, 0.0)
            if isinstance(reply, str):
                nodes.append(NodeView(member.node_id, member.addr, share,
                                      member_state(reply, False, ""),
                                      started_at=member.started_at, error=reply))
                continue
            node_runs, node_seconds, node_rate = self._finished_since(member.node_id, reply, now)
            runs, seconds, rate = runs + node_runs, seconds + node_seconds, rate + node_rate
            nodes.append(NodeView(
                member.node_id, member.addr, share,
                member_state(None, reply.draining, reply.zookeeper_state), version=reply.version,
                group=reply.group, in_flight=reply.in_flight, queued=reply.queued,
                running=reply.running,
                pools=tuple(Pool(p.kind, p.workers, p.max_workers, p.running, p.queued)
                            for p in reply.pools),
                throughput=round(node_rate, 2), started_at=reply.started_at,
                ring_stale_s=round(reply.ring_stale_s, 1)))
        history = self._history
        history.throughput.append(round(rate, 2))
        history.latency_ms.append(round(seconds / runs * 1000, 3) if runs else None)
        return Snapshot(now, ring.version, tuple(nodes), leader, sizes.retries, sizes.dlq,
                        tuple(history.throughput), tuple(history.latency_ms))

    def _finished_since(self, node_id: str, reply: pb.StatusResponse, now: float
                        ) -> tuple[int, float, float]:
        """Runs finished on a node since its previous poll, their run time, and the rate."""
        before = self._counters.get(node_id)
        self._counters[node_id] = _Counters(reply.runs_finished, reply.run_seconds_total, now)
        if before is None or reply.runs_finished < before.runs or now <= before.at:
            return 0, 0.0, 0.0  # first sight, or the node restarted
        runs = reply.runs_finished - before.runs
        return runs, reply.run_seconds_total - before.seconds, runs / (now - before.at)

    async def _last_leader(self) -> str | None:
        """The leading coordinator; while ZooKeeper is away, the last one seen (the nodes
        serve on their last ring meanwhile, and the page goes on showing them)."""
        if self.zk.connected:
            try:
                self._leader = await asyncio.to_thread(coordinator_leader, self.zk, self.names)
            except KazooException as exc:
                log.info("reading the coordinator leader failed: %s", exc)
        return self._leader

    async def _status(self, member: Member, timeout_s: float) -> pb.StatusResponse | str:
        """The member's Status, or why it could not be had."""
        known = self._channels.get(member.node_id)
        if known is None or known[0] != member.addr:
            if known is not None:
                await known[1].close(grace=None)
            known = (member.addr, open_channel(member.addr, self.client))
            self._channels[member.node_id] = known
        try:
            reply: pb.StatusResponse = await pb_grpc.NodeStub(known[1]).Status(
                pb.StatusRequest(), metadata=call_metadata(self.client), timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            return f"{exc.code().name}: {exc.details()}"
        return reply

    async def _forget_departed(self, ring: Ring) -> None:
        for node_id in set(self._channels) - set(ring.members):
            _, channel = self._channels.pop(node_id)
            self._counters.pop(node_id, None)
            with contextlib.suppress(Exception):
                await channel.close(grace=None)
