"""The dashboard's settings: where the cluster is, where to serve, and who may do what."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from ringpool.client.settings import ClientSettings
from ringpool.core.naming import check_cluster_name
from ringpool.errors import ConfigError

DEFAULT_LISTEN = "127.0.0.1:7780"


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> (host, port); ConfigError otherwise."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--listen must be HOST:PORT, got {listen!r}")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class DashboardSettings:
    zk: str
    redis: str
    cluster: str = "default"
    token: str = ""  # the nodes' bearer token (Status calls, replays)
    zk_auth: str = ""  # ZooKeeper member identity, when the cluster uses ACLs
    zk_operator_auth: str = ""  # ZooKeeper operator identity: may write the config
    tls_ca: str = ""  # CA of the nodes' certificates (dial the nodes over TLS)
    tls_cert: str = ""  # client certificate, for nodes that ask (mTLS)
    tls_key: str = ""
    tls_server_name: str = ""
    listen: str = DEFAULT_LISTEN
    operator_token: str = ""  # signs in with every right
    viewer_token: str = ""  # signs in read-only
    session_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    server_tls_cert: str = ""  # serve HTTPS with this certificate (PEM)...
    server_tls_key: str = ""  # ...and its key
    poll_interval_s: float = 2.0  # how often the nodes are asked for their status
    session_max_age_s: int = 8 * 3600

    def __post_init__(self) -> None:
        check_cluster_name(self.cluster)
        parse_listen(self.listen)
        if not self.operator_token and not self.viewer_token:
            raise ConfigError("set --operator-token (and --viewer-token for read-only access)")
        if self.operator_token and self.operator_token == self.viewer_token:
            raise ConfigError("the operator and viewer tokens must differ")
        for name, token in (("operator", self.operator_token), ("viewer", self.viewer_token)):
            if token and len(token) < 8:
                raise ConfigError(f"the {name} token must be at least 8 characters")
        if bool(self.server_tls_cert) != bool(self.server_tls_key):
            raise ConfigError("--server-tls-cert and --server-tls-key go together")
        if not 0.2 <= self.poll_interval_s <= 60:
            raise ConfigError("--poll-interval must be in [0.2, 60] seconds")
        if len(self.session_secret) < 16:
            raise ConfigError("--session-secret must be at least 16 characters")

    @property
    def tls(self) -> bool:
        return bool(self.server_tls_cert)

    def client(self) -> ClientSettings:
        """Settings for the SDK client that reads node status and sends replays."""
        given = {"tls_ca": self.tls_ca, "tls_cert": self.tls_cert, "tls_key": self.tls_key,
                 "tls_server_name": self.tls_server_name, "zk_auth": self.zk_auth}
        # What is not given here falls back to RINGPOOL_* (taskctl dashboard passes none).
        return ClientSettings.resolve(self.zk, self.redis, self.cluster, self.token,
                                      connect_timeout_s=5.0,
                                      **{name: value for name, value in given.items() if value})
