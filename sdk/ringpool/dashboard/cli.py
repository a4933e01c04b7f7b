"""``ringpool-dashboard`` (and ``taskctl dashboard``): serve the web dashboard.

Every flag also reads ``RINGPOOL_<FLAG>`` from the environment; ``--help`` names it.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click

from ringpool.cli.process import (
    COMMAND_SETTINGS,
    client_tls_options,
    connection_options,
    option,
    run_process,
    version_option,
)
from ringpool.dashboard.settings import DEFAULT_LISTEN, DashboardSettings
from ringpool.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("ringpool.dashboard")


def dashboard_options(command: F) -> F:
    """The dashboard's own flags (``taskctl dashboard`` takes the connection from taskctl).

    Operators sign in with the cluster's operator token (``--operator-token``, a
    connection flag: the dashboard presents it to the nodes too); without any token
    one is made and logged.
    """
    for decorate in reversed((
        option("--listen", default=DEFAULT_LISTEN, help="HTTP listen address HOST:PORT."),
        option("--viewer-token", default="", help="Token that signs in read-only."),
        option("--session-secret", default="",
               help="Key that signs session cookies; keep it across restarts "
                    "(default: random, so sessions end with the process)."),
        option("--server-tls-cert", default="", help="Serve HTTPS with this certificate (PEM)."),
        option("--server-tls-key", default="", help="Private key of --server-tls-cert (PEM)."),
        option("--poll-interval", "poll_interval_s", default=2.0,
               type=click.FloatRange(0.2, 60), help="Seconds between polls of the nodes."),
    )):
        command = decorate(command)
    return command


def serve(log_level: str, flags: dict[str, Any]) -> None:
    """Run the dashboard with these settings until stopped; bad settings are exit 2."""
    made_token = not flags["operator_token"] and not flags["viewer_token"]
    if made_token:
        flags["operator_token"] = secrets.token_urlsafe(18)
    if not flags["session_secret"]:
        del flags["session_secret"]
    try:
        settings = DashboardSettings(**flags)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None

    def start() -> Coroutine[Any, Any, int]:
        try:
            from ringpool.dashboard.server import serve as serve_dashboard
        except ImportError as exc:
            raise click.ClickException(f"the dashboard needs its extra ({exc}): "
                                       "pip install 'ringpool[dashboard]'") from None
        if made_token:
            log.warning("no token given: sign in with the operator token %s",
                        settings.operator_token)
        return serve_dashboard(settings)

    run_process("ringpool-dashboard", log_level, start)


@click.command(context_settings=COMMAND_SETTINGS)
@connection_options
@client_tls_options
@option("--zk-operator-auth", default="", metavar="USER:PASSWORD",
        help="ZooKeeper operator identity: only it may write the config.")
@dashboard_options
@version_option("ringpool")
def main(log_level: str, **flags: Any) -> None:
    """Serve ringpool's web dashboard: nodes and the ring live, tasks, dead letters, config."""
    serve(log_level, flags)
