"""``dev up``: a whole local cluster (ZooKeeper, Redis, coordinator, nodes) until Ctrl-C."""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from types import FrameType

import click
from click.core import ParameterSource

from ringpool.cli.taskctl.app import options_of
from ringpool.errors import ConfigError
from ringpool.task import check_group
from ringpool.testing.local import LocalCluster


def _given(ctx: click.Context, name: str) -> bool:
    return ctx.find_root().get_parameter_source(name) == ParameterSource.COMMANDLINE


def _groups(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
            ) -> dict[str, int]:
    groups: dict[str, int] = {}
    for value in values:
        name, sep, count = value.partition("=")
        try:
            check_group(name)
        except ConfigError as exc:
            raise click.BadParameter(str(exc)) from None
        if not name or not sep or not count.isdigit() or not 1 <= int(count) <= 64:
            raise click.BadParameter(f"expected NAME=COUNT (a count of 1-64), got {value!r}")
        groups[name] = int(count)
    return groups


@click.group()
def dev() -> None:
    """Local development helpers."""


@dev.command("up")
@click.option("--nodes", type=click.IntRange(min=1, max=64), default=3, show_default=True)
@click.option("--coordinators", type=click.IntRange(min=0, max=8), default=1, show_default=True)
@click.option("--group", "groups", multiple=True, callback=_groups, metavar="NAME=COUNT",
              help="also start COUNT nodes (NAME-0, ...) with --group NAME; repeatable")
@click.option("--tasks", "task_modules", multiple=True, default=["ringpool.demo"],
              show_default=True, metavar="MODULE", help="task module(s) the nodes import")
@click.option("--keep", is_flag=True, help="keep the work directory (logs) after stopping")
@click.option("--zk", "zk_server", metavar="HOST:PORT", help="use this ZooKeeper, start none")
@click.option("--redis", "redis_server", metavar="URL", help="use this Redis, start none")
@click.pass_context
def up(ctx: click.Context, nodes: int, coordinators: int, groups: dict[str, int],
       task_modules: tuple[str, ...], keep: bool, zk_server: str | None,
       redis_server: str | None) -> None:
    """Start a local cluster, print the settings to export, run until Ctrl-C.

    ZooKeeper and Redis are started on free loopback ports, unless --zk / --redis
    are given on the command line (dev up --zk HOST:PORT --redis URL, or taskctl's
    own before 'dev'): then those servers are used. RINGPOOL_ZK / RINGPOOL_REDIS do
    not count, so a shell that exported an earlier cluster's settings still gets
    fresh servers.
    """
    options = options_of(ctx)
    modules = [m.strip() for item in task_modules for m in item.split(",") if m.strip()]
    workdir = Path(tempfile.mkdtemp(prefix="ringpool-dev-"))
    local = LocalCluster(
        nodes=nodes, tasks=modules, coordinators=coordinators, cluster=options.cluster,
        zk=zk_server or (options.zk if _given(ctx, "zk") else None),
        redis=redis_server or (options.redis if _given(ctx, "redis") else None), workdir=workdir,
        groups=groups,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        grouped = "".join(f" + {count} of group {name}" for name, count in groups.items())
        click.echo(f"starting {nodes} nodes{grouped} and {coordinators} coordinator(s) "
                   f"with tasks {', '.join(modules)}; logs in {workdir}", err=True)
        local.start()
        env = local.env()
        if options.json:
            click.echo(json.dumps({"env": env, "nodes": sorted(local.nodes),
                                   "workdir": str(workdir)}))
        else:
            for name, value in env.items():
                click.echo(f"export {name}={value}")
        click.echo("cluster is up; press Ctrl-C to stop", err=True)
        while not stop.wait(1.0):
            for node_id, process in local.nodes.items():
                if not process.alive() and not getattr(process, "_reported", False):
                    click.echo(f"warning: {node_id} exited; log {process.log_path}", err=True)
                    process._reported = True  # type: ignore[attr-defined]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        click.echo("stopping…", err=True)
        local.stop()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
        click.echo("stopped", err=True)
