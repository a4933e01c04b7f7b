"""The consistent-hash ring: immutable snapshots and a versioned route cache.

Each member owns ``vnodes * weight`` points on a 64-bit circle (mmh3 positions).
A key belongs to the first point clockwise from its own hash. Snapshots never
change after construction, so readers need no lock: membership swaps in a new
snapshot and routing picks up whichever one it read.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import mmh3

from ringpool.errors import NoNodesAvailable

DEFAULT_VNODES = 128
MIN_WEIGHT, MAX_WEIGHT = 0.01, 100.0  # a member's share, relative to the others


def key_position(key: str) -> int:
    """The key's point on the ring: the first 64 bits of its mmh3 x64 hash."""
    return mmh3.hash64(key, signed=False)[0]


@dataclass(frozen=True)
class Member:
    node_id: str
    addr: str
    weight: float = 1.0
    started_at: float = 0.0
    epoch: int = 0  # the member znode's creation zxid: changes on every registration
    # The task names the node serves; None when its znode does not say (an older node).
    tasks: frozenset[str] | None = None


class Ring:
    """An immutable ring at one version."""

    __slots__ = ("_owners", "_positions", "members", "task_names", "version", "vnodes")

    def __init__(
        self, members: Mapping[str, Member], version: int = 0, vnodes: int = DEFAULT_VNODES
    ) -> None:
        self.members: dict[str, Member] = dict(members)
        self.version = version
        self.vnodes = vnodes
        points: list[tuple[int, str]] = []
        for node_id, member in self.members.items():
            count = max(1, round(vnodes * member.weight))
            points.extend((key_position(f"{node_id}#{i}"), node_id) for i in range(count))
        # Ties (vanishingly rare) break by node id so every process agrees.
        points.sort()
        self._positions = [p for p, _ in points]
        self._owners = [n for _, n in points]
        self.task_names = _served(self.members.values())

    def __len__(self) -> int:
        return len(self.members)

    def owner(self, key: str) -> str:
        """The node id owning ``key``; raises NoNodesAvailable on an empty ring."""
        positions = self._positions
        if not positions:
            raise NoNodesAvailable("the ring has no members")
        index = bisect_right(positions, mmh3.hash64(key, signed=False)[0])
        return self._owners[index if index < len(positions) else 0]

    def points(self) -> list[tuple[int, str]]:
        """Every virtual node as (position, owner), clockwise: an owner's keys are those
        after the previous point up to its own."""
        return list(zip(self._positions, self._owners, strict=True))

    def shares(self) -> dict[str, float]:
        """Each member's fraction of the 64-bit key space."""
        shares = dict.fromkeys(self.members, 0.0)
        if not self._positions:
            return shares
        span = 1 << 64
        previous = self._positions[-1] - span
        for position, node_id in zip(self._positions, self._owners, strict=True):
            shares[node_id] += (position - previous) / span
            previous = position
        return shares


def _served(members: Collection[Member]) -> frozenset[str] | None:
    """Every task name some member serves; None when there are no members or one does not
    publish its names (then only a key's owner can tell an unknown name)."""
    served = [member.tasks for member in members if member.tasks is not None]
    if not members or len(served) < len(members):
        return None
    return frozenset().union(*served)


EMPTY_RING = Ring({}, version=0)


class RouteCache:
    """key -> owner, valid only at the ring version it was computed for.

    A new ring version silently empties the cache; the size cap bounds memory
    for callers with unbounded key spaces.
    """

    __slots__ = ("_entries", "_version", "max_entries")

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._version = -1
        self._entries: dict[str, str] = {}

    def owner(self, ring: Ring, key: str) -> str:
        if ring.version != self._version:
            self._entries = {}
            self._version = ring.version
        entries = self._entries
        owner = entries.get(key)
        if owner is None:
            owner = ring.owner(key)
            if len(entries) >= self.max_entries:
                entries.clear()
            entries[key] = owner
        return owner
