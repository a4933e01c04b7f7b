"""Handoff leases of ordered keys: a node starts a key's ``ordered=True`` tasks only while
it holds the key's lease in Redis (``StateStore.take_order_leases``), so that when a key
changes owner (a node joins or comes back, or its owner drains) the new owner waits
until the previous one is done with the key's earlier tasks.

Per key, the node keeps its ordered tasks that have not started in a line, QUEUED, in
arrival order, and lets one at a time into the pools (whose own per-key order still
holds the next one back while an abandoned run of the key goes on). One loop takes the
leases that lines wait for, all in one store call, and asks again for those held
elsewhere with backoff, never later than the holder's lease would lapse. Another renews
every lease held, in one call every third of the TTL, while the key has tasks here
(waiting, in the pools, running or being recorded), and releases it once the key's last
one is recorded. A lease is trusted to start a task only up to two thirds of its TTL
after the call that took or renewed it was sent: a node paused past that, or cut off
from Redis, takes it again first, and a renewal that finds it gone (it lapsed, and
another node may hold it) stops the key's next starts until it is taken again. The TTL
is the node's ZooKeeper session timeout: a crashed holder's lease lapses about when its
tasks are recovered. Fencing is Redis' TTL alone (PX, Redis' clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass, field

from ringpool.store.store import StateStore
from ringpool_node.ratelimit import Held

log = logging.getLogger(__name__)

# A key whose last task here was recorded keeps its lease this long before it is released:
# a key dispatched in a loop (each task after the last one's result) then costs no take
# and release per task. A drain releases at once.
LINGER_S = 0.5
FIRST_BACKOFF_S = 0.05  # asking again for a lease held elsewhere: doubling from this ...
MAX_BACKOFF_S = 1.0  # ... up to this, and never past the holder's lease
RETRY_S = 0.5  # after a failed call (Redis away): the starts keep waiting
TRUSTED_SHARE = 2 / 3  # of the TTL after a take or renewal was sent, a lease is surely ours


@dataclass(slots=True)
class _Key:
    """One ordered key's tasks on this node, and its lease."""

    tasks: int = 0  # from accepted to recorded (or handed back, or stopped)
    line: deque[Held] = field(default_factory=deque)  # not started yet, in arrival order
    epoch: int = 0  # of the latest task: the holder a take asks as
    holder: str = ""  # the lease as this node holds it ("": not held)
    trusted_until: float = 0.0  # loop time up to which the lease is surely still ours
    running: bool = False  # one of its tasks is in the pools
    next_ask: float | None = None  # loop time of the next take (None: none wanted)
    backoff_s: float = FIRST_BACKOFF_S
    idle_since: float | None = None  # loop time its last task was done with


