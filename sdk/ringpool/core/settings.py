"""The connection settings every ringpool client and process shares, and how they resolve.

``ConnectionSettings`` says where a cluster is and what it takes to join it. The
client (``ClientSettings``), the node (``NodeSettings``) and the coordinator
(``CoordinatorSettings``) extend it; ``taskctl`` builds ``ClientSettings``. A value
comes from an explicit argument or command-line flag first, then from the
environment variable ``RINGPOOL_<NAME>`` (``env_name``), then the default. The
environment is read when settings are resolved, never at import.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from ringpool.core.naming import check_cluster_name
from ringpool.core.zkacl import parse_credential
from ringpool.errors import ConfigError

ENV_PREFIX = "RINGPOOL_"

S = TypeVar("S", bound="ConnectionSettings")


def env_name(name: str) -> str:
    """The variable of a setting or flag: ``zk_auth`` and ``--zk-auth`` read ``RINGPOOL_ZK_AUTH``."""
    return ENV_PREFIX + name.lstrip("-").replace("-", "_").upper()


@dataclass(frozen=True)
class ConnectionSettings:
    """Where one cluster is, and the secrets its members share."""

    zk: str  # ZooKeeper hosts, host:port[,host:port]
    redis: str  # a Redis URL (rediss:// for TLS); any node of a Redis Cluster
    cluster: str = "default"
    token: str = ""  # the app token: nodes require it to submit tasks, apps present it
    # The operator token: nodes require it for retries, replays, Status and Drain; the
    # coordinator and taskctl present it (a client with both presents this one).
    operator_token: str = ""
    zk_auth: str = ""  # USER:PASSWORD digest identity of cluster members (ringpool.core.zkacl)

    #: The fields that fall back to ``RINGPOOL_<FIELD>`` when they are not given.
    ENV_FIELDS: ClassVar[tuple[str, ...]] = ("zk", "redis", "cluster", "token", "operator_token",
                                             "zk_auth")

    def __post_init__(self) -> None:
        if not self.zk:
            raise ConfigError("no ZooKeeper address: set --zk, zk= or RINGPOOL_ZK")
        if not self.redis:
            raise ConfigError("no Redis URL: set --redis, redis= or RINGPOOL_REDIS")
        check_cluster_name(self.cluster)
        if self.zk_auth:
            parse_credential(self.zk_auth, "zk_auth")

    @classmethod
    def from_sources(cls: type[S], given: Mapping[str, Any],
                     environ: Mapping[str, str] | None = None) -> S:
        """Settings from ``given`` (None means not given), then ``RINGPOOL_*``, then defaults."""
        environ = os.environ if environ is None else environ
        values = {name: value for name, value in given.items() if value is not None}
        for name in cls.ENV_FIELDS:
            if name not in values and env_name(name) in environ:
                values[name] = environ[env_name(name)]
        values.setdefault("zk", "")
        values.setdefault("redis", "")
        return cls(**values)
