"""``ringpool-dashboard`` (and ``taskctl dashboard``): serve the web dashboard.

Every flag also reads ``RINGPOOL_<FLAG>`` from the environment; ``--help`` names it.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ringpool.cli.process import run_process, version_option
from ringpool.dashboard.settings import DEFAULT_LISTEN, DashboardSettings
from ringpool.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("ringpool.dashboard")


def option(*decls: str, **attrs: Any) -> Callable[[F], F]:
    """A flag that also reads ``RINGPOOL_<FLAG>`` and says so in ``--help``."""
    flag = next(d for d in decls if d.startswith("--"))
    envvar = "RINGPOOL_" + flag.lstrip("-").replace("-", "_").upper()
    if attrs.get("default") == "":
        attrs.setdefault("show_default", False)
    return click.option(*decls, envvar=envvar, show_envvar=True, **attrs)


def dashboard_options(command: F) -> F:
    """The dashboard's own flags (``taskctl dashboard`` takes the connection from taskctl)."""
    for decorate in reversed((
        option("--listen", default=DEFAULT_LISTEN, show_default=True,
               help="HTTP listen address HOST:PORT."),
        option("--operator-token", default="",
               help="Token that signs in with every right (default: one is made and logged)."),
        option("--viewer-token", default="", help="Token that signs in read-only."),
        option("--session-secret", default="",
               help="Key that signs session cookies; share it between replicas "
                    "(default: random, so sessions end with the process)."),
        option("--server-tls-cert", default="", help="Serve HTTPS with this certificate (PEM)."),
        option("--server-tls-key", default="", help="Private key of --server-tls-cert (PEM)."),
        option("--poll-interval", "poll_interval_s", default=2.0, show_default=True,
               type=click.FloatRange(0.2, 60), help="Seconds between polls of the nodes."),
    )):
        command = decorate(command)
    return command


def serve(log_level: str, **values: Any) -> None:
    """Build the settings from flag values and run until stopped (exit 2 on bad settings)."""
    try:
        from ringpool.dashboard.server import serve as serve_dashboard
    except ImportError as exc:
        raise click.ClickException(f"the dashboard needs its extra ({exc}): "
                                   "pip install 'ringpool[dashboard]'") from None
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    made_token = not values["operator_token"] and not values["viewer_token"]
    if made_token:
        values["operator_token"] = secrets.token_urlsafe(18)
    if not values["session_secret"]:
        values.pop("session_secret")
    try:
        settings = DashboardSettings(**values)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    if made_token:
        log.warning("no token given: sign in with the operator token %s", settings.operator_token)
    run_process("ringpool-dashboard", log_level, serve_dashboard(settings))


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@option("--zk", default="127.0.0.1:2181", show_default=True,
        help="ZooKeeper hosts (host:port[,host:port]).")
@option("--redis", default="redis://127.0.0.1:6379/0", show_default=True,
        help="Redis URL (rediss:// for TLS).")
@option("--cluster", default="default", show_default=True, help="Cluster name.")
@option("--token", default="", help="The nodes' bearer token (status calls, replays).")
@option("--zk-auth", default="", metavar="USER:PASSWORD",
        help="ZooKeeper digest identity of cluster members (when ACLs are on).")
@option("--zk-operator-auth", default="", metavar="USER:PASSWORD",
        help="ZooKeeper operator identity: only it may write the config.")
@option("--tls-ca", default="", help="CA that signed the nodes' certificates (dial them over TLS).")
@option("--tls-cert", default="", help="Client certificate (PEM), for nodes that ask (mTLS).")
@option("--tls-key", default="", help="Private key of --tls-cert (PEM).")
@option("--tls-server-name", default="",
        help="Name to check in a node's certificate (default: the address dialled).")
@dashboard_options
@option("--log-level", default="INFO", show_default=True,
        type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]))
@version_option("ringpool")
def main(**values: Any) -> None:
    """Serve ringpool's web dashboard: nodes and the ring live, tasks, dead letters, config."""
    serve(**values)
