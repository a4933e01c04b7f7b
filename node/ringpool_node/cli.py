"""``ringpool-node``: every flag also reads ``RINGPOOL_<FLAG>`` from the environment."""

from __future__ import annotations

import socket

import click

from ringpool.cli.process import (
    COMMAND_SETTINGS,
    connection_options,
    run_process,
    version_option,
)
from ringpool_node.settings import NodeSettings


@click.command(context_settings=COMMAND_SETTINGS)
@connection_options
@version_option("ringpool-node")
@click.option("--node-id", default=socket.gethostname(), help="Stable node id (default: hostname).")
@click.option("--listen", default="0.0.0.0:7700", help="gRPC listen address HOST:PORT.")
@click.option("--advertise", default="", help="Address clients dial (default: the listen address).")
@click.option("--tasks", default="", help="Task modules to import, comma-separated.")
@click.option("--metrics-port", default=9400, type=click.IntRange(0, 65535),
              help="Prometheus /metrics port (0: off).")
@click.option("--drain-timeout", default=30.0, type=click.FloatRange(0, 3600),
              help="Seconds to finish tasks on SIGTERM before handing them back.")
@click.option("--token", default="", help="Bearer token clients must present.")
@click.option("--tls-cert", default="", help="Server certificate (PEM).")
@click.option("--tls-key", default="", help="Server private key (PEM).")
@click.option("--tls-ca", default="", help="CA for client certificates (enables mTLS).")
@click.option("--max-stream-pending", default=10_000, type=click.IntRange(1, 1_000_000),
              help="Tasks pending per client stream before OVERLOADED.")
@click.option("--weight", default=1.0, type=click.FloatRange(0.01, 100), help="Share of the ring.")
def main(
    zk: str, redis: str, cluster: str, node_id: str, listen: str, advertise: str, tasks: str,
    metrics_port: int, drain_timeout: float, token: str, tls_cert: str, tls_key: str,
    tls_ca: str, zk_auth: str, max_stream_pending: int, zk_session_timeout: float, weight: float,
    log_level: str,
) -> None:
    """Run a ringpool worker node."""
    from ringpool_node.server import serve

    settings = NodeSettings(
        zk=zk, redis=redis, cluster=cluster, node_id=node_id, listen=listen, advertise=advertise,
        tasks=tuple(m.strip() for m in tasks.split(",") if m.strip()),
        metrics_port=metrics_port, drain_timeout_s=drain_timeout, token=token,
        tls_cert=tls_cert, tls_key=tls_key, tls_ca=tls_ca, weight=weight,
        zk_auth=zk_auth, max_stream_pending=max_stream_pending,
        zk_session_timeout_s=zk_session_timeout,
    )
    run_process("ringpool-node", log_level, serve(settings))
