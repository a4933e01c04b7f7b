"""The dashboard's settings: a client's (it asks the nodes for their status and sends
replays) plus where to serve and who may do what."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from ringpool.client.settings import ClientSettings
from ringpool.core.zkacl import parse_credential
from ringpool.errors import ConfigError

DEFAULT_LISTEN = "127.0.0.1:7780"


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> (host, port); ConfigError otherwise."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--listen must be HOST:PORT, got {listen!r}")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class DashboardSettings(ClientSettings):
    zk_operator_auth: str = ""  # ZooKeeper operator identity: may write the config
    zk_session_timeout_s: float = 10.0
    listen: str = DEFAULT_LISTEN
    # The cluster's operator token: signs in with every right, and goes to the nodes.
    operator_token: str = field(default="", repr=False)
    viewer_token: str = field(default="", repr=False)  # signs in read-only
    session_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    server_tls_cert: str = ""  # serve HTTPS with this certificate (PEM)...
    server_tls_key: str = ""  # ...and its key
    poll_interval_s: float = 2.0  # how often the nodes are asked for their status
    session_max_age_s: int = 8 * 3600

    def __post_init__(self) -> None:
        super().__post_init__()
        parse_listen(self.listen)
        if self.zk_operator_auth:
            parse_credential(self.zk_operator_auth, "zk_operator_auth")
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
