"""Client settings: the shared connection settings plus what a client alone needs.

Explicit arguments come first, then ``RINGPOOL_*`` environment variables
(``ringpool.core.settings``), read when a client connects, never at import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from ringpool.core.envelope import DEFAULT_LIMITS, Limits
from ringpool.core.settings import ConnectionSettings
from ringpool.errors import ConfigError, RingpoolError
from ringpool.task import Task

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

MIB = 1024 * 1024
# Called as on_refused(key, task, error) on the client's event loop for every task a
# node refused or the client gave up on (the error its handle raises too).
OnRefused = Callable[[str, Task, RingpoolError], object]


@dataclass(frozen=True)
class ClientSettings(ConnectionSettings):
    tls_ca: str = ""  # CA bundle that signed the nodes' certificates (enables TLS)
    tls_cert: str = ""  # client certificate for mTLS
    tls_key: str = ""
    tls_server_name: str = ""  # name to check in the node's certificate (default: its address)
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

    ENV_FIELDS: ClassVar[tuple[str, ...]] = (
        *ConnectionSettings.ENV_FIELDS, "tls_ca", "tls_cert", "tls_key", "tls_server_name",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if min(self.connect_timeout_s, self.dispatch_timeout_s, self.accept_timeout_s) <= 0:
            raise ConfigError("timeouts must be positive")
        if self.max_outstanding < 1 or self.max_outstanding_bytes < 1:
            raise ConfigError("max_outstanding and max_outstanding_bytes must be positive")
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
