"""The root command: global options, the per-run session, and error -> exit code mapping.

Exit codes: 0 ok, 1 aborted (a declined confirmation), 2 usage, 3 not found,
4 cluster unreachable, 5 refused or invalid, 130 interrupted. Errors are one
line on stderr; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import traceback
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, NoReturn, TypeVar

import click
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError
from prometheus_client import CollectorRegistry
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ringpool.client.metrics import client_metrics
from ringpool.client.router import Router
from ringpool.client.settings import ClientSettings
from ringpool.core.membership import Membership, connect_zookeeper, read_ring
from ringpool.core.naming import Names
from ringpool.core.ring import EMPTY_RING, Ring
from ringpool.errors import (
    ClusterUnavailable,
    ConfigError,
    DispatchError,
    NoNodesAvailable,
    RingpoolError,
    ScheduleNotFound,
    TaskNotFound,
)
from ringpool.store.store import StateStore, connect_redis

EXIT_OK = 0
EXIT_ABORTED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_UNAVAILABLE = 4
EXIT_REFUSED = 5
EXIT_INTERRUPTED = 130

T = TypeVar("T")


class CommandError(click.ClickException):
    """A failure to report as one line with a chosen exit code."""

    def __init__(self, message: str, code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.code = code


class Interrupted(Exception):
    """Ctrl-C; carries a line saying what was done before it."""


def exit_code_for(exc: BaseException) -> int:
    if isinstance(exc, TaskNotFound | ScheduleNotFound | NoNodeError):
        return EXIT_NOT_FOUND
    if isinstance(exc, NoNodesAvailable):
        return EXIT_UNAVAILABLE
    if isinstance(exc, ClusterUnavailable | RedisError | OSError | TimeoutError):
        return EXIT_UNAVAILABLE
    if isinstance(exc, ConfigError | DispatchError | RingpoolError):
        return EXIT_REFUSED
    return EXIT_REFUSED


def describe(exc: BaseException) -> str:
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return f"cannot reach Redis: {exc}"
    if isinstance(exc, TimeoutError) and not str(exc):
        return "timed out waiting for the cluster"
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass
class Options:
    """The global options, resolved from flags and ``RINGPOOL_*`` variables."""

    zk: str | None
    redis: str | None
    cluster: str
    token: str
    json: bool
    debug: bool
    timeout_s: float
    operator_token: str = ""  # for replays and status on nodes with an operator token
    zk_auth: str = ""  # member identity, when the cluster uses ZooKeeper ACLs
    zk_operator_auth: str = ""  # operator identity: the config znode is written with its ACL

    def settings(self) -> ClientSettings:
        """The client settings of these options (click read the flags and ``RINGPOOL_*``)."""
        try:
            return ClientSettings.resolve(
                self.zk, self.redis, self.cluster, self.token,
                connect_timeout_s=self.timeout_s,
                dispatch_timeout_s=max(self.timeout_s, 30.0),
                operator_token=self.operator_token, zk_auth=self.zk_auth,
            )
        except ConfigError as exc:
            raise CommandError(str(exc), EXIT_USAGE) from None

    @property
    def names(self) -> Names:
        return Names(self.cluster)


@dataclass
class Session:
    """Connections opened on demand during one command, all closed at its end."""

    options: Options
    _zk: KazooClient | None = None
    _store: StateStore | None = None
    _membership: Membership | None = None
    _router: Router | None = None
    _closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @property
    def names(self) -> Names:
        return self.options.names

    async def zk(self) -> KazooClient:
        if self._zk is None:
            settings = self.options.settings()
            self._zk = await asyncio.to_thread(
                connect_zookeeper, settings.zk, settings.connect_timeout_s,
                settings.zk_auth, self.options.zk_operator_auth,
            )
        return self._zk

    async def store(self) -> StateStore:
        if self._store is None:
            settings = self.options.settings()
            timeout = settings.connect_timeout_s
            client = connect_redis(settings.redis, connect_timeout_s=timeout,
                                   timeout_s=max(timeout, 5.0), retries=2, backoff_cap_s=0.5)
            self._store = StateStore(client, settings.cluster)
            await asyncio.wait_for(self._store.ping(), timeout + 1.0)
        return self._store

    async def router(self) -> Router:
        """A started Router on this session's ZooKeeper connection (for sending replays)."""
        if self._router is None:
            settings = self.options.settings()
            zk = await self.zk()
            self._membership = await asyncio.to_thread(Membership(zk, settings.cluster).start)
            self._router = Router(settings, self._membership,
                                  client_metrics(CollectorRegistry())).start()
        return self._router

    async def ring(self) -> Ring:
        """The ring as ZooKeeper holds it now (read only: creates no znodes)."""
        zk = await self.zk()
        try:
            return await asyncio.to_thread(read_ring, zk, self.names)
        except NoNodeError:  # no node ever joined this cluster
            return EMPTY_RING

    async def close(self) -> None:
        if self._router is not None:
            await self._router.close()
        if self._membership is not None:
            await asyncio.to_thread(self._membership.stop)
        if self._store is not None:
            await self._store.close()
        if self._zk is not None:
            zk = self._zk
            await asyncio.to_thread(zk.stop)
            zk.close()


