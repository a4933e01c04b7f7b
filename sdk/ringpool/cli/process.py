"""What the long-running processes (``ringpool-node``, ``ringpool-coordinator``) share:
the connection flags and the way they start and fail."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click

from ringpool.client.portal import new_event_loop
from ringpool.errors import RingpoolError

F = TypeVar("F", bound=Callable[..., Any])

COMMAND_SETTINGS = {"auto_envvar_prefix": "RINGPOOL", "show_default": True,
                    "help_option_names": ["-h", "--help"]}


def version_option(distribution: str) -> Callable[[F], F]:
    """``--version``: the installed version of ``distribution``."""
    return click.version_option(package_name=distribution, prog_name=distribution,
                                message="%(prog)s %(version)s")


def connection_options(command: F) -> F:
    """``--zk --redis --cluster --zk-auth --zk-session-timeout --log-level``."""
    for option in reversed((
        click.option("--zk", default="127.0.0.1:2181",
                     help="ZooKeeper hosts (host:port[,host:port])."),
        click.option("--redis", default="redis://127.0.0.1:6379/0",
                     help="Redis URL (rediss:// for TLS)."),
        click.option("--cluster", default="default", help="Cluster name."),
        click.option("--zk-auth", default="", metavar="USER:PASSWORD",
                     help="ZooKeeper digest identity of cluster members (turns on znode ACLs)."),
        click.option("--zk-session-timeout", default=10.0, type=click.FloatRange(2, 120),
                     help="ZooKeeper session timeout in seconds: how fast a dead process leaves."),
        click.option("--log-level", default="INFO",
                     type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"])),
    )):
        command = option(command)
    return command


def run_process(name: str, log_level: str, main: Coroutine[Any, Any, int]) -> None:
    """Run ``main`` to its exit code; a RingpoolError is one line on stderr and exit 2."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            sys.exit(runner.run(main))
    except RingpoolError as exc:
        click.echo(f"{name}: {exc}", err=True)
        sys.exit(2)
