"""``ringpool-node``: every flag also reads ``RINGPOOL_<FLAG>`` from the environment."""

from __future__ import annotations

import os
import socket
from collections.abc import Coroutine, Mapping
from typing import Any

import click

from ringpool.cli.process import (
    COMMAND_SETTINGS,
    accept_durability_option,
    connection_options,
    max_crash_recoveries_option,
    option,
    partitions_option,
    run_process,
    version_option,
)
from ringpool.core.ring import MAX_WEIGHT, MIN_WEIGHT
from ringpool.errors import ConfigError
from ringpool.store.durability import AcceptDurability
from ringpool.store.store import DEFAULT_RESULT_TTL_S
from ringpool_node.settings import NodeSettings

# Older nodes read their own certificate from these; everywhere they name a client's.
CLIENT_TLS_VARIABLES = ("RINGPOOL_TLS_CERT", "RINGPOOL_TLS_KEY")


def _modules(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    return tuple(module.strip() for module in value.split(",") if module.strip())


def check_server_certificate(settings: NodeSettings, environ: Mapping[str, str]) -> None:
    """Refuse to serve in plaintext where the environment meant a server certificate."""
    given = [name for name in CLIENT_TLS_VARIABLES if environ.get(name)]
    if given and not settings.server_tls_cert:
        raise ConfigError(
            f"{' and '.join(given)} name a client certificate; give the node's own with "
            "--server-tls-cert/--server-tls-key (RINGPOOL_SERVER_TLS_CERT, RINGPOOL_SERVER_TLS_KEY)")


@click.command(context_settings=COMMAND_SETTINGS)
@connection_options
@version_option("ringpool-node")
@option("--node-id", default=socket.gethostname(), help="Stable node id (default: hostname).")
@option("--listen", default="0.0.0.0:7700", help="gRPC listen address HOST:PORT.")
@option("--advertise", default="", help="Address clients dial (default: the listen address).")
@option("--tasks", default="", callback=_modules, metavar="MODULE[,MODULE]",
        help="Task modules to import (each importable on every node), comma-separated.")
@option("--group", default="", metavar="NAME",
        help="Serve the tasks declared with group=NAME, on that group's ring (default: the "
             "tasks that declare no group).")
@option("--metrics-port", default=9400, type=click.IntRange(0, 65535),
        help="Prometheus /metrics port (0: off).")
@option("--drain-timeout", "drain_timeout_s", default=30.0, type=click.FloatRange(0, 3600),
        help="Seconds to finish tasks on SIGTERM before handing them back.")
@option("--server-tls-cert", "--tls-cert", "server_tls_cert", default="",
        help="The node's certificate (PEM); turns TLS on. --tls-cert is the old spelling.")
@option("--server-tls-key", "--tls-key", "server_tls_key", default="",
        help="Private key of the node's certificate (PEM). --tls-key is the old spelling.")
@option("--server-tls-client-ca", "--tls-ca", "server_tls_client_ca", default="",
        help="CA for client certificates: clients must show one (mTLS). --tls-ca is the old "
             "spelling.")
@option("--max-stream-pending", default=10_000, type=click.IntRange(1, 1_000_000),
        help="Tasks pending per client stream before OVERLOADED.")
@option("--max-stream-bytes", default=16 * 2**20, type=click.IntRange(64 * 1024, 2**31),
        help="Bytes queued for a client that does not read its stream (then the node "
             "stops reading it).")
@option("--max-pending", default=20_000, type=click.IntRange(1, 10_000_000),
        help="Tasks pending on the node (all streams) before OVERLOADED.")
@option("--max-abandoned-threads", default=16, type=click.IntRange(1, 10_000),
        help="Hung io threads (past their timeout) at which the node drains and exits 3.")
@option("--redis-lost-after", "redis_lost_after_s", default=10.0,
        type=click.FloatRange(1, 3600),
        help="Seconds without Redis after which the node leaves the ring until it is back.")
@max_crash_recoveries_option
@option("--result-ttl", "result_ttl_s", default=DEFAULT_RESULT_TTL_S,
        type=click.IntRange(1, 365 * 24 * 3600),
        help="Seconds a finished task's record (and its result) is kept.")
@accept_durability_option
@partitions_option
@option("--weight", default=1.0, type=click.FloatRange(MIN_WEIGHT, MAX_WEIGHT),
        help="Share of the ring.")
def main(log_level: str, **flags: Any) -> None:
    """Run a ringpool worker node."""

    def start() -> Coroutine[Any, Any, int]:
        from ringpool_node.server import serve

        settings = NodeSettings(**{**flags, "accept_durability": AcceptDurability(
            flags["accept_durability"])})
        check_server_certificate(settings, os.environ)
        return serve(settings)

    run_process("ringpool-node", log_level, start)
