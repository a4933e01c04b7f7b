"""The coordinator's settings: a client's (it re-dispatches to the nodes) plus its own flags."""

from __future__ import annotations

from dataclasses import dataclass

from ringpool.client.settings import ClientSettings


@dataclass(frozen=True)
class CoordinatorSettings(ClientSettings):
    metrics_port: int = 9401  # 0 turns the endpoint off
    max_crash_recoveries: int = 3
    dlq_retention_s: float = 14 * 24 * 3600.0  # 0 keeps dead letters forever
    zk_session_timeout_s: float = 10.0
    partitions: int = 0  # a new cluster's partition count (0: the default)
