"""The node's member znode: claim the node id, register, re-register, step out, leave.

The znode's JSON says where to reach the node (``addr``), its ``weight``, when it
started, and the task names it serves (``tasks``), so that clients refuse an
unknown name before sending it.

The epoch is the znode's creation zxid. It changes with every registration, so
work stamped with an old epoch can be told apart from the live owner's (fencing).
A lost session clears the epoch at once: the node stops accepting until it is
registered again.

One process per node id: a member znode held by another session (another process
runs as this node, or a crashed one whose session has not expired yet) is never
taken over. A starting node waits for it to go, up to ``takeover_wait_s``, holding
the id's restarting znode until it is registered, so that the coordinator leaves the
id's tasks to it (it reclaims them itself); past the wait it raises ``ConfigError``.
A node that finds its id taken when it re-registers after a lost session gives the
id up (``on_id_taken``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import NodeExistsError, NoNodeError

from ringpool.core.naming import Names
from ringpool.errors import ConfigError

log = logging.getLogger(__name__)
POLL_S = 0.2  # how often a waiting start looks at the id's znode again


class Registration:
    def __init__(
        self,
        client: KazooClient,
        names: Names,
        node_id: str,
        addr: str,
        weight: float,
        tasks: Iterable[str],
        on_epoch: Callable[[int | None], None],
        takeover_wait_s: float = 30.0,
        on_id_taken: Callable[[], None] = lambda: None,
    ) -> None:
        self.client = client
        self.path = names.member(node_id)
        self.draining_path = f"{names.draining}/{node_id}"
        self.restarting_path = f"{names.restarting}/{node_id}"
        self.cut_off_path = f"{names.cut_off}/{node_id}"
        self.node_id = node_id
        self.data = json.dumps(
            {"addr": addr, "weight": weight, "started_at": time.time(), "tasks": sorted(tasks)}
        ).encode()
        self.epoch: int | None = None
        self.takeover_wait_s = takeover_wait_s
        self._on_epoch = on_epoch
        self._on_id_taken = on_id_taken
        self._leaving = False
        self._away = False  # stepped out of the ring (Redis unreachable)
        self._wake = threading.Event()
        self._thread = threading.Thread(
            target=self._reregister_loop, name="ringpool-registration", daemon=True
        )

    # -- the node id ---------------------------------------------------------------

    def _holder(self) -> int | None:
        """The session holding our member znode when it is not ours; None when free."""
        stat = self.client.exists(self.path)
        if stat is None or stat.ephemeralOwner == self.client.client_id[0]:
            return None
        return int(stat.ephemeralOwner)

    def claim(self) -> None:
        """Return once no other session holds our node id; ConfigError after
        ``takeover_wait_s``. The id's restarting znode is ours from here until we register."""
        deadline = time.monotonic() + self.takeover_wait_s
        holder = self._holder()
        if holder is not None:
            log.warning("node id %s is held by ZooKeeper session 0x%x (an earlier process "
                        "whose session has not expired, or another one running as %s); "
                        "waiting up to %.0fs for it to go", self.node_id, holder, self.node_id,
                        self.takeover_wait_s)
        while True:
            # Created again should an earlier attempt's one have been in the way.
            with contextlib.suppress(NodeExistsError):
                self.client.create(self.restarting_path, b"", ephemeral=True, makepath=True)
            holder = self._holder()
            if holder is None:
                return
            if time.monotonic() >= deadline:
                self._drop(self.restarting_path)
                raise ConfigError(
                    f"node id {self.node_id} is held by a live ZooKeeper session (0x{holder:x}) "
                    f"after {self.takeover_wait_s:.0f}s: another process runs as "
                    f"{self.node_id}? Give each node its own --node-id")
            time.sleep(POLL_S)

    def register(self) -> int:
        """Claim the id and create the ephemeral member znode; returns the new epoch."""
        while True:
            self.claim()
            try:
                _, stat = self.client.create(
                    self.path, self.data, ephemeral=True, makepath=True, include_data=True
                )
                break
            except NodeExistsError:
                stat = self.client.exists(self.path)
                if stat is not None and stat.ephemeralOwner == self.client.client_id[0]:
                    break  # our own create, whose reply was lost
        self.epoch = stat.czxid
        log.info("registered %s with epoch %d", self.path, self.epoch)
        self._on_epoch(self.epoch)
        self._drop(self.restarting_path)
        self._drop(self.cut_off_path)
        if not self._thread.is_alive():
            self.client.add_listener(self._on_connection)
            self._thread.start()
        return stat.czxid

    # -- leaving -------------------------------------------------------------------

    def leave(self) -> None:
        """Leave the ring for a drain; no re-registration after this.

        The ephemeral draining znode tells the coordinator not to recover our tasks
        while we finish them; it goes with our session if we die mid-drain.
        """
        self._leaving = True
        self._wake.set()
        with contextlib.suppress(NodeExistsError):
            self.client.create(self.draining_path, b"", ephemeral=True, makepath=True)
        self._drop(self.path)

    def step_out(self) -> None:
        """Leave the ring until ``step_in``: the node cannot reach Redis.

        The cut-off znode tells the coordinator to recover our tasks (we cannot finish
        them) without counting it as a crash of theirs.
        """
        self._away = True
        with contextlib.suppress(NodeExistsError):
            self.client.create(self.cut_off_path, b"", ephemeral=True, makepath=True)
        self._drop(self.path)
        if self.epoch is not None:
            self.epoch = None
            self._on_epoch(None)

    def step_in(self) -> None:
        """Register again after ``step_out``, with a new epoch."""
        self._away = False
        try:
            self.register()
        except ConfigError:
            log.error("node id %s was taken while this node was out of the ring", self.node_id)
            self._leaving = True
            self._on_id_taken()

    def stop(self) -> None:
        """End re-registration; the znode goes with the session (or went with ``leave``)."""
        self._leaving = True
        self._wake.set()
        self.client.remove_listener(self._on_connection)
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)

    def _drop(self, path: str) -> None:
        try:
            self.client.delete(path)
        except NoNodeError:
            pass
        except Exception:
            log.warning("could not delete %s; it goes with the session", path, exc_info=True)

    # -- after a lost session --------------------------------------------------------

    def _on_connection(self, state: str) -> None:
        if state == KazooState.LOST and self.epoch is not None:
            self.epoch = None
            self._on_epoch(None)  # must only record and wake (see Node.set_epoch)
        self._wake.set()

    def _reregister_loop(self) -> None:
        while not self._leaving:
            self._wake.wait()
            self._wake.clear()
            if self._leaving or self._away or self.epoch is not None or not self.client.connected:
                continue
            try:
                if self._holder() is not None:
                    raise ConfigError(f"node id {self.node_id} is registered by another process")
                self.register()
            except ConfigError:
                # Someone registered our id while our session was gone: theirs now.
                log.error("node id %s was registered by another process while this one's "
                          "session was lost; giving it up", self.node_id)
                self._leaving = True
                self._on_id_taken()
                return
            except Exception:
                log.warning("re-registration failed; retrying", exc_info=True)
                time.sleep(0.5)
                self._wake.set()
