"""``Router``: gets every ticket to its key's owner and sees it answered for good.

Tickets come in through ``submit`` from any thread and are routed on the event
loop: the ring names each key's owner, whose ``Link`` sends them. Every answer
comes back here:

    ACCEPTED, DUPLICATE     accepted (a DUPLICATE as the earlier task it repeats)
    WRONG_OWNER, DRAINING   refresh the ring and send again; a ticket whose owner
                            really moved more than ``max_hops`` times is refused
                            (TooManyHops)
    OVERLOADED, INTERNAL    back off (the node's ``retry_after_s``) and send again
    a broken stream         back off and send again (a resend of a task that was
                            accepted is answered DUPLICATE)
    any other code          refused with its DispatchError

A ticket not settled within ``accept_timeout_s`` of being queued is refused
with the reason it kept going round (ClusterUnavailable, or Overloaded when its
owner only ever answered OVERLOADED). Ordered tickets go when ``KeyChains``
lets them, so that none overtakes another of its key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, Protocol

from ringpool.client.chains import KeyChains, Release
from ringpool.client.links import Link, LinkFactory, NodeLink
from ringpool.client.metrics import ClientMetrics
from ringpool.client.settings import ClientSettings
from ringpool.client.tickets import Ticket
from ringpool.client.window import Window
from ringpool.core.protocol import BACK_OFF, REROUTE, code_name, refusal
from ringpool.core.ring import Ring, RouteCache
from ringpool.errors import (
    ClusterUnavailable,
    NoNodesAvailable,
    Overloaded,
    ResultTimeout,
    RingpoolError,
    TooManyHops,
    Unauthenticated,
)
from ringpool.v1 import node_pb2 as pb

log = logging.getLogger(__name__)

Settled = Callable[[Ticket], None]
# While every link has a send in flight, submitted tickets are taken up when one
# goes idle, or after this long (e.g. for an owner that has no link yet).
DEFER_S = 0.005


class RingSource(Protocol):
    """Where the Router reads the ring: ``Membership`` (tests pass their own)."""

    @property
    def ring(self) -> Ring: ...

    def refresh(self) -> Ring:
        """Read the ring now (blocking); the Router calls it on a worker thread."""

    def subscribe(self, listener: Callable[[Ring], None]) -> None: ...

    def unsubscribe(self, listener: Callable[[Ring], None]) -> None: ...


class Router:
    """Routes tickets on the event loop ``start()`` ran on; ``submit`` from any thread.

    ``on_accepted(ticket)`` runs when a ticket is accepted, before anyone waiting on
    it wakes; ``on_refused(ticket)`` when one is refused; ``on_result`` gets every
    result a node pushes.
    """

    def __init__(
        self,
        settings: ClientSettings,
        membership: RingSource,
        metrics: ClientMetrics,
        *,
        on_result: Callable[[pb.TaskResult], None] = lambda result: None,
        on_accepted: Settled = lambda ticket: None,
        on_refused: Settled = lambda ticket: None,
        link_factory: LinkFactory | None = None,
    ) -> None:
        self.settings = settings
        self.membership = membership
        self.metrics = metrics
        self.window = Window(settings.max_outstanding, settings.max_outstanding_bytes)
        self._on_result = on_result
        self._on_accepted = on_accepted
        self._on_refused = on_refused
        self._new_link: LinkFactory = link_factory or (
            lambda node_id, addr, events: NodeLink(node_id, addr, settings, events))
        self._routes = RouteCache()
        self._links: dict[str, Link] = {}
        self._links_version = -1
        self._chains = KeyChains()
        self._inbox: deque[Ticket] = deque()  # submitted, not yet taken by the loop
        self._wake_pending = False  # True: the loop takes the inbox soon, no wake-up needed
        self._deferred: asyncio.TimerHandle | None = None
        self._outstanding: dict[Ticket, None] = {}  # taken and unsettled, oldest first
        self._homeless: list[tuple[float, Ticket]] = []  # waiting for the ring to have members
        self._tasks: set[asyncio.Task[None]] = set()
        self._expiry: asyncio.TimerHandle | None = None
        self._homeless_timer: asyncio.TimerHandle | None = None
        self._refreshing: asyncio.Future[Ring] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> Router:
        """Bind to the running event loop and follow ring changes."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self.membership.subscribe(self._ring_changed)
        return self

    async def close(self) -> None:
        """Refuse what is still unsettled (ClusterUnavailable), close every link."""
        self._closed = True
        self.membership.unsubscribe(self._ring_changed)
        for task in list(self._tasks):
            task.cancel()
        for handle in (self._expiry, self._homeless_timer, self._deferred):
            if handle is not None:
                handle.cancel()
        self._take_inbox()
        closed = ClusterUnavailable("the client closed before the task was accepted")
        for ticket in list(self._outstanding):
            self._settle(ticket, error=closed)
        for link in self._links.values():
            await link.close()
        self._links.clear()

    @property
    def ring(self) -> Ring:
        return self.membership.ring

    # -- the way in ----------------------------------------------------------------

    def submit(self, tickets: Sequence[Ticket]) -> None:
        """Queue tickets (room in ``window`` already taken); from any thread."""
        if not tickets:
            return
        deadline = time.monotonic() + self.settings.accept_timeout_s
        for ticket in tickets:
            ticket.deadline = deadline
        self._inbox.extend(tickets)  # deque.extend: atomic for the loop taking the inbox
        if self._wake_pending:
            return
        self._wake_pending = True
        loop = self._loop
        if loop is None:
            raise ClusterUnavailable("the client is not started")
        if threading.get_ident() == self._loop_thread:
            loop.call_soon(self._take_inbox)
        else:
            loop.call_soon_threadsafe(self._take_inbox)

    def queue(self, tickets: Sequence[Ticket]) -> None:
        """Take room for each ticket, blocking this thread while the window is full (up to
        ``dispatch_timeout_s``, then ClusterUnavailable), and submit them."""
        window, start = self.window, 0
        for index, ticket in enumerate(tickets):
            if not window.try_take(ticket.size):
                self.submit(tickets[start:index])
                start = index
                window.take(ticket.size, self.settings.dispatch_timeout_s)
        self.submit(tickets[start:])

    async def queue_async(self, tickets: Sequence[Ticket]) -> None:
        """``queue`` for a caller on the Router's event loop."""
        window, start = self.window, 0
        for index, ticket in enumerate(tickets):
            if not window.try_take(ticket.size):
                self.submit(tickets[start:index])
                start = index
                await window.take_async(ticket.size, self.settings.dispatch_timeout_s)
        self.submit(tickets[start:])

    async def send(self, envelopes: Sequence[pb.TaskEnvelope]) -> list[pb.Ack | RingpoolError]:
        """Send envelopes as they are (retries, replays); each one's final ack, or the error
        the client gave up with."""
        tickets = [Ticket(envelope, envelope.key) for envelope in envelopes]
        await self.queue_async(tickets)
        outcomes: list[pb.Ack | RingpoolError] = []
        for ticket in tickets:
            await ticket.accepted.wait_async()
            error = ticket.accepted.error
            if ticket.ack is not None:
                outcomes.append(ticket.ack)
            else:
                assert isinstance(error, RingpoolError)
                outcomes.append(error)
        return outcomes

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until every ticket submitted so far is accepted or refused; ResultTimeout
        when some are still going round after ``timeout``."""
        self._take_inbox()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        for ticket in list(self._outstanding):
            remaining = None if deadline is None else max(0.0, deadline - loop.time())
            if not await ticket.accepted.wait_async(remaining):
                raise ResultTimeout(
                    f"{len(self._outstanding)} tasks not yet accepted after {timeout}s")

    def _take_inbox(self) -> None:
        self._wake_pending = False  # before taking: a submit from now on wakes us again
        if self._deferred is not None:
            self._deferred.cancel()
            self._deferred = None
        inbox = self._inbox
        tickets = [inbox.popleft() for _ in range(len(inbox))]
        if tickets:
            outstanding = self._outstanding
            for ticket in tickets:
                outstanding[ticket] = None
            if self._expiry is None:
                self._arm_expiry()
            if self._closed:
                for ticket in tickets:
                    self._settle(ticket, error=ClusterUnavailable("the client is closed"))
                return
            self._route(tickets)
        links = self._links.values()
        if links and all(link.busy for link in links) and not self._closed:
            # Whatever comes next would only wait on a link's outbox: callers need not
            # wake us; a link going idle (or, at the latest, DEFER_S) takes the inbox.
            self._wake_pending = True
            self._deferred = asyncio.get_running_loop().call_later(DEFER_S, self._take_inbox)

    def on_idle(self, link: Link) -> None:
        if self._wake_pending:
            self._take_inbox()

    # -- routing -------------------------------------------------------------------

    def _route(self, tickets: Iterable[Ticket]) -> None:
        ring = self.ring
        if not len(ring):
            self._wait_for_members(tickets)
            return
        if ring.version != self._links_version:
            self._check_links(ring)
        version = ring.version
        owner = self._routes.owner
        sends: dict[str, list[Ticket]] = {}
        ordered: dict[str, list[Ticket]] = {}
        for ticket in tickets:
            if ticket.done:
                continue
            if ticket.ordered:
                ordered.setdefault(ticket.key, []).append(ticket)
            else:
                sends.setdefault(owner(ring, ticket.key), []).append(ticket)
        for key, chained in ordered.items():
            if self._chains.admit(key, chained):
                sends.setdefault(owner(ring, key), []).extend(chained)
        for node_id, group in sends.items():
            link = self._links.get(node_id)
            if link is None:
                link = self._links[node_id] = self._new_link(
                    node_id, ring.members[node_id].addr, self)
            for ticket in group:
                ticket.envelope.ring_version = version
                ticket.sent_version = version
                ticket.link = link
            link.queue(group)

    def _check_links(self, ring: Ring) -> None:
        """Drop links to members whose address changed; their tickets come back by on_down."""
        for node_id, link in list(self._links.items()):
            member = ring.members.get(node_id)
            if link.closed or (member is not None and member.addr != link.addr):
                del self._links[node_id]
                self._spawn(link.close())
        self._links_version = ring.version

    # -- answers -------------------------------------------------------------------

    def on_answers(self, link: Link, answers: list[tuple[Ticket, pb.Ack]]) -> None:
        rerouted: list[Ticket] = []
        backed_off: list[Ticket] = []
        resent: dict[int, int] = {}  # ack code -> tasks sent again for it
        newest = 0
        delay_s = 0.0
        for ticket, ack in answers:
            code = ack.code
            if code in REROUTE or code in BACK_OFF:
                resent[code] = resent.get(code, 0) + 1
            if code == pb.ACCEPTED or code == pb.DUPLICATE:
                ticket.ack = ack
                self._answered(ticket)
                self._settle(ticket, ack.original_task_id or ticket.task_id)
            elif code in REROUTE:
                newest = max(newest, ack.ring_version)
                ticket.problem = ClusterUnavailable(
                    f"the owner of {ticket.key!r} kept moving or leaving "
                    f"({link.node_id}: {ack.message or code_name(code)})")
                rerouted.append(ticket)
            elif code in BACK_OFF:
                delay_s = max(delay_s, ack.retry_after_s or ticket.next_backoff())
                if ticket.problem is None or isinstance(ticket.problem, Overloaded):
                    ticket.problem = Overloaded(
                        f"{link.node_id} stayed overloaded ({ack.message or code_name(code)})")
                backed_off.append(ticket)
            else:
                ticket.ack = ack
                self._answered(ticket)
                self._settle(ticket, error=refusal(ack.code, ack.message))
        for resent_code, count in resent.items():
            self.metrics.resends.labels(code_name(resent_code).lower()).inc(count)
        if rerouted:
            self._again(rerouted, 0.0, newest)
        if backed_off:
            self._again(backed_off, delay_s, None)

    def on_down(self, link: Link, tickets: list[Ticket], error: Exception) -> None:
        tickets = [t for t in tickets if not t.done and t.link is link]
        if not tickets:
            return
        if isinstance(error, Unauthenticated):
            for ticket in tickets:
                self._answered(ticket)
                self._settle(ticket, error=error)
            return
        log.debug("sending %d tasks again: %s", len(tickets), error)
        self.metrics.resend["unreachable"].inc(len(tickets))
        problem = ClusterUnavailable(f"{link.node_id} ({link.addr}) unreachable: {error}")
        delay_s = 0.0
        for ticket in tickets:
            ticket.problem = problem
            delay_s = max(delay_s, ticket.next_backoff())
        self._again(tickets, delay_s, None)

    def on_result(self, result: pb.TaskResult) -> None:
        self._on_result(result)

    def _answered(self, ticket: Ticket) -> None:
        """The ticket is off its link for good; an ordered one lets its chain go on."""
        ticket.link = None
        if ticket.ordered:
            self._release(self._chains.answered(ticket))

    def _again(self, tickets: list[Ticket], delay_s: float, newest: int | None) -> None:
        """Send these again after ``delay_s`` (after a ring refresh, when ``newest`` is set)."""
        unordered = []
        for ticket in tickets:
            ticket.link = None
            if ticket.ordered:
                self._release(self._chains.answered_again(ticket, delay_s, newest))
            else:
                unordered.append(ticket)
        if unordered:
            self._spawn(self._resend(unordered, delay_s, newest))

    def _release(self, release: Release | None) -> None:
        if release is None:
            return
        if release.resend:
            self._spawn(self._resend(release.tickets, release.delay_s, release.newest,
                                     chain=release.key))
        else:
            self._route(release.tickets)

    async def _resend(
        self, tickets: list[Ticket], delay_s: float, newest: int | None, chain: str | None = None,
    ) -> None:
        """Check hops and deadlines, wait, send again (a stalled ``chain``: all of it)."""
        if newest is not None:
            sent = max((t.sent_version for t in tickets), default=0)
            await self._refresh(max(newest, sent))
            version = self.ring.version
            for ticket in tickets:
                if ticket.done or not ticket.sent_version:
                    continue
                if version > ticket.sent_version:  # ownership really moved
                    ticket.hops += 1
                    if ticket.hops > self.settings.max_hops:
                        self._settle(ticket, error=TooManyHops(
                            f"the owner of {ticket.key!r} kept moving after "
                            f"{self.settings.max_hops} resends"))
                else:
                    # ZooKeeper has not caught up with the node yet (e.g. a drain that has
                    # not left the ring): wait for it instead of burning hops.
                    delay_s = max(delay_s, ticket.next_backoff())
        now = time.monotonic()
        for ticket in tickets:
            if not ticket.done and now + delay_s >= ticket.deadline:
                self._give_up(ticket)
        if delay_s:
            await asyncio.sleep(delay_s)
        if chain is not None:
            tickets = self._chains.resume(chain)
        self._route(tickets)

    async def _refresh(self, seen: int) -> None:
        """Catch up with ZooKeeper unless our ring is already past version ``seen``."""
        if self.ring.version > seen:
            return
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(asyncio.to_thread(self.membership.refresh))
        with contextlib.suppress(Exception):  # ZooKeeper away: resend on the ring we have
            await asyncio.shield(self._refreshing)

    # -- settling ------------------------------------------------------------------

    def _settle(self, ticket: Ticket, task_id: str = "", error: RingpoolError | None = None) -> None:
        if ticket.done:
            return
        self._outstanding.pop(ticket, None)
        self.window.give(ticket.size)
        if error is None:
            ticket.task_id = task_id
            self._on_accepted(ticket)
            ticket.accepted.set(task_id)
        else:
            ticket.accepted.fail(error)
            ticket.result.fail(error)
            self._on_refused(ticket)
        if ticket.timer is not None:
            ticket.timer.settled()

    def _give_up(self, ticket: Ticket) -> None:
        self._settle(ticket, error=ticket.problem or ClusterUnavailable(
            f"no answer for the task within {self.settings.accept_timeout_s}s"))

    def _arm_expiry(self) -> None:
        self._expiry = None
        if self._outstanding and not self._closed:
            first = next(iter(self._outstanding))
            self._expiry = asyncio.get_running_loop().call_later(
                max(0.0, first.deadline - time.monotonic()), self._expire)

    def _expire(self) -> None:
        now = time.monotonic()
        expired = []
        for ticket in self._outstanding:
            if ticket.deadline > now:
                break
            expired.append(ticket)
        for ticket in expired:
            if ticket.link is not None:
                ticket.link.forget(ticket)
                self._answered(ticket)
            self._give_up(ticket)
        self._arm_expiry()

    # -- an empty ring -------------------------------------------------------------

    def _wait_for_members(self, tickets: Iterable[Ticket]) -> None:
        now = time.monotonic()
        self._homeless += [(now, ticket) for ticket in tickets if not ticket.done]
        if len(self.ring):  # members arrived while we looked: no wake-up is coming
            self._rehome()
        elif self._homeless_timer is None:
            self._arm_homeless_timer()

    def _arm_homeless_timer(self) -> None:
        """Refuse each waiting ticket ``connect_timeout_s`` after it began to wait."""
        first = self._homeless[0][0]
        self._homeless_timer = asyncio.get_running_loop().call_later(
            max(0.0, first + self.settings.connect_timeout_s - time.monotonic()),
            self._homeless_timeout)

    def _ring_changed(self, ring: Ring) -> None:
        # On a ZooKeeper thread: only hand over to the loop.
        if self._homeless and len(ring) and self._loop is not None and not self._closed:
            self._loop.call_soon_threadsafe(self._rehome)

    def _rehome(self) -> None:
        if not self._homeless or not len(self.ring):
            return
        homeless, self._homeless = self._homeless, []
        if self._homeless_timer is not None:
            self._homeless_timer.cancel()
            self._homeless_timer = None
        self._route(ticket for _, ticket in homeless)

    def _homeless_timeout(self) -> None:
        self._homeless_timer = None
        cutoff = time.monotonic() - self.settings.connect_timeout_s
        waiting = []
        for since, ticket in self._homeless:
            if since <= cutoff:
                self._settle(ticket, error=NoNodesAvailable("no nodes in the ring"))
            else:
                waiting.append((since, ticket))
        self._homeless = waiting
        if waiting:
            self._arm_homeless_timer()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

