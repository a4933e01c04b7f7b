"""``ringpool-node``: every flag also reads ``RINGPOOL_<FLAG>`` from the environment."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys

import click

from node.settings import NodeSettings
from sdk.errors import RingpoolError


@click.command(context_settings={"auto_envvar_prefix": "RINGPOOL", "show_default": True})
@click.option("--zk", default="127.0.0.1:2181", help="ZooKeeper hosts (host:port[,host:port]).")
@click.option("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL (rediss:// for TLS).")
@click.option("--cluster", default="default", help="Cluster name.")
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
@click.option("--zk-auth", default="", metavar="USER:PASSWORD",
              help="ZooKeeper digest identity of cluster members (turns on znode ACLs).")
@click.option("--max-stream-pending", default=10_000, type=click.IntRange(1, 1_000_000),
              help="Tasks pending per client stream before OVERLOADED.")
@click.option("--zk-session-timeout", default=10.0, type=click.FloatRange(2, 120),
              help="ZooKeeper session timeout in seconds: how fast a dead process leaves.")
@click.option("--weight", default=1.0, type=click.FloatRange(0.01, 100), help="Share of the ring.")
@click.option("--log-level", default="INFO", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]))
def main(
    zk: str, redis: str, cluster: str, node_id: str, listen: str, advertise: str, tasks: str,
    metrics_port: int, drain_timeout: float, token: str, tls_cert: str, tls_key: str,
    tls_ca: str, zk_auth: str, max_stream_pending: int, zk_session_timeout: float, weight: float,
    log_level: str,
) -> None:
    """Run a ringpool worker node."""
    from node.server import serve

    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = NodeSettings(
        zk=zk, redis=redis, cluster=cluster, node_id=node_id, listen=listen, advertise=advertise,
        tasks=tuple(m.strip() for m in tasks.split(",") if m.strip()),
        metrics_port=metrics_port, drain_timeout_s=drain_timeout, token=token,
        tls_cert=tls_cert, tls_key=tls_key, tls_ca=tls_ca, weight=weight,
        zk_auth=zk_auth, max_stream_pending=max_stream_pending,
        zk_session_timeout_s=zk_session_timeout,
    )
    try:
        sys.exit(asyncio.run(serve(settings)))
    except RingpoolError as exc:
        click.echo(f"ringpool-node: {exc}", err=True)
        sys.exit(2)
