"""The node's settings: the shared connection settings plus one field per node flag."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from ringpool.core.envelope import DEFAULT_LIMITS, Limits
from ringpool.core.settings import ConnectionSettings
from ringpool.errors import ConfigError
from ringpool.pool import PoolSettings
from ringpool.store.durability import DEFAULT_DURABILITY, AcceptDurability
from ringpool.store.store import DEFAULT_FINGERPRINT_TTL_S, DEFAULT_RESULT_TTL_S


@dataclass(frozen=True)
class NodeSettings(ConnectionSettings):
    node_id: str = field(default_factory=socket.gethostname)
    listen: str = "0.0.0.0:7700"
    advertise: str = ""  # defaults to the listen address (with the bound port)
    tasks: tuple[str, ...] = ()
    group: str = ""  # the task group it serves ('' : the default group)
    metrics_port: int = 9400  # 0 turns the endpoint off
    drain_timeout_s: float = 30.0
    # The node's own certificate; a client CA makes clients show certificates (mTLS).
    server_tls_cert: str = ""
    server_tls_key: str = ""
    server_tls_client_ca: str = ""
    max_stream_pending: int = 10_000  # tasks pending per client stream before OVERLOADED
    max_stream_bytes: int = 16 * 2**20  # acks and results queued per client stream
    max_pending: int = 20_000  # tasks pending on the node before OVERLOADED
    max_abandoned_threads: int = 16  # the io pool's max_abandoned (see ringpool.pool.threads)
    redis_lost_after_s: float = 10.0  # without Redis this long, the node leaves the ring
    max_crash_recoveries: int = 3  # recoveries after which a task is poison (start-up reclaim)
    weight: float = 1.0
    fingerprint_ttl_s: int = DEFAULT_FINGERPRINT_TTL_S
    result_ttl_s: int = DEFAULT_RESULT_TTL_S
    accept_durability: AcceptDurability = DEFAULT_DURABILITY
    partitions: int = 0  # a new cluster's partition count (0: the default)
    zk_session_timeout_s: float = 10.0
    limits: Limits = DEFAULT_LIMITS
    pool: PoolSettings = field(default_factory=PoolSettings)

    def __post_init__(self) -> None:
        super().__post_init__()
        if bool(self.token) != bool(self.operator_token):
            raise ConfigError("give the node both tokens or neither: --token (apps) and "
                              "--operator-token (the coordinator and taskctl)")
        if self.token and self.token == self.operator_token:
            raise ConfigError("--token and --operator-token must differ: an app must not "
                              "hold the operator's rights")
