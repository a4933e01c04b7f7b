"""Cluster-wide rate limits: starts of a rate-limited task wait here for a token.

A task declares ``@task(..., rate_limit="100/s")``; the cluster config's
``rate_limits.<name>`` overrides it live (0: unlimited). The limit holds for the whole
cluster: every node takes tokens from one bucket per task name in Redis (the state
store's ``take_tokens``), by the Redis server's clock.

An accepted task over its limit waits here, queued (its record says QUEUED), in
arrival order per task name; it never fails for it. One loop asks for tokens for
every name with waiting starts in a single script call, starts what it is granted,
and sleeps until the first bucket has what is worth asking for again (the store says
how long), or until a new name starts waiting or the config changes. The bucket
holds ``BURST_S`` of its rate (at least one token): after a quiet spell that many may
start at once, and over a long run the rate holds to within that burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ringpool.store.store import StateStore, TokenAsk
from ringpool.task import TaskDefinition

log = logging.getLogger(__name__)

BURST_S = 0.2
RETRY_S = 0.5  # after a failed call (Redis away): the starts keep waiting


def burst_of(rate_per_s: float) -> float:
    return max(1.0, rate_per_s * BURST_S)


@dataclass(slots=True)
class Held:
    """A start waiting for a token: what launches it, and what to do if it never will
    (``withdrawn`` by a drain, ``stopped`` by a cancel)."""

    task_id: str
    launch: Callable[[], None]
    withdrawn: Callable[[], None]
    stopped: Callable[[], None]


class RateGate:
    def __init__(self, store: StateStore) -> None:
        self.store = store
        # The cluster config's limits by task name (starts per second; 0: unlimited).
        self.overrides: Mapping[str, float] = {}
        self._waiting: dict[str, deque[Held]] = {}
        self._definitions: dict[str, TaskDefinition[Any, Any]] = {}
        self._next_ask: dict[str, float] = {}  # loop time at which to ask for a name again
        self._wake: asyncio.Event | None = None
        self._runner: asyncio.Task[None] | None = None

    def limit_of(self, definition: TaskDefinition[Any, Any]) -> float | None:
        """Starts per second allowed to ``definition``'s task cluster-wide; None: no limit."""
        override = self.overrides.get(definition.name)
        if override is not None:
            return override or None
        return definition.rate_limit_per_s

    def holds(self, name: str) -> bool:
        """Whether starts of task ``name`` wait here (a new one then queues behind them)."""
        return name in self._waiting

    @property
    def waiting(self) -> dict[str, int]:
        """Starts waiting for a token, by task name."""
        return {name: len(queue) for name, queue in self._waiting.items()}

    def admit(self, definition: TaskDefinition[Any, Any], held: Held) -> None:
        """Start ``held`` once its task's bucket grants a token (call on the event loop)."""
        name = definition.name
        queue = self._waiting.get(name)
        if queue is None:
            queue = self._waiting[name] = deque()
            self._definitions[name] = definition
            self._next_ask[name] = 0.0
            self.changed()
        queue.append(held)
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())

    def changed(self) -> None:
        """Limits or waiting names changed: look again now."""
        if self._wake is not None:
            self._wake.set()

    def drop(self, task_id: str) -> Held | None:
        """Take ``task_id``'s start out of the line (a cancel); None when it is not in it."""
        for name, queue in self._waiting.items():
            for held in queue:
                if held.task_id == task_id:
                    queue.remove(held)
                    if not queue:
                        del self._waiting[name], self._next_ask[name], self._definitions[name]
                    return held
        return None

    def withdraw(self) -> int:
        """Give up every waiting start (a drain hands them back); how many there were."""
        held = [item for queue in self._waiting.values() for item in queue]
        self._waiting.clear()
        self._next_ask.clear()
        self._definitions.clear()
        if self._runner is not None:
            self._runner.cancel()
        for item in held:
            item.withdrawn()
        return len(held)

    async def _run(self) -> None:
        self._wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        while self._waiting:
            self._wake.clear()
            now = loop.time()
            due = [name for name, at in self._next_ask.items() if at <= now]
            if due:
                try:
                    await self._ask(due)
                except Exception as exc:
                    log.warning("taking rate-limit tokens failed (%s); the starts wait", exc)
                    for name in due:
                        if name in self._waiting:
                            self._next_ask[name] = loop.time() + RETRY_S
            if not self._next_ask:
                return
            sleep_s = min(self._next_ask.values()) - loop.time()
            if sleep_s > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), sleep_s)

    async def _ask(self, names: list[str]) -> None:
        asks: dict[str, TokenAsk] = {}
        for name in names:
            rate = self.limit_of(self._definitions[name])
            if rate is None:  # lifted meanwhile: everything waiting goes
                self._release(name, len(self._waiting[name]), 0.0)
            else:
                asks[name] = TokenAsk(len(self._waiting[name]), rate, burst_of(rate))
        grants = await self.store.take_tokens(asks)
        for name, grant in grants.items():
            if name in self._waiting:  # not withdrawn while we asked
                self._release(name, grant.granted, grant.wait_s)

    def _release(self, name: str, count: int, wait_s: float) -> None:
        queue = self._waiting[name]
        for _ in range(min(count, len(queue))):
            queue.popleft().launch()
        if queue:
            self._next_ask[name] = asyncio.get_running_loop().time() + wait_s
        else:
            del self._waiting[name], self._next_ask[name], self._definitions[name]
