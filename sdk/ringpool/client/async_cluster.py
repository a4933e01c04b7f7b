"""``AsyncCluster``: route by key, send in batches, resend on moved ownership, wait for results.

The sync ``Cluster`` drives this same object from a private event loop, so the
routing, resend and result logic exists once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Generator, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

from kazoo.client import KazooClient

from ringpool.client.links import LinkDown, NodeLink
from ringpool.client.metrics import client_metrics
from ringpool.client.results import ResultWaiter, unwrap
from ringpool.client.settings import ClientSettings
from ringpool.core import envelope as envelopes
from ringpool.core import telemetry
from ringpool.core.membership import Membership, connect_zookeeper
from ringpool.core.protocol import BACK_OFF, REROUTE, TaskState, code_name, refusal
from ringpool.core.ring import Ring, RouteCache
from ringpool.errors import ClusterUnavailable, NoNodesAvailable, Overloaded, TooManyHops
from ringpool.store.store import StateStore
from ringpool.task import Task
from ringpool.v1 import node_pb2 as pb

log = logging.getLogger(__name__)

CLOSE_STEP_S = 5.0  # a close step still running after this is left behind, with a warning


async def _at_most(seconds: float, step: Coroutine[Any, Any, None], what: str) -> None:
    """Run ``step`` for up to ``seconds``; past that, log and go on without it."""
    task = asyncio.ensure_future(step)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        log.warning("closing %s took over %.1fs; going on without it", what, seconds)
    elif task.exception() is not None:
        log.warning("closing %s failed: %r", what, task.exception())


class AsyncTaskHandle:
    """A dispatched task: its id, its state, and its result when it has one."""

    def __init__(self, cluster: AsyncCluster, task_id: str, key: str) -> None:
        self._cluster = cluster
        self.task_id = task_id
        self.key = key
        self._future = cluster._results.expect(task_id)  # keeps the pushed result alive

    def __repr__(self) -> str:
        return f"<TaskHandle {self.task_id} key={self.key!r}>"

    async def status(self) -> TaskState:
        """Where the task is now: QUEUED, RUNNING, RETRY_SCHEDULED, SUCCEEDED, FAILED (in
        the DLQ), or UNKNOWN (no record)."""
        if self._future.done() and self._future.exception() is None:
            return TaskState.from_wire(self._future.result().state)
        (state,) = await self._cluster.store.states([self.task_id])
        return state

    def pushed_result(self) -> pb.TaskResult | None:
        """The result if it has already arrived, else None (safe from any thread)."""
        future = self._future
        if future.done() and not future.cancelled() and future.exception() is None:
            return future.result()
        return None

    def expects_push(self) -> bool:
        """Whether the result should arrive on a stream (False once the client falls back
        to Redis: then the fast wait would only add delay)."""
        return not self._cluster._results.listening

    def when_done(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` on the event loop once a result (or error) is in."""
        self._future.add_done_callback(lambda _: callback())

    async def result(self, timeout: float | None = None) -> Any:
        """The return value; raises TaskFailed, ResultTimeout (a TimeoutError), TaskNotFound."""
        return unwrap(await self._cluster._results.wait(self.task_id, timeout))