def run(
    options: Options, body: Callable[[Session], Coroutine[Any, Any, T]]
) -> T:
    """Run ``body`` with a fresh session on a fresh event loop, mapping errors to exits."""

    async def main() -> T:
        session = Session(options)
        try:
            return await body(session)
        finally:
            await asyncio.shield(session.close())

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        raise Interrupted("interrupted") from None


def confirm(question: str, refused: str) -> None:
    """Ask on stderr; CommandError(``refused``, exit 1) unless the answer is yes."""
    try:
        answer = click.confirm(question, err=True)
    except click.exceptions.Abort:
        click.echo("", err=True)
        answer = False
    if not answer:
        raise CommandError(refused, EXIT_ABORTED)


def fail(message: str, exit_code: int = EXIT_REFUSED) -> NoReturn:
    raise CommandError(message, exit_code)


class TaskctlGroup(click.Group):
    """A group whose ``main`` turns every failure into one line and an exit code."""

    def main(  # type: ignore[override]
        self, args: Sequence[str] | None = None, prog_name: str | None = None,
        complete_var: str | None = None, standalone_mode: bool = True, **extra: Any,
    ) -> Any:
        debug = "--debug" in (sys.argv[1:] if args is None else list(args))
        if debug:
            logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
        else:  # kazoo reports each failed connection attempt; our one line says it all
            logging.getLogger("kazoo").setLevel(logging.CRITICAL)
        try:
            code = super().main(args=args, prog_name=prog_name or "taskctl",
                                complete_var=complete_var, standalone_mode=False, **extra)
        except click.exceptions.Abort:
            _error("aborted", debug=False)
            code = EXIT_ABORTED
        except click.UsageError as exc:
            _error(exc.format_message(), debug, hint=_usage_hint(exc))
            code = EXIT_USAGE
        except CommandError as exc:
            _error(exc.format_message(), debug)
            code = exc.code
        except Interrupted as exc:
            _error(str(exc), debug)
            code = EXIT_INTERRUPTED
        except KeyboardInterrupt:
            _error("interrupted", debug)
            code = EXIT_INTERRUPTED
        except click.ClickException as exc:
            _error(exc.format_message(), debug)
            code = exc.exit_code
        except Exception as exc:
            _error(describe(exc), debug)
            code = exit_code_for(exc)
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


def _usage_hint(exc: click.UsageError) -> str:
    ctx = exc.ctx
    return f" (see '{ctx.command_path} --help')" if ctx is not None else ""


def _error(message: str, debug: bool, hint: str = "") -> None:
    if debug:
        traceback.print_exc()
    click.echo(f"taskctl: error: {message}{hint}", err=True)


def version() -> str:
    try:
        return metadata.version("ringpool")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def options_of(ctx: click.Context) -> Options:
    obj = ctx.find_root().obj
    assert isinstance(obj, Options)
    return obj
