"""Ring membership from ZooKeeper: watch ``/ringpool/<cluster>/members``, publish rings.

The ring version is the members znode's ``cversion``: it grows on every join and
leave, so a newer ring always has a larger version. Watch callbacks only wake a
refresh thread (kazoo forbids blocking in them); the thread reads the children
and swaps in a new immutable ``Ring``. A ring change costs a bounded number of
ZooKeeper reads: the listing, and the znodes of members not seen before
(``MemberReader``).

Connection states: on SUSPENDED (ZooKeeper unreachable, or without a quorum)
routing keeps the last ring, and the process says so in its log, at once and
every ``STALE_LOG_INTERVAL_S`` until it is back (``Membership.stale_s``); on LOST
the state is reported through ``on_state`` and the ring is rebuilt once
reconnected. Every change is reported, in order, even when the next one follows at
once (a LOST quickly followed by CONNECTED still reports LOST).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError
from kazoo.protocol.states import WatchedEvent

from ringpool.core.naming import Names
from ringpool.core.ring import DEFAULT_VNODES, EMPTY_RING, MAX_WEIGHT, MIN_WEIGHT, Member, Ring
from ringpool.core.zkacl import client_options
from ringpool.errors import ClusterUnavailable

log = logging.getLogger(__name__)
ZK_TIMEOUT_S = 10.0  # every ZooKeeper read here waits at most this long
STALE_LOG_INTERVAL_S = 60.0  # how often a process without ZooKeeper says so again
# Reconnection attempts back off up to this delay (kazoo's default backs off up to an
# hour): once ZooKeeper is back, every process reconnects within seconds, well inside
# its session timeout, so an outage of any length does not expire the sessions.
RECONNECT_MAX_DELAY_S = 1.0


def connect_zookeeper(
    hosts: str, timeout: float = 10.0, auth: str = "", operator_auth: str = "", **kwargs: Any
) -> KazooClient:
    """A started KazooClient; ClusterUnavailable when ZooKeeper is not reachable in time.

    ``auth`` / ``operator_auth`` are optional digest identities (``USER:PASSWORD``,
    see ``ringpool.core.zkacl``); znodes this client creates are then writable only by them.
    """
    kwargs = {"connection_retry": {"max_tries": -1, "max_delay": RECONNECT_MAX_DELAY_S},
              **client_options(auth, operator_auth), **kwargs}
    client = KazooClient(hosts=hosts, timeout=timeout, **kwargs)
    try:
        client.start(timeout=timeout)
    except Exception as exc:
        client.stop()
        client.close()
        raise ClusterUnavailable(f"cannot reach ZooKeeper at {hosts}: {exc}") from None
    return client


def parse_member(node_id: str, data: bytes, epoch: int) -> Member | None:
    """A member from its znode JSON, or None (logged) for data that is not one.

    A weight outside [MIN_WEIGHT, MAX_WEIGHT] (or not a finite number) is refused too: it
    would freeze (NaN) or exhaust (1e9 x 128 points) every process building the ring.
    """
    try:
        info = json.loads(data)
        weight = float(info.get("weight", 1.0))
        if not (math.isfinite(weight) and MIN_WEIGHT <= weight <= MAX_WEIGHT):
            raise ValueError(f"weight {weight} is not in [{MIN_WEIGHT}, {MAX_WEIGHT}]")
        tasks = info.get("tasks")
        return Member(
            node_id=node_id,
            addr=str(info["addr"]),
            weight=weight,
            started_at=float(info.get("started_at", 0.0)),
            epoch=epoch,
            tasks=None if tasks is None else frozenset(str(name) for name in tasks),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("ignoring member %s with unreadable data %r (%s)", node_id, data[:200], exc)
        return None


class MemberReader:
    """Reads the ring: the members' listing, and the znodes of new members only.

    A member's znode data is written once, when its node registers; registering again
    creates a new znode (its creation zxid, the member's epoch, changes). Between two
    listings the members znode's ``cversion`` grows by one per child created or
    deleted. When it grew by exactly the number of children that appeared or went,
    none was deleted and created again in between: every child listed both times is
    the znode read before, and its cached member stands. Otherwise every member is
    read again. So a join costs each process two reads (the listing and the newcomer),
    a leave one, instead of one per member. Thread-safe.
    """

    def __init__(self, client: KazooClient, names: Names, vnodes: int = DEFAULT_VNODES) -> None:
        self.client = client
        self.names = names
        self.vnodes = vnodes
        self._lock = threading.Lock()
        self._version: int | None = None  # the cversion of the last listing
        self._children: frozenset[str] = frozenset()  # that listing
        # Members read since, by node id; None for a znode whose data is not a member.
        self._known: dict[str, Member | None] = {}

    def read(self, watch: Callable[[WatchedEvent], None] | None = None) -> Ring:
        """The ring as ZooKeeper holds it now; ``watch`` is set on the members znode.

        NoNodeError when the members znode does not exist.
        """
        with self._lock:
            children, stat = self.client.get_children_async(
                self.names.members, watch=watch, include_data=True
            ).get(timeout=ZK_TIMEOUT_S)
            listed = frozenset(children)
            changed = len(listed ^ self._children)
            if self._version is None or stat.cversion - self._version != changed:
                self._known = {}  # a member may have registered again: read them all
            known = {child: self._known[child] for child in listed if child in self._known}
            pending = {child: self.client.get_async(self.names.member(child))
                       for child in listed if child not in known}
            for child, result in pending.items():
                try:
                    data, child_stat = result.get(timeout=ZK_TIMEOUT_S)
                except NoNodeError:
                    continue  # left after the listing; the next listing accounts for it
                known[child] = parse_member(child, data, child_stat.czxid)
            self._version, self._children, self._known = stat.cversion, listed, known
        members = {child: member for child, member in known.items() if member is not None}
        return Ring(members, version=stat.cversion, vnodes=self.vnodes)


def read_ring(
    client: KazooClient, names: Names, vnodes: int = DEFAULT_VNODES,
    watch: Callable[[WatchedEvent], None] | None = None,
) -> Ring:
    """The ring as ZooKeeper holds it now, every member's znode read (in parallel).

    ``watch`` is set on the members znode; NoNodeError when that znode does not exist.
    """
    return MemberReader(client, names, vnodes).read(watch)


class Membership:
    """Keeps ``ring`` current for one cluster; thread-safe to read from anywhere."""

    def __init__(
        self,
        client: KazooClient,
        cluster: str,
        vnodes: int = DEFAULT_VNODES,
        on_change: Callable[[Ring], None] | None = None,
        on_state: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.names = Names(cluster)
        self.vnodes = vnodes
        self.ring: Ring = EMPTY_RING
        self.state = "CONNECTED" if client.connected else "SUSPENDED"
        # When the connection to ZooKeeper went (monotonic clock); None while connected.
        self.disconnected_at: float | None = None if client.connected else time.monotonic()
        self._stale_logged_at = 0.0  # when the log last said the ring may be stale
        self._reader = MemberReader(client, self.names, vnodes)
        # Changes not yet reported, oldest first: appended on kazoo's thread, drained on
        # ours (deque appends and pops are thread-safe), so none is overwritten unseen.
        self._states: deque[str] = deque()
        self._reported = self.state  # the last state on_state heard of (our thread only)
        self._listeners: list[Callable[[Ring], None]] = [on_change] if on_change else []
        self._on_state = on_state
        self._wake = threading.Event()
        self._changed = threading.Condition()
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"ringpool-membership-{cluster}", daemon=True
        )

    def start(self) -> Membership:
        self.client.ensure_path(self.names.members)
        self.client.add_listener(self._on_connection)
        self.refresh()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()
        self.client.remove_listener(self._on_connection)
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)

    def subscribe(self, listener: Callable[[Ring], None]) -> None:
        """Call ``listener(ring)`` (from a ZooKeeper thread) on every new ring."""
        self._listeners.append(listener)

    def unsubscribe(self, listener: Callable[[Ring], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    # -- reading -------------------------------------------------------------

    @property
    def stale_s(self) -> float:
        """Seconds this process has been without ZooKeeper (0 while connected): routing
        goes on by the last ring, which misses any change made since."""
        since = self.disconnected_at
        return 0.0 if since is None else time.monotonic() - since

    def wait_for(self, condition: Callable[[Ring], bool], timeout: float) -> Ring:
        """Block until ``condition(ring)``; ClusterUnavailable at the deadline."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition(self.ring):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ClusterUnavailable(
                        f"ring did not reach the expected state within {timeout}s "
                        f"(at version {self.ring.version} with {sorted(self.ring.members)})"
                    )
                self._changed.wait(min(remaining, 0.5))
        return self.ring

    # -- refreshing ----------------------------------------------------------

    def refresh(self) -> Ring:
        """Read the members now and publish the ring if it is newer; returns the current ring."""
        try:
            ring = self._reader.read(watch=self._on_watch)
        except NoNodeError:
            self.client.ensure_path(self.names.members)
            return self.refresh()
        self._publish(ring)
        return self.ring

    def _publish(self, ring: Ring) -> None:
        with self._changed:
            current = self.ring
            if ring.version < current.version:
                return
            if ring.version == current.version and ring.members == current.members:
                return
            self.ring = ring
            self._changed.notify_all()
        log.info("ring v%d: %s", ring.version, sorted(ring.members))
        for listener in self._listeners:
            try:
                listener(ring)
            except Exception:
                log.exception("ring change callback failed")

    def _on_watch(self, event: WatchedEvent) -> None:
        self._wake.set()

    def _on_connection(self, state: str) -> None:
        # Only record and wake: kazoo's event thread must never block.
        self.state = state
        if state == "CONNECTED":
            self.disconnected_at = None
        elif self.disconnected_at is None:
            self.disconnected_at = time.monotonic()
        self._states.append(state)
        self._wake.set()

    def _report_states(self) -> None:
        """Tell ``on_state`` of each queued change, oldest first, and the log of the
        connection's going and coming back."""
        while self._states:
            state = self._states.popleft()
            if state == self._reported:
                continue
            previous, self._reported = self._reported, state
            ring = self.ring
            if state == "CONNECTED":
                log.info("ZooKeeper connected again (was %s): reading the ring, routing was "
                         "on v%d", previous, ring.version)
            elif previous == "CONNECTED" or state == "LOST":
                self._stale_logged_at = time.monotonic()
                log.warning("ZooKeeper %s: routing on the last ring v%d (%d members) until "
                            "it is back; joins and leaves go unseen meanwhile",
                            "session expired" if state == "LOST" else "unreachable",
                            ring.version, len(ring))
            if self._on_state is not None:
                try:
                    self._on_state(state)
                except Exception:
                    log.exception("connection state callback failed")

    def _log_still_stale(self) -> None:
        stale_s, now = self.stale_s, time.monotonic()
        if stale_s and now - self._stale_logged_at >= STALE_LOG_INTERVAL_S:
            self._stale_logged_at = now
            log.warning("still without ZooKeeper after %.0fs: routing on ring v%d (%d members)",
                        stale_s, self.ring.version, len(self.ring))

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(timeout=5.0)
            self._wake.clear()
            if self._stopped.is_set():
                return
            self._report_states()
            if not self.client.connected:
                self._log_still_stale()
                continue
            try:
                self.refresh()
            except Exception:
                log.warning("membership refresh failed; will retry", exc_info=True)
                time.sleep(0.2)
                self._wake.set()
