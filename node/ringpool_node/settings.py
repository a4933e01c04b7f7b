"""The node's settings, one field per command-line flag."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from ringpool.core.envelope import DEFAULT_LIMITS, Limits
from ringpool.pool import PoolSettings
from ringpool.store.store import DEFAULT_FINGERPRINT_TTL_S, DEFAULT_RESULT_TTL_S


@dataclass
class NodeSettings:
    zk: str = "127.0.0.1:2181"
    redis: str = "redis://127.0.0.1:6379/0"
    cluster: str = "default"
    node_id: str = field(default_factory=socket.gethostname)
    listen: str = "0.0.0.0:7700"
    advertise: str = ""  # defaults to the listen address (with the bound port)
    tasks: tuple[str, ...] = ()
    metrics_port: int = 9400  # 0 turns the endpoint off
    drain_timeout_s: float = 30.0
    token: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    zk_auth: str = ""  # USER:PASSWORD digest identity of cluster members (ringpool.core.zkacl)
    max_stream_pending: int = 10_000  # tasks pending per client stream before OVERLOADED
    weight: float = 1.0
    fingerprint_ttl_s: int = DEFAULT_FINGERPRINT_TTL_S
    result_ttl_s: int = DEFAULT_RESULT_TTL_S
    zk_session_timeout_s: float = 10.0
    limits: Limits = DEFAULT_LIMITS
    pool: PoolSettings = field(default_factory=PoolSettings)