class OrderLeases:
    def __init__(self, node_id: str, store: StateStore, ttl_s: float) -> None:
        self.node_id = node_id
        self.store = store
        self.ttl_s = ttl_s
        self.linger_s = LINGER_S
        self._keys: dict[str, _Key] = {}
        # Ordered tasks waiting for their key's lease or turn. (One task id may wait
        # twice: a redelivery of a task whose stale copy still waits here.)
        self.waiting = 0
        # Keys whose release is on its way: not taken again before it lands (a take would
        # find the lease still ours, and the release would then delete it under us).
        self._releasing: set[str] = set()
        self._taker: asyncio.Task[None] | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._wake_taker = asyncio.Event()
        self._wake_keeper = asyncio.Event()

    # -- the key's tasks -------------------------------------------------------------

    def enter(self, key: str, epoch: int) -> None:
        """An ordered task of ``key`` accepted under ``epoch`` is now on our hands."""
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _Key()
        state.tasks += 1
        state.epoch = max(state.epoch, epoch)
        state.idle_since = None

    def admit(self, key: str, held: Held) -> None:
        """Start ``held`` (a task of ``key`` already entered) in its turn, under the lease."""
        self._keys[key].line.append(held)
        self.waiting += 1
        self._pump(key)

    def ran(self, key: str) -> None:
        """The pools are done with the key's task let in last: the next may start."""
        self._keys[key].running = False
        self._pump(key)

    def leave(self, key: str) -> None:
        """A task of ``key`` is off our hands (recorded, handed back or stopped)."""
        state = self._keys[key]
        state.tasks -= 1
        if state.tasks:
            return
        if not state.holder:
            del self._keys[key]
            return
        state.idle_since = asyncio.get_running_loop().time()
        self._wake_keeper.set()

    def drop(self, task_id: str) -> Held | None:
        """Take ``task_id`` out of its key's line (a cancel); None when it is not in one."""
        for state in self._keys.values():
            for held in state.line:
                if held.task_id == task_id:
                    state.line.remove(held)
                    self.waiting -= 1
                    return held
        return None

    def withdraw(self) -> int:
        """Give up every start still waiting (a drain hands them back); how many."""
        held = [item for state in self._keys.values() for item in state.line]
        for state in self._keys.values():
            state.line.clear()
            state.next_ask = None
        self.waiting = 0
        for item in held:
            item.withdrawn()
        return len(held)

    def drain(self) -> None:
        """From now on, release each lease as soon as its key's last task here is done;
        give up at once the starts of keys whose lease this node does not hold (another
        node's work comes first: waiting for it would only hold the drain up)."""
        self.linger_s = 0.0
        unheld = [state for state in self._keys.values() if not state.holder and state.line]
        given_up = [held for state in unheld for held in state.line]
        for state in unheld:
            state.line.clear()
            state.next_ask = None
        self.waiting -= len(given_up)
        for held in given_up:
            held.withdrawn()
        self._wake_keeper.set()

    async def close(self) -> None:
        """Stop the loops and release every lease still held (the end of a drain)."""
        for loop_task in (self._taker, self._keeper):
            if loop_task is not None:
                loop_task.cancel()
        holders = {key: state.holder for key, state in self._keys.items() if state.holder}
        if holders:
            try:
                await self.store.release_order_leases(holders)
            except Exception as exc:  # they lapse by their TTL
                log.warning("could not release %d ordered-key leases: %s", len(holders), exc)
        for state in self._keys.values():
            state.holder = ""

    def _pump(self, key: str) -> None:
        state = self._keys[key]
        if state.running or not state.line:
            return
        loop = asyncio.get_running_loop()
        if state.holder and loop.time() < state.trusted_until:
            state.running = True
            self.waiting -= 1
            state.line.popleft().launch()
            return
        if state.next_ask is None:
            state.next_ask = loop.time()
            self._wake_taker.set()
        if self._taker is None or self._taker.done():
            self._taker = asyncio.create_task(self._take_forever())

    # -- taking ------------------------------------------------------------------------

    async def _take_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake_taker.clear()
            asking = {key: state for key, state in self._keys.items()
                      if state.next_ask is not None}
            if not asking:
                return
            now = loop.time()
            due = {key: state for key, state in asking.items() if key not in self._releasing
                   and state.next_ask is not None and state.next_ask <= now}
            if due:
                await self._take(due)
            # A key whose release is on its way waits for the release's wake.
            wakes = [state.next_ask for key, state in self._keys.items()
                     if state.next_ask is not None and key not in self._releasing]
            timeout_s = max(0.0, min(wakes) - loop.time()) if wakes else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_taker.wait(), timeout_s)

    async def _take(self, due: dict[str, _Key]) -> None:
        loop = asyncio.get_running_loop()
        holders = {key: state.holder or f"{self.node_id}:{state.epoch}"
                   for key, state in due.items()}
        sent_at = loop.time()
        try:
            answers = await self.store.take_order_leases(holders, self.ttl_s)
        except Exception as exc:
            log.warning("taking %d ordered-key leases failed (%s); their tasks wait",
                        len(holders), exc)
            for waiting in due.values():
                if waiting.next_ask is not None:
                    waiting.next_ask = loop.time() + RETRY_S
            return
        for key, answer in answers.items():
            state = self._keys.get(key)
            if answer.granted:
                if state is None:  # its tasks went while we asked: the keeper releases it
                    state = self._keys[key] = _Key()
                self._granted(state, holders[key], sent_at)
                state.next_ask = None
                self._pump(key)
            elif state is not None and state.next_ask is not None:
                if state.holder:
                    log.warning("lost the lease of ordered key %r to %s", key, answer.holder)
                state.holder = ""
                state.next_ask = loop.time() + min(state.backoff_s, answer.remaining_s)
                state.backoff_s = min(state.backoff_s * 2, MAX_BACKOFF_S)

    def _granted(self, state: _Key, holder: str, sent_at: float) -> None:
        state.holder = holder
        state.trusted_until = sent_at + self.ttl_s * TRUSTED_SHARE
        state.backoff_s = FIRST_BACKOFF_S
        if self._keeper is None or self._keeper.done():
            self._keeper = asyncio.create_task(self._keep_forever())
        if not state.tasks:  # its tasks went while we asked: released by the keeper
            state.idle_since = asyncio.get_running_loop().time()
            self._wake_keeper.set()

    # -- renewing and releasing --------------------------------------------------------------

    async def _keep_forever(self) -> None:
        """Renew the leases of keys with tasks here every third of the TTL; release those
        of keys idle for ``linger_s``."""
        loop = asyncio.get_running_loop()
        next_renew = loop.time() + self.ttl_s / 3
        while any(state.holder for state in self._keys.values()):
            self._wake_keeper.clear()
            now = loop.time()
            idle = {key: state for key, state in self._keys.items() if state.holder
                    and state.idle_since is not None and now - state.idle_since >= self.linger_s}
            if idle:
                await self._release(idle)
            if loop.time() >= next_renew:
                next_renew = loop.time() + self.ttl_s / 3
                await self._renew()
            wakes = [next_renew, *(state.idle_since + self.linger_s
                                   for state in self._keys.values()
                                   if state.holder and state.idle_since is not None)]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_keeper.wait(), max(0.0, min(wakes) - loop.time()))

    async def _release(self, idle: dict[str, _Key]) -> None:
        holders = {key: state.holder for key, state in idle.items()}
        for key, state in idle.items():
            state.holder = ""
            if not state.tasks:
                del self._keys[key]
        self._releasing.update(holders)
        try:
            await self.store.release_order_leases(holders)
        except Exception as exc:  # they lapse by their TTL
            log.warning("could not release %d ordered-key leases: %s", len(holders), exc)
        finally:
            self._releasing.difference_update(holders)
            self._wake_taker.set()

    async def _renew(self) -> None:
        loop = asyncio.get_running_loop()
        holders = {key: state.holder for key, state in self._keys.items() if state.holder}
        sent_at = loop.time()
        try:
            renewed = await self.store.renew_order_leases(holders, self.ttl_s)
        except Exception as exc:  # untrusted once its time is up: the next start takes it again
            log.warning("renewing %d ordered-key leases failed: %s", len(holders), exc)
            return
        for key, ok in renewed.items():
            state = self._keys.get(key)
            if state is None or state.holder != holders[key]:
                continue  # released meanwhile
            if ok:
                state.trusted_until = sent_at + self.ttl_s * TRUSTED_SHARE
            else:
                log.warning("the lease of ordered key %r lapsed; its next task takes it again",
                            key)
                state.holder = ""
                if not state.tasks:
                    del self._keys[key]
                else:
                    self._pump(key)
