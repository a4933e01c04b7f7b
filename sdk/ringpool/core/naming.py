"""Where shared state lives: ZooKeeper paths and Redis keys for one cluster.

Every Redis key carries the hash tag ``{<cluster>}`` so that a Redis Cluster
keeps one cluster's keys in one slot and multi-key scripts stay legal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ringpool.errors import ConfigError

_CLUSTER_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_NODE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def check_cluster_name(name: str) -> str:
    if not _CLUSTER_NAME.match(name):
        raise ConfigError(f"invalid cluster name {name!r}: use 1-64 of [A-Za-z0-9_.-]")
    return name


def check_node_id(node_id: str) -> str:
    if not _NODE_ID.match(node_id):
        raise ConfigError(f"invalid node id {node_id!r}: use 1-128 of [A-Za-z0-9_.-]")
    return node_id


@dataclass(frozen=True)
class Names:
    """All names for one cluster."""

    cluster: str

    def __post_init__(self) -> None:
        check_cluster_name(self.cluster)

    # ZooKeeper
    @property
    def zk_root(self) -> str:
        return f"/ringpool/{self.cluster}"

    @property
    def members(self) -> str:
        return f"{self.zk_root}/members"

    def member(self, node_id: str) -> str:
        return f"{self.members}/{node_id}"

    @property
    def draining(self) -> str:
        """Ephemeral znodes of nodes that left the ring and are finishing their tasks."""
        return f"{self.zk_root}/draining"

    @property
    def config(self) -> str:
        return f"{self.zk_root}/config"

    @property
    def election(self) -> str:
        return f"{self.zk_root}/coordinator"

    # Redis
    @property
    def _prefix(self) -> str:
        return f"ringpool:{{{self.cluster}}}"

    def fingerprint(self, scope: str) -> str:
        return f"{self._prefix}:fp:{scope}"

    def task(self, task_id: str) -> str:
        return f"{self._prefix}:task:{task_id}"

    def inflight(self, node_id: str) -> str:
        """Hash task id -> owner epoch for tasks accepted by ``node_id`` and not finished."""
        return f"{self._prefix}:inflight:{node_id}"

    @property
    def inflight_nodes(self) -> str:
        """Set of node ids that ever held in-flight tasks (for recovery scans)."""
        return f"{self._prefix}:inflight-nodes"

    @property
    def retries(self) -> str:
        """Sorted set task id -> due time (unix seconds)."""
        return f"{self._prefix}:retry"

    @property
    def dlq(self) -> str:
        """Sorted set task id -> time it was dead-lettered."""
        return f"{self._prefix}:dlq"

    def dlq_entry(self, task_id: str) -> str:
        return f"{self._prefix}:dlq:{task_id}"

    @property
    def done_channel(self) -> str:
        """Pub/sub channel announcing task ids that finished away from their submitter."""
        return f"{self._prefix}:done"

    @property
    def retry_channel(self) -> str:
        """Pub/sub channel waking the retry scheduler when an earlier retry is due."""
        return f"{self._prefix}:retry-wake"
