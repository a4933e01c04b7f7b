"""The ``taskctl`` group: global options and the command list."""

from __future__ import annotations

from typing import Any

import click

from ringpool.cli.taskctl import config, dev, dlq, schedule, status, task
from ringpool.cli.taskctl.app import Options, TaskctlGroup, options_of, version
from ringpool.cli.taskctl.output import DURATION
from ringpool.core.naming import check_cluster_name
from ringpool.core.zkacl import parse_credential
from ringpool.dashboard.cli import dashboard_options, serve
from ringpool.errors import ConfigError


def _cluster_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return check_cluster_name(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group(cls=TaskctlGroup, context_settings={"help_option_names": ["-h", "--help"],
                                                 "max_content_width": 100})
@click.option("--zk", envvar="RINGPOOL_ZK", metavar="HOST:PORT[,...]",
              help="ZooKeeper hosts [env RINGPOOL_ZK]")
@click.option("--redis", envvar="RINGPOOL_REDIS", metavar="URL",
              help="Redis URL [env RINGPOOL_REDIS]")
@click.option("--cluster", envvar="RINGPOOL_CLUSTER", default="default", show_default=True,
              callback=_cluster_name, help="cluster name [env RINGPOOL_CLUSTER]")
@click.option("--token", envvar="RINGPOOL_TOKEN", default="",
              help="app token for the nodes [env RINGPOOL_TOKEN]")
@click.option("--operator-token", envvar="RINGPOOL_OPERATOR_TOKEN", default="",
              help="operator token: needed for status and dlq replay on nodes that "
                   "have one [env RINGPOOL_OPERATOR_TOKEN]")
@click.option("--zk-auth", envvar="RINGPOOL_ZK_AUTH", default="", metavar="USER:PASSWORD",
              help="ZooKeeper member identity, when ACLs are on [env RINGPOOL_ZK_AUTH]")
@click.option("--zk-operator-auth", envvar="RINGPOOL_ZK_OPERATOR_AUTH", default="",
              metavar="USER:PASSWORD",
              help="ZooKeeper operator identity: only it may write the config "
                   "[env RINGPOOL_ZK_OPERATOR_AUTH]")
@click.option("--json", "as_json", is_flag=True, envvar="RINGPOOL_JSON",
              help="machine-readable JSON on stdout [env RINGPOOL_JSON=1]")
@click.option("--debug", is_flag=True, help="print tracebacks with errors")
@click.option("--timeout", "timeout_s", type=DURATION, default="5s", show_default=True,
              envvar="RINGPOOL_TIMEOUT",
              help="how long to wait for ZooKeeper, Redis and nodes [env RINGPOOL_TIMEOUT]")
@click.version_option(version(), "--version", prog_name="taskctl", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, zk: str | None, redis: str | None, cluster: str, token: str,
        operator_token: str, zk_auth: str, zk_operator_auth: str, as_json: bool, debug: bool,
        timeout_s: float) -> None:
    """Operate a ringpool cluster: status, ring, routes, tasks, the dead-letter queue, schedules,
    config.

    \b
    Exit codes: 0 ok, 1 aborted, 2 usage, 3 not found, 4 cluster unreachable,
    5 refused or invalid, 130 interrupted.
    Shell completion: eval "$(taskctl completion bash)" (or zsh, fish).
    """
    if timeout_s <= 0:
        raise click.BadParameter("must be > 0", param_hint="--timeout")
    for name, value in (("--zk-auth", zk_auth), ("--zk-operator-auth", zk_operator_auth)):
        if value:
            try:
                parse_credential(value, name)
            except ConfigError as exc:
                raise click.BadParameter(str(exc), param_hint=name) from None
    ctx.obj = Options(zk=zk, redis=redis, cluster=cluster, token=token, json=as_json,
                      debug=debug, timeout_s=timeout_s, operator_token=operator_token,
                      zk_auth=zk_auth, zk_operator_auth=zk_operator_auth)


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script: eval "$(taskctl completion bash)"."""
    from click.shell_completion import get_completion_class

    completer = get_completion_class(shell)
    assert completer is not None
    click.echo(completer(cli, {}, "taskctl", "_TASKCTL_COMPLETE").source())


@cli.command()
@dashboard_options
@click.pass_context
def dashboard(ctx: click.Context, **flags: Any) -> None:
    """Serve the web dashboard of this cluster (as ringpool-dashboard does)."""
    options = options_of(ctx)
    client = options.settings()
    serve("DEBUG" if options.debug else "INFO", {
        **flags, "zk": client.zk, "redis": client.redis, "cluster": client.cluster,
        "token": client.token, "operator_token": client.operator_token,
        "zk_auth": client.zk_auth, "tls_ca": client.tls_ca,
        "tls_cert": client.tls_cert, "tls_key": client.tls_key,
        "tls_server_name": client.tls_server_name,
        "zk_operator_auth": options.zk_operator_auth})


cli.add_command(status.status)
cli.add_command(status.ring)
cli.add_command(status.route)
cli.add_command(task.task)
cli.add_command(dlq.dlq)
cli.add_command(schedule.schedule)
cli.add_command(config.config)
cli.add_command(dev.dev)


def main() -> None:
    """The console script."""
    cli.main(prog_name="taskctl")
