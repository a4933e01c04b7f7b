"""Client settings: explicit arguments first, then ``RINGPOOL_*`` environment variables.

The environment is read when a client connects, never at import.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ringpool.core.envelope import DEFAULT_LIMITS, Limits
from ringpool.core.naming import check_cluster_name
from ringpool.core.zkacl import parse_credential
from ringpool.errors import ConfigError, RingpoolError
from ringpool.task import Task

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

MIB = 1024 * 1024
# Called as on_refused(key, task, error) on the client's event loop for every task a
# node refused or the client gave up on (the error its handle raises too).
OnRefused = Callable[[str, Task, RingpoolError], object]


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
    # How long dispatch() waits for room while max_outstanding tasks are unanswered.
    dispatch_timeout_s: float = 30.0
    # How long a dispatched task may go unanswered, resends included, before it is
    # refused. Longer than dispatch_timeout_s, so that a cluster that stays down makes
    # dispatch() raise rather than let a caller keep queueing tasks bound to fail.
    accept_timeout_s: float = 60.0
    max_hops: int = 8
    max_outstanding: int = 20_000  # tasks dispatched and not yet accepted or refused
    max_outstanding_bytes: int = 32 * MIB  # ... and their payloads, keys and names
    result_poll_s: float = 2.0  # how often a waiting handle re-reads its record
    limits: Limits = field(default=DEFAULT_LIMITS)
    # Where the client's metrics go (ringpool.client.metrics); None: prometheus_client's global registry.
    metrics_registry: CollectorRegistry | None = field(default=None, compare=False, repr=False)
    on_refused: OnRefused | None = field(default=None, compare=False, repr=False)  # None: a log line

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
        if min(settings.connect_timeout_s, settings.dispatch_timeout_s,
               settings.accept_timeout_s) <= 0:
            raise ConfigError("timeouts must be positive")
        if settings.max_outstanding < 1 or settings.max_outstanding_bytes < 1:
            raise ConfigError("max_outstanding and max_outstanding_bytes must be positive")
        if (settings.tls_cert or settings.tls_key) and not (
            settings.tls_ca and settings.tls_cert and settings.tls_key
        ):
            raise ConfigError("tls_cert and tls_key go together, and need tls_ca")
        if settings.zk_auth:
            parse_credential(settings.zk_auth, "zk_auth")
        return settings
