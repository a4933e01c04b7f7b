"""Client settings: the shared connection settings plus what a client alone needs.

Explicit arguments come first, then ``RINGPOOL_*`` environment variables
(``ringpool.core.settings``), read when a client connects, never at import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from ringpool.core.envelope import DEFAULT_LIMITS, Limits
from ringpool.core.settings import ConnectionSettings
from ringpool.errors import ConfigError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry


@dataclass(frozen=True)
class ClientSettings(ConnectionSettings):
    tls_ca: str = ""  # CA bundle that signed the nodes' certificates (enables TLS)
    tls_cert: str = ""  # client certificate for mTLS
    tls_key: str = ""
    tls_server_name: str = ""  # name to check in the node's certificate (default: its address)
    connect_timeout_s: float = 10.0
    dispatch_timeout_s: float = 30.0
    max_hops: int = 8
    result_poll_s: float = 2.0  # how often a waiting handle re-reads its record
    limits: Limits = field(default=DEFAULT_LIMITS)
    # Where the client's metrics go (ringpool.client.metrics); None: prometheus_client's global registry.
    metrics_registry: CollectorRegistry | None = field(default=None, compare=False, repr=False)

    ENV_FIELDS: ClassVar[tuple[str, ...]] = (
        *ConnectionSettings.ENV_FIELDS, "tls_ca", "tls_cert", "tls_key", "tls_server_name",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.connect_timeout_s <= 0 or self.dispatch_timeout_s <= 0:
            raise ConfigError("timeouts must be positive")
        if (self.tls_cert or self.tls_key) and not (self.tls_ca and self.tls_cert and self.tls_key):
            raise ConfigError("tls_cert and tls_key go together, and need tls_ca")

    @classmethod
    def resolve(
        cls,
        zk: str | None = None,
        redis: str | None = None,
        cluster: str | None = None,
        token: str | None = None,
        **options: object,
    ) -> ClientSettings:
        """``Cluster.connect``'s arguments; ``RINGPOOL_*`` variables fill what is not given
        (an empty address or cluster name counts as not given; an empty token is a token)."""
        return cls.from_sources({"zk": zk or None, "redis": redis or None,
                                 "cluster": cluster or None, "token": token, **options})
