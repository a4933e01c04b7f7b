"""One Redis URL, whatever stands behind it: a single server, any node of a Redis
Cluster (detected), or a master that Sentinel watches.

``redis://`` and ``rediss://`` (TLS) name a server; when ``INFO cluster`` says
``cluster_enabled:1`` the client becomes a ``redis.asyncio.cluster.RedisCluster``,
which follows MOVED and ASK and finds the other nodes itself. Sentinel has a URL
form of its own (redis-py has none)::

    redis+sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/SERVICE[/DB][?sentinel_password=P]

with ``rediss+sentinel://`` for TLS; the password is the master's (and the
sentinels' unless ``sentinel_password`` says otherwise), the port defaults to 26379.
The client is made on first use, so making one touches no network; it is one of
``ringpool.store.redis_client``'s, which never lose a cancellation.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, TypeAlias
from urllib.parse import parse_qs, unquote

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ringpool.errors import ConfigError
from ringpool.store.redis_client import Cluster, Redis

RedisClient: TypeAlias = aioredis.Redis | RedisCluster
SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}  # -> TLS
SENTINEL_PORT = 26379


@dataclass(frozen=True)
class RedisOptions:
    """How patient a client is: it reconnects with backoff, up to ``retries`` times per
    command, so it rides out a Redis restart or failover."""

    connect_timeout_s: float = 5.0
    timeout_s: float = 10.0
    retries: int = 20
    backoff_cap_s: float = 1.0

    def retry(self) -> Retry:
        return Retry(ExponentialWithJitterBackoff(base=0.05, cap=self.backoff_cap_s),
                     retries=self.retries)

    def connection(self) -> dict[str, Any]:
        return {"socket_connect_timeout": self.connect_timeout_s,
                "socket_timeout": self.timeout_s, "health_check_interval": 15}


@dataclass(frozen=True)
class SentinelUrl:
    sentinels: list[tuple[str, int]]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> SentinelUrl | None:
        """The parts of a Sentinel URL; None for a URL of another scheme."""
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in SENTINEL_SCHEMES:
            return None
        rest, _, query = rest.partition("?")
        netloc, _, path = rest.partition("/")
        auth, at, hosts = netloc.rpartition("@")
        username = password = None
        if at:
            user, colon, secret = auth.partition(":")
            username = unquote(user) or None
            password = unquote(secret) if colon else None
        try:
            sentinels = [_address(host) for host in hosts.split(",") if host]
        except ValueError:
            raise ConfigError(f"bad sentinel address in the Redis URL: {hosts!r}") from None
        parts = [p for p in path.split("/") if p]
        if not sentinels or not parts or len(parts) > 2 or (len(parts) == 2
                                                            and not parts[1].isdigit()):
            raise ConfigError("a Sentinel URL is redis+sentinel://[[USER]:PASSWORD@]HOST[:PORT]"
                              "[,HOST[:PORT]...]/SERVICE[/DB]")
        options = parse_qs(query)
        return cls(sentinels, unquote(parts[0]), int(parts[1]) if len(parts) == 2 else 0,
                   username, password, options.get("sentinel_password", [password])[0],
                   SENTINEL_SCHEMES[scheme])


def _address(host: str) -> tuple[str, int]:
    if host.startswith("["):  # [IPv6]:port
        name, _, rest = host[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        name, _, port = host.partition(":")
    return name, int(port) if port else SENTINEL_PORT


async def open_redis(url: str, options: RedisOptions) -> RedisClient:
    """A client for ``url``: plain, Redis Cluster (detected) or Sentinel-managed."""
    sentinel = SentinelUrl.parse(url)
    if sentinel is not None:
        return _sentinel_master(sentinel, options)
    plain = Redis.from_url(url, retry=options.retry(),
                                    retry_on_error=[RedisConnectionError, RedisTimeoutError],
                                    **options.connection())
    try:
        info = await plain.info("cluster")
    except ResponseError:  # a proxy that hides the cluster (or INFO) behind one endpoint
        info = {}
    except BaseException:
        await plain.aclose()
        raise
    if not info.get("cluster_enabled"):
        return plain
    await plain.aclose()
    cluster = Cluster.from_url(url, retry=options.retry(), **options.connection())
    await cluster.initialize()
    return cluster


def _sentinel_master(url: SentinelUrl, options: RedisOptions) -> aioredis.Redis:
    tls: dict[str, Any] = {"ssl": True} if url.tls else {}
    sentinel = Sentinel(
        url.sentinels,
        sentinel_kwargs={"password": url.sentinel_password, **tls, **options.connection()},
        **options.connection())
    master: aioredis.Redis = sentinel.master_for(
        url.service, redis_class=Redis, db=url.db, username=url.username, password=url.password,
        retry=options.retry(), retry_on_error=[RedisConnectionError, RedisTimeoutError], **tls)
    return master


@dataclass
class RedisConnection:
    """The client of one Redis URL, opened on first use and shared from then on."""

    url: str
    options: RedisOptions = field(default_factory=RedisOptions)
    _client: RedisClient | None = field(default=None, init=False, repr=False)
    _opening: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    async def client(self) -> RedisClient:
        if self._client is None:
            async with self._opening:
                if self._client is None:
                    self._client = await open_redis(self.url, self.options)
        return self._client

    @property
    def clustered(self) -> bool:
        """Whether the URL named a Redis Cluster (known once the client is open)."""
        return isinstance(self._client, RedisCluster)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
