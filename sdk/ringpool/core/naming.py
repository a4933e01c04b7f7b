"""Names of one cluster: valid cluster names and node ids, and its ZooKeeper paths.

(The Redis key layout belongs to the state store: ``ringpool.store.keys``.)
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
    """The ZooKeeper paths of one cluster."""

    cluster: str

    def __post_init__(self) -> None:
        check_cluster_name(self.cluster)

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
    def restarting(self) -> str:
        """Ephemeral znodes of node ids a starting process is taking over (it waits for an
        earlier one's session to end, then reclaims that one's tasks itself)."""
        return f"{self.zk_root}/restarting"

    @property
    def cut_off(self) -> str:
        """Ephemeral znodes of nodes that left the ring because they cannot reach Redis:
        the coordinator recovers their tasks without counting it as a crash."""
        return f"{self.zk_root}/cut-off"

    @property
    def config(self) -> str:
        return f"{self.zk_root}/config"

    @property
    def election(self) -> str:
        return f"{self.zk_root}/coordinator"
