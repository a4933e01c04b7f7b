"""The Router's decisions, against links and a ring of the test's own (no servers).

Every answer a node can give (and a broken stream, and silence) meets a Router
whose links are ``FakeLink``s: the test sees what was queued where and answers
it. Each test runs in milliseconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from ringpool.client.links import LinkDown, LinkEvents
from ringpool.client.metrics import client_metrics
from ringpool.client.router import Router
from ringpool.client.settings import ClientSettings
from ringpool.client.tickets import Ticket
from ringpool.core import envelope as envelopes
from ringpool.core.ring import Member, Ring
from ringpool.errors import (
    ClusterUnavailable,
    InvalidKey,
    InvalidTask,
    NoNodesAvailable,
    NotRedeliverable,
    Overloaded,
    PayloadTooLarge,
    TooManyHops,
    Unauthenticated,
    UnknownTask,
)
from ringpool.task import Task
from ringpool.v1 import node_pb2 as pb
from tests.helpers import eventually_async

WAIT_S = 5.0  # deadline for what must happen; nothing waits on it when all is well


def ring_of(*node_ids: str, version: int = 1) -> Ring:
    return Ring({n: Member(n, f"{n}:1") for n in node_ids}, version=version)


class FakeRing:
    """A RingSource whose next refresh reads ``zookeeper``."""

    def __init__(self, ring: Ring) -> None:
        self.ring = ring
        self.zookeeper = ring
        self.refreshes = 0
        self._listeners: list[Callable[[Ring], None]] = []

    def refresh(self) -> Ring:
        self.refreshes += 1
        self.ring = self.zookeeper
        return self.ring

    def publish(self, ring: Ring) -> None:
        self.ring = self.zookeeper = ring
        for listener in list(self._listeners):
            listener(ring)

    def subscribe(self, listener: Callable[[Ring], None]) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Callable[[Ring], None]) -> None:
        self._listeners.remove(listener)


class FakeLink:
    """A Link whose answers the test gives."""

    def __init__(self, node_id: str, addr: str, events: LinkEvents) -> None:
        self.node_id, self.addr, self.events = node_id, addr, events
        self.waiting: list[Ticket] = []  # queued, not answered, in order
        self.queued: list[str] = []  # task ids, in the order they were ever queued
        self.closed = False

    def queue(self, tickets: Sequence[Ticket]) -> None:
        self.waiting += tickets
        self.queued += [t.task_id for t in tickets]

    @property
    def busy(self) -> bool:
        return bool(self.waiting)

    def forget(self, ticket: Ticket) -> None:
        self.waiting.remove(ticket)
        if not self.waiting:
            self.events.on_idle(self)

    async def close(self) -> None:
        self.closed = True

    def answer(self, code: int, tickets: Sequence[Ticket] | None = None, **fields: Any) -> None:
        chosen = list(self.waiting if tickets is None else tickets)
        for ticket in chosen:
            self.waiting.remove(ticket)
        self.events.on_answers(self, [
            (t, pb.Ack(task_id=t.task_id, code=code, node_id=self.node_id, **fields))  # type: ignore[arg-type]
            for t in chosen])
        if not self.waiting:
            self.events.on_idle(self)

    def break_down(self, error: Exception | None = None) -> None:
        lost, self.waiting = self.waiting, []
        self.events.on_down(self, lost, error or LinkDown(f"stream to {self.node_id} ended"))
        self.events.on_idle(self)


class Harness:
    def __init__(self, ring: Ring, **settings: Any) -> None:
        options = {"accept_timeout_s": WAIT_S, "connect_timeout_s": WAIT_S, **settings}
        self.settings = ClientSettings(zk="zk", redis="redis", **options)
        self.source = FakeRing(ring)
        self.links: dict[str, FakeLink] = {}
        self.accepted: list[Ticket] = []
        self.refused: list[Ticket] = []
        self.router = Router(
            self.settings, self.source, client_metrics(CollectorRegistry()),
            on_accepted=self.accepted.append, on_refused=self.refused.append,
            link_factory=self._link,
        ).start()

    def _link(self, node_id: str, addr: str, events: LinkEvents) -> FakeLink:
        link = self.links[node_id] = FakeLink(node_id, addr, events)
        return link

    def dispatch(self, key: str, name: str = "t", **options: Any) -> Ticket:
        envelope = envelopes.build(key, Task(name, **options), self.source.ring.version)
        ticket = Ticket(envelope, key, Task(name, **options))
        assert self.router.window.try_take(ticket.size)
        self.router.submit((ticket,))
        return ticket

    def owner(self, key: str) -> str:
        return self.source.ring.owner(key)

    async def queued_on(self, node_id: str, count: int = 1) -> FakeLink:
        """The link to ``node_id`` once ``count`` tickets wait on it."""
        def ready() -> FakeLink | None:
            link = self.links.get(node_id)
            return link if link is not None and len(link.waiting) >= count else None
        return await eventually_async(ready, WAIT_S, f"{count} tickets queued on {node_id}")


async def settled(ticket: Ticket) -> Ticket:
    assert await ticket.accepted.wait_async(WAIT_S), f"{ticket} not settled in time"
    return ticket


def keys_owned_by(ring: Ring, node_id: str, count: int = 1) -> list[str]:
    keys = (f"key:{i}" for i in range(100_000))
    return [k for k in keys if ring.owner(k) == node_id][:count]


# -- the answers -----------------------------------------------------------------------------


async def test_accepted_settles_with_the_task_id_and_gives_the_room_back() -> None:
    h = Harness(ring_of("a", "b"))
    ticket = h.dispatch("user:1")
    link = await h.queued_on(h.owner("user:1"))
    assert h.router.window.tasks == 1
    link.answer(pb.ACCEPTED)
    assert (await settled(ticket)).accepted.get() == ticket.task_id
    assert h.accepted == [ticket] and h.router.window.tasks == 0


async def test_duplicate_settles_as_the_earlier_task() -> None:
    h = Harness(ring_of("a"))
    ticket = h.dispatch("k", idempotency_key="order-1")
    (await h.queued_on("a")).answer(pb.DUPLICATE, original_task_id="f" * 32)
    assert (await settled(ticket)).accepted.get() == "f" * 32
    assert ticket.task_id == "f" * 32


@pytest.mark.parametrize(("code", "error"), [
    (pb.UNKNOWN_TASK, UnknownTask), (pb.INVALID_ARGUMENT, InvalidTask),
    (pb.PAYLOAD_TOO_LARGE, PayloadTooLarge), (pb.INVALID_KEY, InvalidKey),
    (pb.NOT_REDELIVERABLE, NotRedeliverable),
])
async def test_a_refusal_settles_with_its_typed_error(code: int, error: type[Exception]) -> None:
    h = Harness(ring_of("a"))
    ticket = h.dispatch("k")
    (await h.queued_on("a")).answer(code, message="no")
    with pytest.raises(error, match="no"):
        (await settled(ticket)).accepted.get()
    assert h.refused == [ticket] and h.router.window.tasks == 0


@pytest.mark.parametrize("code", [pb.WRONG_OWNER, pb.DRAINING])
async def test_a_moved_owner_refreshes_the_ring_and_resends_to_the_new_one(code: int) -> None:
    h = Harness(ring_of("a", version=1))
    ticket = h.dispatch("k")
    h.source.zookeeper = ring_of("b", version=2)  # the ring moved; this client missed it
    (await h.queued_on("a")).answer(code, ring_version=2)
    (await h.queued_on("b")).answer(pb.ACCEPTED)
    await settled(ticket)
    assert h.source.refreshes == 1 and ticket.hops == 1
    assert ticket.envelope.ring_version == 2  # it tells the new owner which ring it used


async def test_wrong_owner_before_zookeeper_caught_up_backs_off_without_spending_hops() -> None:
    h = Harness(ring_of("a", version=1), max_hops=1)
    ticket = h.dispatch("k")
    for _ in range(2):  # the node is leaving, ZooKeeper does not say so yet
        (await h.queued_on("a")).answer(pb.DRAINING, ring_version=1)
    link = await h.queued_on("a")
    link.answer(pb.DRAINING, ring_version=1)
    h.source.zookeeper = ring_of("b", version=2)  # now it does
    (await h.queued_on("b")).answer(pb.ACCEPTED)
    await settled(ticket)
    assert ticket.hops == 1 and h.source.refreshes == 3 and len(link.queued) == 3


async def test_ownership_moving_past_max_hops_is_too_many_hops() -> None:
    h = Harness(ring_of("a", version=1), max_hops=2)
    ticket = h.dispatch("k")
    owner = "a"
    for version, node in enumerate(["b", "a", "b"], start=2):
        link = await h.queued_on(owner)
        h.source.zookeeper = ring_of(node, version=version)
        link.answer(pb.WRONG_OWNER, ring_version=version)
        owner = node
    with pytest.raises(TooManyHops):
        (await settled(ticket)).accepted.get()
    assert ticket.hops == 3


@pytest.mark.parametrize("code", [pb.OVERLOADED, pb.INTERNAL])
async def test_a_busy_node_is_asked_again_after_its_retry_after(code: int) -> None:
    h = Harness(ring_of("a"))
    ticket = h.dispatch("k")
    link = await h.queued_on("a")
    answered = time.monotonic()
    link.answer(code, retry_after_s=0.05)
    (await h.queued_on("a")).answer(pb.ACCEPTED)
    await settled(ticket)
    assert time.monotonic() - answered >= 0.05
    assert link.queued == [ticket.task_id] * 2


async def test_an_owner_that_stays_overloaded_ends_in_overloaded() -> None:
    h = Harness(ring_of("a"), accept_timeout_s=0.3)
    ticket = h.dispatch("k")
    link = await h.queued_on("a")
    give_up = time.monotonic() + WAIT_S
    while not ticket.done:  # answer every resend the same way
        assert time.monotonic() < give_up
        if link.waiting:
            link.answer(pb.OVERLOADED, retry_after_s=0.05)
        await asyncio.sleep(0.01)
    with pytest.raises(Overloaded):
        ticket.accepted.get()


async def test_a_broken_stream_resends_and_a_dead_owner_ends_in_cluster_unavailable() -> None:
    h = Harness(ring_of("a"), accept_timeout_s=0.3)
    ticket = h.dispatch("k")
    link = await h.queued_on("a")
    link.break_down()
    (await h.queued_on("a")).answer(pb.DUPLICATE, original_task_id=ticket.task_id)  # it had landed
    await settled(ticket)

    lost = h.dispatch("k")
    give_up = time.monotonic() + WAIT_S
    while not lost.done:  # break every resend's stream
        assert time.monotonic() < give_up
        if link.waiting:
            link.break_down()
        await asyncio.sleep(0.01)
    with pytest.raises(ClusterUnavailable, match="unreachable"):
        lost.accepted.get()


async def test_a_refused_token_is_unauthenticated_at_once() -> None:
    h = Harness(ring_of("a"))
    ticket = h.dispatch("k")
    (await h.queued_on("a")).break_down(Unauthenticated("a refused us"))
    with pytest.raises(Unauthenticated):
        (await settled(ticket)).accepted.get()


async def test_an_owner_that_never_answers_ends_in_cluster_unavailable_at_the_deadline() -> None:
    h = Harness(ring_of("a"), accept_timeout_s=0.2)
    started = time.monotonic()
    ticket = h.dispatch("k")
    link = await h.queued_on("a")
    with pytest.raises(ClusterUnavailable, match="no answer"):
        (await settled(ticket)).accepted.get()
    assert 0.2 <= time.monotonic() - started < WAIT_S
    assert link.waiting == []  # the link stopped waiting for it too


async def test_an_empty_ring_waits_for_members_then_gives_up() -> None:
    h = Harness(Ring({}, version=1), connect_timeout_s=0.2)
    waits = h.dispatch("k")
    await asyncio.sleep(0.05)
    h.source.publish(ring_of("a", version=2))
    (await h.queued_on("a")).answer(pb.ACCEPTED)
    await settled(waits)

    h.source.publish(Ring({}, version=3))
    alone = h.dispatch("k")
    with pytest.raises(NoNodesAvailable):
        (await settled(alone)).accepted.get()


# -- per-key order of ordered tasks ----------------------------------------------------------


async def test_an_ordered_key_has_one_send_in_flight_and_the_next_ones_wait() -> None:
    h = Harness(ring_of("a"))
    first = h.dispatch("k", ordered=True)
    link = await h.queued_on("a")
    later = [h.dispatch("k", ordered=True) for _ in range(3)]
    other = h.dispatch("other", ordered=True)  # another key is not held up
    await h.queued_on("a", 2)
    assert link.waiting == [first, other]
    link.answer(pb.ACCEPTED, [first])
    await h.queued_on("a", 4)
    assert link.waiting == [other, *later]


async def test_an_ordered_resend_never_lands_behind_a_later_task_of_its_key() -> None:
    h = Harness(ring_of("a"))
    first = [h.dispatch("k", ordered=True) for _ in range(3)]
    link = await h.queued_on("a", 3)
    later = [h.dispatch("k", ordered=True) for _ in range(2)]  # wait behind the three
    # The first is refused for now; the node holds back the two after it (KeyFences).
    link.answer(pb.OVERLOADED, first[:1], retry_after_s=0.01)
    link.answer(pb.OVERLOADED, first[1:], retry_after_s=0.01)
    link = await h.queued_on("a", 5)
    assert link.waiting == [*first, *later]  # resent in dispatch order, the rest behind
    link.answer(pb.ACCEPTED)
    for ticket in [*first, *later]:
        await settled(ticket)


async def test_an_ordered_chain_moves_to_the_new_owner_in_order() -> None:
    h = Harness(ring_of("a", version=1))
    chain = [h.dispatch("k", ordered=True) for _ in range(3)]
    old = await h.queued_on("a", 3)
    h.source.zookeeper = ring_of("b", version=2)
    old.answer(pb.WRONG_OWNER, ring_version=2)
    new = await h.queued_on("b", 3)
    assert new.waiting == chain
    new.answer(pb.ACCEPTED)
    for ticket in chain:
        await settled(ticket)


async def test_a_broken_stream_resends_an_ordered_chain_in_order() -> None:
    h = Harness(ring_of("a"))
    chain = [h.dispatch("k", ordered=True) for _ in range(4)]
    link = await h.queued_on("a", 4)
    link.answer(pb.ACCEPTED, chain[:1])
    link.break_down()
    link = await h.queued_on("a", 3)
    assert link.waiting == chain[1:]


# -- the bound, flushing and closing ---------------------------------------------------------


async def test_the_window_bounds_outstanding_tasks_and_gives_up_typed() -> None:
    h = Harness(ring_of("a"), max_outstanding=2, dispatch_timeout_s=0.1)
    tickets = [h.dispatch("k"), h.dispatch("k")]
    extra = Ticket(envelopes.build("k", Task("t"), 1), "k")
    assert not h.router.window.try_take(extra.size)
    with pytest.raises(ClusterUnavailable, match="max_outstanding=2"):
        await h.router.queue_async((extra,))
    link = await h.queued_on("a", 2)
    waiter = asyncio.ensure_future(h.router.queue_async((extra,)))
    await asyncio.sleep(0.01)
    assert not waiter.done()  # full: waits for room
    link.answer(pb.ACCEPTED, tickets[:1])
    await asyncio.wait_for(waiter, WAIT_S)  # room came back
    assert h.router.window.tasks == 2


async def test_flush_waits_for_every_answer_and_close_refuses_the_rest() -> None:
    h = Harness(ring_of("a"))
    tickets = [h.dispatch(f"k{i}") for i in range(3)]
    link = await h.queued_on("a", 3)
    flushed = asyncio.ensure_future(h.router.flush())
    await asyncio.sleep(0.01)
    assert not flushed.done()
    link.answer(pb.ACCEPTED, tickets[:2])
    link.answer(pb.UNKNOWN_TASK, tickets[2:])
    await asyncio.wait_for(flushed, WAIT_S)
    pending = h.dispatch("k")
    await h.queued_on("a")
    await h.router.close()
    with pytest.raises(ClusterUnavailable, match="closed"):
        pending.accepted.get()
    assert link.closed
