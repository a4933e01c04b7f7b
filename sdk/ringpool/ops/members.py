"""What state a ring member is in, as ``taskctl status`` and the dashboard show it."""

from __future__ import annotations

MEMBER_STATES = ("serving", "no-zookeeper", "draining", "unreachable")


def member_state(error: str | None, draining: bool, zookeeper: str) -> str:
    """unreachable (its Status call failed), draining, no-zookeeper (serving on its last
    ring while it cannot reach ZooKeeper) or serving. ``zookeeper`` is the node's session
    state (kazoo's names); an older node leaves it empty."""
    if error:
        return "unreachable"
    if draining:
        return "draining"
    return "no-zookeeper" if zookeeper not in ("CONNECTED", "") else "serving"
