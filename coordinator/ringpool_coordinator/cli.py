"""``ringpool-coordinator``: every flag also reads ``RINGPOOL_<FLAG>`` from the environment."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

import click

from ringpool.cli.process import (
    COMMAND_SETTINGS,
    client_tls_options,
    connection_options,
    max_crash_recoveries_option,
    option,
    partitions_option,
    run_process,
    version_option,
)


@click.command(context_settings=COMMAND_SETTINGS)
@connection_options
@client_tls_options
@version_option("ringpool-coordinator")
@option("--metrics-port", default=9401, type=click.IntRange(0, 65535),
        help="Prometheus /metrics port (0: off).")
@max_crash_recoveries_option
@partitions_option
@option("--dlq-retention", "dlq_retention_s", default=14 * 24 * 3600.0, type=click.FloatRange(0),
        help="Seconds a dead letter is kept before the leader removes it (0: forever).")
def main(log_level: str, **flags: Any) -> None:
    """Run a coordinator replica (leader-elected: run two or more)."""

    def start() -> Coroutine[Any, Any, int]:
        from ringpool_coordinator.app import run
        from ringpool_coordinator.settings import CoordinatorSettings

        return run(CoordinatorSettings(**flags))

    run_process("ringpool-coordinator", log_level, start)
