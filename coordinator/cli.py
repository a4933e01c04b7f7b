"""``ringpool-coordinator``: every flag also reads ``RINGPOOL_<FLAG>`` from the environment."""

from __future__ import annotations

import asyncio
import logging
import sys

import click

from sdk.errors import RingpoolError


@click.command(context_settings={"auto_envvar_prefix": "RINGPOOL", "show_default": True})
@click.option("--zk", default="127.0.0.1:2181", help="ZooKeeper hosts (host:port[,host:port]).")
@click.option("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL (rediss:// for TLS).")
@click.option("--cluster", default="default", help="Cluster name.")
@click.option("--metrics-port", default=9401, type=click.IntRange(0, 65535),
              help="Prometheus /metrics port (0: off).")
@click.option("--token", default="", help="Bearer token for re-dispatching to nodes.")
@click.option("--zk-auth", default="", metavar="USER:PASSWORD",
              help="ZooKeeper digest identity of cluster members (turns on znode ACLs).")
@click.option("--zk-session-timeout", default=10.0, type=click.FloatRange(2, 120),
              help="ZooKeeper session timeout in seconds: how fast a dead process leaves.")
@click.option("--max-crash-recoveries", default=3, type=click.IntRange(1, 100),
              help="Recoveries after which a task is poison and goes to the DLQ.")
@click.option("--dlq-retention", default=14 * 24 * 3600.0, type=click.FloatRange(0),
              help="Seconds a dead letter is kept before the leader removes it (0: forever).")
@click.option("--log-level", default="INFO", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]))
def main(zk: str, redis: str, cluster: str, metrics_port: int, token: str, zk_auth: str,
         zk_session_timeout: float, max_crash_recoveries: int, dlq_retention: float,
         log_level: str) -> None:
    """Run a coordinator replica (leader-elected: run two or more)."""
    from coordinator.app import CoordinatorSettings, run

    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = CoordinatorSettings(zk=zk, redis=redis, cluster=cluster, token=token,
                                   zk_auth=zk_auth,
                                   metrics_port=metrics_port,
                                   max_crash_recoveries=max_crash_recoveries,
                                   zk_session_timeout_s=zk_session_timeout,
                                   dlq_retention_s=dlq_retention)
    try:
        sys.exit(asyncio.run(run(settings)))
    except RingpoolError as exc:
        click.echo(f"ringpool-coordinator: {exc}", err=True)
        sys.exit(2)
