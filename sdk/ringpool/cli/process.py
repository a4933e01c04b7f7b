"""What the long-running processes (``ringpool-node``, ``ringpool-coordinator``) share:
their flags, the connections they open at start-up, and the way they start and fail.

Every flag also reads ``RINGPOOL_<FLAG>`` (``ringpool.core.settings.env_name``), and
``--help`` names the variable. The connections are async context managers, entered
on the process's exit stack: a start-up that fails half-way closes exactly what it
opened, in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

import click
from kazoo.client import KazooClient
from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from redis.exceptions import RedisError

from ringpool.client.portal import new_event_loop
from ringpool.core.membership import connect_zookeeper
from ringpool.core.settings import ConnectionSettings, env_name
from ringpool.core.zkacl import secure_cluster
from ringpool.errors import ClusterUnavailable, ConfigError, RingpoolError
from ringpool.store.durability import AcceptDurability
from ringpool.store.keys import MAX_PARTITIONS
from ringpool.store.store import StateStore, connect_redis

F = TypeVar("F", bound=Callable[..., Any])

COMMAND_SETTINGS = {"show_default": True, "help_option_names": ["-h", "--help"],
                    "max_content_width": 100}
STARTUP_TIMEOUT_S = 10.0  # for each dependency to answer while a process starts


# -- flags ------------------------------------------------------------------------------


def option(*decls: str, **attrs: Any) -> Callable[[F], F]:
    """A process flag that also reads ``RINGPOOL_<FLAG>`` (its first long name's)."""
    flag = next(decl for decl in decls if decl.startswith("--"))
    if attrs.get("default") == "":
        attrs.setdefault("show_default", False)
    return click.option(*decls, envvar=env_name(flag), show_envvar=True, **attrs)


def _apply(command: F, options: tuple[Callable[[F], F], ...]) -> F:
    for decorate in reversed(options):
        command = decorate(command)
    return command


def version_option(distribution: str) -> Callable[[F], F]:
    """``--version``: the installed version of ``distribution``."""
    return click.version_option(package_name=distribution, prog_name=distribution,
                                message="%(prog)s %(version)s")


def connection_options(command: F) -> F:
    """``ConnectionSettings``' flags, plus ``--zk-session-timeout`` and ``--log-level``."""
    return _apply(command, (
        option("--zk", default="127.0.0.1:2181", help="ZooKeeper hosts (host:port[,host:port])."),
        option("--redis", default="redis://127.0.0.1:6379/0",
               help="Redis URL (rediss:// for TLS), or any node of a Redis Cluster."),
        option("--cluster", default="default", help="Cluster name."),
        option("--token", default="",
               help="The app token: nodes require it to submit tasks, apps present it."),
        option("--operator-token", default="",
               help="The operator token: for retries, replays, Status and Drain."),
        option("--zk-auth", default="", metavar="USER:PASSWORD",
               help="ZooKeeper digest identity of cluster members (turns on znode ACLs)."),
        option("--zk-session-timeout", "zk_session_timeout_s", default=10.0,
               type=click.FloatRange(2, 120),
               help="ZooKeeper session timeout in seconds: how fast a dead process leaves."),
        option("--log-level", default="INFO",
               type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"])),
    ))


def client_tls_options(command: F) -> F:
    """The TLS flags of a process that dials the nodes (``ClientSettings``' TLS fields)."""
    return _apply(command, (
        option("--tls-ca", default="", help="CA that signed the nodes' certificates (turns TLS on)."),
        option("--tls-cert", default="", help="Client certificate (PEM), for nodes that ask (mTLS)."),
        option("--tls-key", default="", help="Private key of --tls-cert (PEM)."),
        option("--tls-server-name", default="",
               help="Name to check in a node's certificate (default: the address dialled)."),
    ))


def partitions_option(command: F) -> F:
    """``--partitions``: the partition count of a new cluster (a recorded one stays)."""
    return option("--partitions", default=0, type=click.IntRange(0, MAX_PARTITIONS),
                  help="Partitions of the cluster's Redis state, when the cluster is new "
                       "(0: 64). A cluster keeps its count; another one is refused.")(command)


def accept_durability_option(command: F) -> F:
    return option("--accept-durability", default=AcceptDurability.AOF.value,
                  type=click.Choice([d.value for d in AcceptDurability]),
                  help="When an accept is acknowledged: in Redis' memory, on a replica too "
                       "(WAIT 1), or on Redis' disk (WAITAOF, or appendfsync always). The "
                       "cluster config's accept_durability, when set, overrides it.")(command)


def max_crash_recoveries_option(command: F) -> F:
    return option("--max-crash-recoveries", default=3, type=click.IntRange(1, 100),
                  help="Crash recoveries after which a task is poison and goes to the DLQ.")(command)


# -- start-up ---------------------------------------------------------------------------


def without_password(url: str) -> str:
    """``url`` fit for a log line or an error message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


@contextlib.asynccontextmanager
async def zookeeper_session(
    settings: ConnectionSettings, session_timeout_s: float
) -> AsyncIterator[KazooClient]:
    """This process's ZooKeeper session (the cluster's znode ACLs set when it has ``zk_auth``)."""
    zk = await asyncio.to_thread(connect_zookeeper, settings.zk, session_timeout_s,
                                 settings.zk_auth)
    try:
        if settings.zk_auth:
            await asyncio.to_thread(secure_cluster, zk, settings.cluster, settings.zk_auth)
        yield zk
    finally:
        await asyncio.to_thread(zk.stop)
        zk.close()


async def check_redis(url: str, cluster: str, timeout_s: float = STARTUP_TIMEOUT_S,
                      partitions: int | None = None) -> None:
    """ClusterUnavailable, naming the URL, unless Redis answers a ping within ``timeout_s``;
    ConfigError when ``partitions`` is not the cluster's recorded partition count.

    A running process rides out Redis restarts; a starting one says at once that it cannot
    reach Redis, so a wrong URL or password is not mistaken for an outage.
    """
    probe = StateStore(connect_redis(url, connect_timeout_s=timeout_s, timeout_s=timeout_s,
                                     retries=0), cluster, partitions=partitions)
    try:
        await asyncio.wait_for(probe.ping(), timeout_s)
    except (RedisError, OSError, TimeoutError) as exc:
        reason = str(exc) or f"no answer within {timeout_s:g}s"
        raise ClusterUnavailable(f"cannot reach Redis at {without_password(url)}: {reason}") from None
    finally:
        await probe.close()


@contextlib.asynccontextmanager
async def state_store(url: str, cluster: str, **options: Any) -> AsyncIterator[StateStore]:
    """A state store on a Redis that answered (``check_redis``), closed on exit."""
    await check_redis(url, cluster, partitions=options.get("partitions"))
    store = StateStore.from_url(url, cluster, **options)
    try:
        yield store
    finally:
        await store.close()


def metrics_registry(port: int) -> CollectorRegistry:
    """The global registry when the process serves /metrics on ``port``, else a private one."""
    return REGISTRY if port else CollectorRegistry()


@contextlib.contextmanager
def metrics_endpoint(port: int) -> Iterator[None]:
    """Serve Prometheus' ``/metrics`` on ``port`` (0: not at all) until the block ends."""
    if not port:
        yield
        return
    try:
        server, thread = start_http_server(port)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on port {port}: {exc.strerror or exc}") from None
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5.0)


# -- running ----------------------------------------------------------------------------


def _leaves(error: BaseException) -> Iterator[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from _leaves(inner)
    else:
        yield error


def run_process(name: str, log_level: str, main: Callable[[], Coroutine[Any, Any, int]]) -> NoReturn:
    """Run ``main()`` to its exit code; a RingpoolError (also from inside a task group) is
    one line on stderr and exit 2."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            code = runner.run(main())
    except* RingpoolError as errors:
        for error in _leaves(errors):
            click.echo(f"{name}: {error}", err=True)
        sys.exit(2)
    sys.exit(code)
