"""``ringpool-coordinator``: every flag also reads ``RINGPOOL_<FLAG>`` from the environment."""

from __future__ import annotations

import click

from ringpool.cli.process import (
    COMMAND_SETTINGS,
    connection_options,
    run_process,
    version_option,
)


@click.command(context_settings=COMMAND_SETTINGS)
@connection_options
@version_option("ringpool-coordinator")
@click.option("--metrics-port", default=9401, type=click.IntRange(0, 65535),
              help="Prometheus /metrics port (0: off).")
@click.option("--token", default="", help="Bearer token for re-dispatching to nodes.")
@click.option("--max-crash-recoveries", default=3, type=click.IntRange(1, 100),
              help="Recoveries after which a task is poison and goes to the DLQ.")
@click.option("--dlq-retention", default=14 * 24 * 3600.0, type=click.FloatRange(0),
              help="Seconds a dead letter is kept before the leader removes it (0: forever).")
def main(zk: str, redis: str, cluster: str, metrics_port: int, token: str, zk_auth: str,
         zk_session_timeout: float, max_crash_recoveries: int, dlq_retention: float,
         log_level: str) -> None:
    """Run a coordinator replica (leader-elected: run two or more)."""
    from ringpool_coordinator.app import CoordinatorSettings, run

    settings = CoordinatorSettings(zk=zk, redis=redis, cluster=cluster, token=token,
                                   zk_auth=zk_auth,
                                   metrics_port=metrics_port,
                                   max_crash_recoveries=max_crash_recoveries,
                                   zk_session_timeout_s=zk_session_timeout,
                                   dlq_retention_s=dlq_retention)
    run_process("ringpool-coordinator", log_level, run(settings))
