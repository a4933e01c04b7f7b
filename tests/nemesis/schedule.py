"""The fault schedule: a seed and a profile give the same faults, times and targets.

Faults come one at a time: each is injected at its planned time (or as soon as the
cluster is ready again after the one before), held for ``hold_s``, then healed.
Kinds are drawn from a shuffled bag, so every kind comes once before any comes twice.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum


class FaultKind(StrEnum):
    #: SIGKILL a node; it stays down past its session (the coordinator recovers its
    #: tasks), then starts again under its id.
    KILL = "kill -9"
    #: SIGSTOP a node for the hold (shorter or longer than its session), then SIGCONT.
    PAUSE = "stop/cont"
    #: SIGTERM a node (it drains and exits); it stays down for the hold, then restarts.
    TERM = "term"
    #: SIGKILL a node and start it again under its id within its session: it reclaims
    #: its own tasks, or races the coordinator's recovery at the session's edge.
    RESTART = "restart same id"
    #: SIGKILL the leading coordinator; a new one starts after the hold.
    LEADER = "kill leader"
    #: SIGKILL Redis (AOF, appendfsync always); it starts again after the hold.
    REDIS = "restart redis"
    #: Stop ZooKeeper for the hold (past the session timeout), then start it on its data.
    ZOOKEEPER = "stop zookeeper"
    #: Cut one node off from Redis (its proxy drops and black-holes) for the hold.
    CUT = "cut from redis"


NODE_FAULTS = frozenset({FaultKind.KILL, FaultKind.PAUSE, FaultKind.TERM, FaultKind.RESTART})


@dataclass(frozen=True)
class Fault:
    at_s: float  # planned injection, seconds after the workload started
    kind: FaultKind
    target: str  # a node id, or "leader", "redis", "zookeeper"
    hold_s: float


@dataclass(frozen=True)
class Profile:
    """How long the faults run, which nodes they hit, how long each kind lasts."""

    duration_s: float
    nodes: tuple[str, ...]
    cut_node: str  # the node that reaches Redis through the proxy
    session_timeout_s: float = 6.0
    first_at_s: float = 5.0  # the workload runs fault-free this long first
    gap_s: tuple[float, float] = (3.0, 8.0)  # quiet time after a fault's heal
    ready_s: float = 3.0  # what a heal usually takes (a node registering), for planning
    holds: dict[FaultKind, tuple[float, float]] = field(default_factory=dict)

    def hold_range(self, kind: FaultKind) -> tuple[float, float]:
        session = self.session_timeout_s
        defaults = {
            FaultKind.KILL: (session + 2, session + 10),
            FaultKind.PAUSE: (1.0, 2 * session),
            FaultKind.TERM: (1.0, 5.0),
            FaultKind.RESTART: (0.0, session),
            FaultKind.LEADER: (2.0, 6.0),
            FaultKind.REDIS: (1.0, 5.0),
            FaultKind.ZOOKEEPER: (session + 1, session + 6),
            FaultKind.CUT: (4.0, 20.0),
        }
        return self.holds.get(kind, defaults[kind])


def plan(seed: int, profile: Profile) -> list[Fault]:
    """The faults of ``seed`` under ``profile``, in order; the same every time."""
    rng = random.Random(seed)
    faults: list[Fault] = []
    bag: list[FaultKind] = []
    at = profile.first_at_s
    while True:
        if not bag:
            bag = list(FaultKind)
            rng.shuffle(bag)
        kind = bag.pop()
        low, high = profile.hold_range(kind)
        hold = round(rng.uniform(low, high), 1)
        if at + hold > profile.duration_s:
            return faults
        faults.append(Fault(round(at, 1), kind, _target(rng, kind, profile), hold))
        at += hold + profile.ready_s + rng.uniform(*profile.gap_s)


def _target(rng: random.Random, kind: FaultKind, profile: Profile) -> str:
    if kind in NODE_FAULTS:
        return rng.choice(profile.nodes)
    return {FaultKind.CUT: profile.cut_node, FaultKind.LEADER: "leader",
            FaultKind.REDIS: "redis", FaultKind.ZOOKEEPER: "zookeeper"}[kind]
