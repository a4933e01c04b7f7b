"""Client settings: explicit arguments first, then ``RINGPOOL_*`` environment variables.

The environment is read when a client connects, never at import.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ringpool.core.envelope import DEFAULT_LIMITS, Limits
from ringpool.core.naming import check_cluster_name
from ringpool.core.zkacl import parse_credential
from ringpool.errors import ConfigError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry


@dataclass(frozen=True)
class ClientSettings:
    zk: str
    redis: str
    cluster: str = "default"
    token: str = ""
    tls_ca: str = ""  # CA bundle that signed the nodes' certificates (enables TLS)
    tls_cert: str = ""  # client certificate for mTLS
    tls_key: str = ""
    tls_server_name: str = ""  # name to check in the node's certificate (default: its address)
    zk_auth: str = ""  # USER:PASSWORD ZooKeeper digest identity, when the cluster uses ACLs
    connect_timeout_s: float = 10.0
    dispatch_timeout_s: float = 30.0
    max_hops: int = 8
    result_poll_s: float = 2.0  # how often a waiting handle re-reads its record
    limits: Limits = field(default=DEFAULT_LIMITS)
    # Where the client's metrics go (ringpool.client.metrics); None: prometheus_client's global registry.
    metrics_registry: CollectorRegistry | None = field(default=None, compare=False, repr=False)

    @classmethod
    def resolve(
        cls,
        zk: str | None = None,
        redis: str | None = None,
        cluster: str | None = None,
        token: str | None = None,
        **options: object,
    ) -> ClientSettings:
        env = os.environ
        zk = zk or env.get("RINGPOOL_ZK", "")
        redis = redis or env.get("RINGPOOL_REDIS", "")
        if not zk:
            raise ConfigError("no ZooKeeper address: pass zk=... or set RINGPOOL_ZK")
        if not redis:
            raise ConfigError("no Redis URL: pass redis=... or set RINGPOOL_REDIS")
        for name in ("tls_ca", "tls_cert", "tls_key", "tls_server_name", "zk_auth"):
            options.setdefault(name, env.get(f"RINGPOOL_{name.upper()}", ""))
        settings = cls(
            zk=zk,
            redis=redis,
            cluster=check_cluster_name(cluster or env.get("RINGPOOL_CLUSTER", "default")),
            token=token if token is not None else env.get("RINGPOOL_TOKEN", ""),
            **options,  # type: ignore[arg-type]
        )
        if settings.connect_timeout_s <= 0 or settings.dispatch_timeout_s <= 0:
            raise ConfigError("timeouts must be positive")
        if (settings.tls_cert or settings.tls_key) and not (
            settings.tls_ca and settings.tls_cert and settings.tls_key
        ):
            raise ConfigError("tls_cert and tls_key go together, and need tls_ca")
        if settings.zk_auth:
            parse_credential(settings.zk_auth, "zk_auth")
        return settings
