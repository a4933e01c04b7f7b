"""Leader election with kazoo, with a leader that is told when its session is in doubt.

kazoo's ``Election.run`` blocks a thread while we lead. The thread holds the lock
until the asyncio side says its loops have stopped (``release``), and a
SUSPENDED or LOST session wakes ``demoted`` at once. So the leader's loops stop
before our lock znode goes, hence before another leader can start.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from typing import Any

from kazoo.client import KazooClient, KazooState

log = logging.getLogger(__name__)
RETRY_S = 0.5  # pause before contending again after a failed attempt


class Leadership:
    def __init__(self, client: KazooClient, path: str, identifier: str) -> None:
        self.client = client
        self.identifier = identifier
        self.path = path
        self._election = client.Election(path, identifier)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._elected = asyncio.Event()
        self._demoted = asyncio.Event()
        self._release = threading.Event()
        self._thread: threading.Thread | None = None
        client.add_listener(self._on_connection)

    def _on_connection(self, state: str) -> None:
        # Runs on kazoo's thread: only hand the news to the event loop.
        if state in (KazooState.SUSPENDED, KazooState.LOST) and self._loop is not None:
            self._loop.call_soon_threadsafe(self._demoted.set)

    def _while_leading(self) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._elected.set)
        self._release.wait()

    def _contend(self) -> None:
        try:
            self._election.run(self._while_leading)
        except Exception:
            log.warning("election attempt failed", exc_info=True)
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._demoted.set)

    async def wait_elected(self) -> None:
        """Contend for leadership until we lead; a failed attempt is retried after a pause."""
        self._loop = asyncio.get_running_loop()
        while True:
            self._elected.clear()
            self._demoted.clear()
            self._release.clear()
            while not self.client.connected:
                await asyncio.sleep(0.2)
            self._election = self.client.Election(self.path, self.identifier)  # one per attempt
            self._thread = threading.Thread(target=self._contend, name="ringpool-election",
                                            daemon=True)
            self._thread.start()
            await first_of(self._elected.wait(), self._demoted.wait())
            if self._elected.is_set():
                return
            await self.release()
            await asyncio.sleep(RETRY_S)

    async def wait_demoted(self) -> None:
        await self._demoted.wait()

    async def release(self) -> None:
        """Give up the lock (or the attempt); call only after the leader's loops have stopped."""
        self._release.set()
        self._election.cancel()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10.0)

    def close(self) -> None:
        self.client.remove_listener(self._on_connection)


async def first_of(*waits: Coroutine[Any, Any, object]) -> None:
    """Return once the first of ``waits`` is done; the others are cancelled."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
