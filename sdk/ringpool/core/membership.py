"""Ring membership from ZooKeeper: watch ``/ringpool/<cluster>/members``, publish rings.

The ring version is the members znode's ``cversion``: it grows on every join and
leave, so a newer ring always has a larger version. Watch callbacks only wake a
refresh thread (kazoo forbids blocking in them); the thread reads the children
and swaps in a new immutable ``Ring``.

Connection states: on SUSPENDED routing keeps the last ring; on LOST the state
is reported through ``on_state`` and the ring is rebuilt once reconnected. Every
change is reported, in order, even when the next one follows at once (a LOST
quickly followed by CONNECTED still reports LOST).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError
from kazoo.protocol.states import WatchedEvent

from ringpool.core.naming import Names
from ringpool.core.ring import DEFAULT_VNODES, EMPTY_RING, Member, Ring
from ringpool.core.zkacl import client_options
from ringpool.errors import ClusterUnavailable

log = logging.getLogger(__name__)
ZK_TIMEOUT_S = 10.0  # every ZooKeeper read here waits at most this long


def connect_zookeeper(
    hosts: str, timeout: float = 10.0, auth: str = "", operator_auth: str = "", **kwargs: Any
) -> KazooClient:
    """A started KazooClient; ClusterUnavailable when ZooKeeper is not reachable in time.

    ``auth`` / ``operator_auth`` are optional digest identities (``USER:PASSWORD``,
    see ``ringpool.core.zkacl``); znodes this client creates are then writable only by them.
    """
    kwargs = {**client_options(auth, operator_auth), **kwargs}
    client = KazooClient(hosts=hosts, timeout=timeout, **kwargs)
    try:
        client.start(timeout=timeout)
    except Exception as exc:
        client.stop()
        client.close()
        raise ClusterUnavailable(f"cannot reach ZooKeeper at {hosts}: {exc}") from None
    return client


def parse_member(node_id: str, data: bytes, epoch: int) -> Member | None:
    """A member from its znode JSON, or None (logged) for data that is not one."""
    try:
        info = json.loads(data)
        tasks = info.get("tasks")
        return Member(
            node_id=node_id,
            addr=str(info["addr"]),
            weight=float(info.get("weight", 1.0)),
            started_at=float(info.get("started_at", 0.0)),
            epoch=epoch,
            tasks=None if tasks is None else frozenset(str(name) for name in tasks),
            group=str(info.get("group", "")),
        )
    except (ValueError, KeyError, TypeError):
        log.warning("ignoring member %s with unreadable data %r", node_id, data[:200])
        return None


def read_ring(
    client: KazooClient, names: Names, vnodes: int = DEFAULT_VNODES,
    watch: Callable[[WatchedEvent], None] | None = None,
) -> Ring:
    """The ring as ZooKeeper holds it now, its members' znodes read in parallel.

    ``watch`` is set on the members znode; NoNodeError when that znode does not exist.
    """
    children, stat = client.get_children_async(
        names.members, watch=watch, include_data=True
    ).get(timeout=ZK_TIMEOUT_S)
    pending = {child: client.get_async(names.member(child)) for child in children}
    members: dict[str, Member] = {}
    for child, result in pending.items():
        try:
            data, child_stat = result.get(timeout=ZK_TIMEOUT_S)
        except NoNodeError:
            continue  # left between the listing and the read; a watch fires for it
        member = parse_member(child, data, child_stat.czxid)
        if member is not None:
            members[child] = member
    return Ring(members, version=stat.cversion, vnodes=vnodes)


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
            ring = read_ring(self.client, self.names, self.vnodes, watch=self._on_watch)
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
        self._states.append(state)
        self._wake.set()

    def _report_states(self) -> None:
        """Tell ``on_state`` of each queued change, oldest first."""
        while self._states:
            state = self._states.popleft()
            if state == self._reported:
                continue
            self._reported = state
            if self._on_state is not None:
                try:
                    self._on_state(state)
                except Exception:
                    log.exception("connection state callback failed")

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(timeout=5.0)
            self._wake.clear()
            if self._stopped.is_set():
                return
            self._report_states()
            if not self.client.connected:
                continue
            try:
                self.refresh()
            except Exception:
                log.warning("membership refresh failed; will retry", exc_info=True)
                time.sleep(0.2)
                self._wake.set()