class AsyncCluster:
    """Connect with ``async with AsyncCluster.connect(...) as cluster`` or ``await``."""

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self.store = StateStore.from_url(settings.redis, settings.cluster)
        self._results = ResultWaiter(self.store, settings.result_poll_s)
        self._routes = RouteCache()
        self.metrics = client_metrics(settings.metrics_registry)
        self._links: dict[str, NodeLink] = {}
        self._zk: KazooClient | None = None
        self.membership: Membership | None = None
        self._started = False

    @classmethod
    def connect(
        cls,
        zk: str | None = None,
        redis: str | None = None,
        cluster: str | None = None,
        token: str | None = None,
        **options: Any,
    ) -> AsyncCluster:
        """A cluster client; ``RINGPOOL_*`` variables fill what is not given."""
        return cls(ClientSettings.resolve(zk, redis, cluster, token, **options))

    async def start(self) -> AsyncCluster:
        if self._started:
            return self
        settings = self.settings
        self._zk = await asyncio.to_thread(
            connect_zookeeper, settings.zk, settings.connect_timeout_s, settings.zk_auth
        )
        self.membership = await asyncio.to_thread(
            Membership(self._zk, settings.cluster).start
        )
        self._started = True
        return self

    def __await__(self) -> Generator[Any, None, AsyncCluster]:
        return self.start().__await__()

    async def __aenter__(self) -> AsyncCluster:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop listening, close every link and connection; never waits forever on one."""
        await _at_most(CLOSE_STEP_S, self._results.close(), "the result listener")
        for link in self._links.values():
            await _at_most(CLOSE_STEP_S, link.close(), f"the link to {link.node_id}")
        self._links.clear()
        if self.membership is not None:
            await asyncio.to_thread(self.membership.stop)
        if self._zk is not None:
            await asyncio.to_thread(self._zk.stop)
            self._zk.close()
        await self.store.close()
        self._started = False

    # -- routing -------------------------------------------------------------------

    @property
    def ring(self) -> Ring:
        if self.membership is None:
            raise ClusterUnavailable("not connected: use `async with AsyncCluster.connect()`")
        return self.membership.ring

    def owner(self, key: str) -> str:
        """The node id that owns ``key`` on the current ring."""
        envelopes.check_key(key, self.settings.limits)
        return self._routes.owner(self.ring, key)

    def _link(self, ring: Ring, node_id: str) -> NodeLink:
        addr = ring.members[node_id].addr
        link = self._links.get(node_id)
        if link is None or link.addr != addr or link.closed:
            link = NodeLink(node_id, addr, self.settings, self._results.deliver)
            self._links[node_id] = link
        return link

    async def _ring_with_members(self, deadline: float) -> Ring:
        ring = self.ring
        if len(ring):
            return ring
        assert self.membership is not None
        try:
            return await asyncio.to_thread(
                self.membership.wait_for, lambda r: len(r) > 0,
                max(0.0, min(deadline - time.monotonic(), self.settings.connect_timeout_s)),
            )
        except ClusterUnavailable:
            raise NoNodesAvailable("no nodes in the ring") from None

    async def _refresh_ring(self, newer_than: int) -> None:
        """Catch up with a ring version a node told us about (or just re-read)."""
        assert self.membership is not None
        membership = self.membership
        if membership.ring.version > newer_than:
            return
        await asyncio.to_thread(membership.refresh)

    # -- sending -------------------------------------------------------------------

    async def send(self, batch: Sequence[pb.TaskEnvelope]) -> list[pb.Ack]:
        """Deliver envelopes to their owners; final acks (ACCEPTED, DUPLICATE or a refusal).

        WRONG_OWNER and DRAINING resend after a ring refresh (at most ``max_hops``
        times); OVERLOADED, INTERNAL and broken streams back off and resend until
        ``dispatch_timeout_s``.
        """
        settings = self.settings
        deadline = time.monotonic() + settings.dispatch_timeout_s
        final: list[pb.Ack | None] = [None] * len(batch)
        pending = list(range(len(batch)))
        hops = 0
        backoff = 0.02
        while pending:
            ring = await self._ring_with_members(deadline)
            groups: dict[str, list[int]] = {}
            for index in pending:
                envelope = batch[index]
                envelope.ring_version = ring.version
                groups.setdefault(self._routes.owner(ring, envelope.key), []).append(index)
            remaining = max(0.001, deadline - time.monotonic())
            sends = [
                self._send_to(self._link(ring, node), [batch[i] for i in indexes], remaining)
                for node, indexes in groups.items()
            ]
            # One owner (a single dispatch) is awaited directly: no tasks, no gather.
            answers = [await sends[0]] if len(sends) == 1 else await asyncio.gather(*sends)
            pending = []
            rerouted = False
            wait_s = 0.0
            newest = ring.version
            for indexes, answer in zip(groups.values(), answers, strict=True):
                if isinstance(answer, LinkDown | TimeoutError):
                    log.debug("resending %d tasks: %s", len(indexes), answer)
                    self.metrics.resend["unreachable"].inc(len(indexes))
                    pending += indexes
                    wait_s = max(wait_s, backoff)
                    continue
                if isinstance(answer, BaseException):
                    raise answer
                for index, ack in zip(indexes, answer, strict=True):
                    if ack.code in REROUTE:
                        rerouted = True
                        newest = max(newest, ack.ring_version)
                        pending.append(index)
                        self.metrics.resends.labels(code_name(ack.code).lower()).inc()
                    elif ack.code in BACK_OFF:
                        wait_s = max(wait_s, ack.retry_after_s or backoff)
                        pending.append(index)
                        self.metrics.resends.labels(code_name(ack.code).lower()).inc()
                    else:
                        final[index] = ack
            if not pending:
                break
            if rerouted:
                await self._refresh_ring(newest if newest > ring.version else ring.version)
                if self.ring.version > ring.version:
                    hops += 1  # ownership really moved
                    if hops > settings.max_hops:
                        raise TooManyHops(f"ownership kept moving after {settings.max_hops} resends")
                else:
                    # ZooKeeper has not caught up with the node yet (e.g. a drain that has
                    # not left the ring): wait for it instead of burning hops.
                    wait_s = max(wait_s, backoff)
            if time.monotonic() + wait_s >= deadline:
                if rerouted or any(isinstance(a, BaseException) for a in answers):
                    raise ClusterUnavailable(
                        f"owners unreachable for {settings.dispatch_timeout_s}s")
                raise Overloaded(f"owners stayed overloaded for {settings.dispatch_timeout_s}s")
            if wait_s:
                await asyncio.sleep(wait_s)
                backoff = min(backoff * 2, 1.0)
        return [ack for ack in final if ack is not None]

    @staticmethod
    async def _send_to(
        link: NodeLink, envelopes: list[pb.TaskEnvelope], timeout_s: float
    ) -> list[pb.Ack] | BaseException:
        """The acks, or the exception that stopped them (to be sorted out by ``send``)."""
        try:
            async with asyncio.timeout(timeout_s):
                return await link.send(envelopes)
        except Exception as exc:
            return exc

    def _handle_for(self, envelope: pb.TaskEnvelope, ack: pb.Ack) -> AsyncTaskHandle:
        if ack.code == pb.ACCEPTED:
            return AsyncTaskHandle(self, envelope.task_id, envelope.key)
        if ack.code == pb.DUPLICATE:
            return AsyncTaskHandle(self, ack.original_task_id or envelope.task_id, envelope.key)
        raise refusal(ack.code, ack.message)

    def _build(self, key: str, task: Task, headers: Mapping[str, str] | None) -> pb.TaskEnvelope:
        return envelopes.build(key, task, self.ring.version, headers, self.settings.limits,
                               reply_to=self.store.reply_to)

    async def dispatch(
        self, key: str, task: Task, headers: Mapping[str, str] | None = None
    ) -> AsyncTaskHandle:
        """Send ``task`` to the owner of ``key``; returns once it is durably accepted.

        For a task that usually finishes within 2 ms the node holds the ack up to that
        long, so its result arrives with it and ``result()`` returns at once.
        """
        started = time.perf_counter()
        with telemetry.dispatch_span("dispatch", task.name, 1, headers) as traced:
            envelope = self._build(key, task, headers if traced is None else traced)
            handle = AsyncTaskHandle(self, envelope.task_id, key)  # expect the result first
            (ack,) = await self.send([envelope])
        self.metrics.dispatch.observe(time.perf_counter() - started)
        return handle if ack.code == pb.ACCEPTED else self._handle_for(envelope, ack)

    async def dispatch_many(
        self, items: Iterable[tuple[str, Task]]
    ) -> list[AsyncTaskHandle]:
        """Dispatch many tasks in batches; every task is checked before any is sent.

        A task refused by its node raises its DispatchError after the others were sent.
        """
        started = time.perf_counter()
        items = list(items)
        name = items[0][1].name if items else ""
        with telemetry.dispatch_span("dispatch_many", name, len(items)) as traced:
            built = [self._build(key, task, traced) for key, task in items]
            handles = [AsyncTaskHandle(self, e.task_id, e.key) for e in built]
            acks = await self.send(built)
        self.metrics.dispatch_many.observe(time.perf_counter() - started)
        return [
            handle if ack.code == pb.ACCEPTED else self._handle_for(envelope, ack)
            for handle, envelope, ack in zip(handles, built, acks, strict=True)
        ]

    def handle(self, task_id: str, key: str = "") -> AsyncTaskHandle:
        """A handle for a task dispatched elsewhere (e.g. by id from a log)."""
        return AsyncTaskHandle(self, task_id, key)
