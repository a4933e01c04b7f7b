"""The node's member znode: register, re-register after a lost session, leave.

The znode's JSON says where to reach the node (``addr``), its ``weight``, when it
started, and the task names it serves (``tasks``), so that clients refuse an
unknown name before sending it.

The epoch is the znode's creation zxid. It changes with every registration, so
work stamped with an old epoch can be told apart from the live owner's (fencing).
A lost session clears the epoch at once: the node stops accepting until it is
registered again.
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

log = logging.getLogger(__name__)


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
    ) -> None:
        self.client = client
        self.path = names.member(node_id)
        self.draining_path = f"{names.draining}/{node_id}"
        self.node_id = node_id
        self.data = json.dumps(
            {"addr": addr, "weight": weight, "started_at": time.time(), "tasks": sorted(tasks)}
        ).encode()
        self.epoch: int | None = None
        self._on_epoch = on_epoch
        self._leaving = False
        self._wake = threading.Event()
        self._thread = threading.Thread(
            target=self._reregister_loop, name="ringpool-registration", daemon=True
        )

    def register(self) -> int:
        """Create the ephemeral member znode; returns the new epoch."""
        while True:
            try:
                _, stat = self.client.create(
                    self.path, self.data, ephemeral=True, makepath=True, include_data=True
                )
                break
            except NodeExistsError:
                # Left by our own previous process whose session has not expired yet.
                log.warning("replacing stale member znode %s", self.path)
                with contextlib.suppress(NoNodeError):
                    self.client.delete(self.path)
        self.epoch = stat.czxid
        log.info("registered %s with epoch %d", self.path, self.epoch)
        self._on_epoch(self.epoch)
        if not self._thread.is_alive():
            self.client.add_listener(self._on_connection)
            self._thread.start()
        return stat.czxid

    def leave(self) -> None:
        """Leave the ring for a drain; no re-registration after this.

        The ephemeral draining znode tells the coordinator not to recover our tasks
        while we finish them; it goes with our session if we die mid-drain.
        """
        self._leaving = True
        self._wake.set()
        with contextlib.suppress(NodeExistsError):
            self.client.create(self.draining_path, b"", ephemeral=True, makepath=True)
        try:
            self.client.delete(self.path)
        except NoNodeError:
            pass
        except Exception:
            log.warning("could not delete %s; it goes with the session", self.path, exc_info=True)

    def stop(self) -> None:
        """End re-registration; the znode goes with the session (or went with ``leave``)."""
        self._leaving = True
        self._wake.set()
        self.client.remove_listener(self._on_connection)
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)

    def _on_connection(self, state: str) -> None:
        if state == KazooState.LOST and self.epoch is not None:
            self.epoch = None
            self._on_epoch(None)  # must only record and wake (see Node.set_epoch)
        self._wake.set()

    def _reregister_loop(self) -> None:
        while not self._leaving:
            self._wake.wait()
            self._wake.clear()
            if self._leaving or self.epoch is not None or not self.client.connected:
                continue
            try:
                self.register()
            except Exception:
                log.warning("re-registration failed; retrying", exc_info=True)
                time.sleep(0.5)
                self._wake.set()
