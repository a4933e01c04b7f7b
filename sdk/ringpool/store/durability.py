"""When an accepted task is safe enough to acknowledge: the accept durability.

``memory``: once the primary has it in memory (a crash or failover may lose it).
``replica``: once a replica has it too (``WAIT 1``): it survives the primary's crash
and a failover to that replica. ``aof``: once the primary's append-only file has it
on disk (``WAITAOF 1 0``, Redis >= 7.2): it survives a Redis process crash and
restart. Redis 7.0 and 7.1 have no ``WAITAOF``: there ``aof`` relies on the server
writing each change to disk before it answers (``appendfsync always``). A server
without an append-only file cannot keep ``aof`` at all: accepts go on as ``memory``.
The store says in its log, when a node starts, how the durability is kept, or why it
is not.

The durability command goes after the accept scripts of a batch, on the connection
that carried them (it waits only for that connection's writes). A batch whose
command does not confirm within ``WAIT_TIMEOUT_S`` is refused as unavailable: the
client sends it again, and the task's fingerprint makes the resend a duplicate.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from ringpool.errors import ConfigError
from ringpool.store.connection import RedisClient

log = logging.getLogger(__name__)

WAIT_TIMEOUT_S = 2.0
WAITAOF_SINCE = (7, 2)


class AcceptDurability(StrEnum):
    """What an acknowledged task survives (see the module's text)."""

    #: In the primary's memory: lost by a crash before the next save or sync.
    MEMORY = "memory"
    #: Also on a replica (WAIT 1): survives the primary's crash and a failover.
    REPLICA = "replica"
    #: On the primary's disk (WAITAOF, or appendfsync always): survives a Redis crash.
    AOF = "aof"

    @classmethod
    def parse(cls, value: str) -> AcceptDurability:
        try:
            return cls(value)
        except ValueError:
            raise ConfigError(f"accept durability must be one of "
                              f"{', '.join(m.value for m in cls)}; got {value!r}") from None


DEFAULT_DURABILITY = AcceptDurability.AOF


@dataclass(frozen=True)
class ServerFacts:
    """What the store learned about the (primary) servers when it connected."""

    version: tuple[int, ...]
    appendonly: bool  # every primary has an append-only file
    appendfsync: str | None
    replicas: int | None  # the fewest replicas of any primary

    @property
    def has_waitaof(self) -> bool:
        return self.version >= WAITAOF_SINCE

    def wait_command(self, durability: AcceptDurability) -> tuple[Any, ...]:
        """The command that confirms ``durability`` after a batch; () for none."""
        timeout_ms = int(WAIT_TIMEOUT_S * 1000)
        if durability is AcceptDurability.REPLICA:
            return ("WAIT", 1, timeout_ms)
        if durability is AcceptDurability.AOF and self.has_waitaof and self.appendonly:
            return ("WAITAOF", 1, 0, timeout_ms)
        return ()

    def warning(self, durability: AcceptDurability) -> str | None:
        """What the log must say when ``durability`` cannot hold as configured."""
        if durability is AcceptDurability.REPLICA and self.replicas == 0:
            return ("accept durability 'replica': a Redis primary has no replica, so every "
                    f"accept will wait {WAIT_TIMEOUT_S:g}s and be refused")
        if durability is not AcceptDurability.AOF:
            return None
        if not self.appendonly:
            return ("accept durability 'aof': Redis runs without an append-only file "
                    "(appendonly no), so accepts are acknowledged from memory: an "
                    "acknowledged task is lost by a Redis crash")
        if not self.has_waitaof and self.appendfsync not in ("always", None):
            version = ".".join(map(str, self.version))
            return (f"accept durability 'aof': Redis {version} has no WAITAOF (Redis >= 7.2), "
                    f"and appendfsync is {self.appendfsync!r}, not 'always': an "
                    "acknowledged task may be lost by a Redis crash")
        return None

    def describe(self, durability: AcceptDurability) -> str:
        """One log line: how ``durability`` is kept on these servers."""
        command = self.wait_command(durability)
        if command:
            return f"accept durability {durability.value}: {command[0]} after each batch"
        if durability is AcceptDurability.AOF:
            version = ".".join(map(str, self.version))
            return (f"accept durability aof: Redis {version} has no WAITAOF; relying on "
                    f"appendfsync {self.appendfsync or '(unknown)'}")
        return f"accept durability {durability.value}: no wait"


def confirmed(command: tuple[Any, ...], reply: Any) -> bool:
    """Whether a durability command's reply confirms the writes before it."""
    if not command:
        return True
    if isinstance(reply, Exception) or reply is None:
        return False
    if command[0] == "WAITAOF":
        return bool(reply) and int(reply[0]) >= 1
    return int(reply) >= 1


async def probe(client: RedisClient) -> ServerFacts:
    """The version, persistence settings and replica count of the primaries."""
    if isinstance(client, RedisCluster):
        targets: dict[str, Any] = {"target_nodes": RedisCluster.PRIMARIES}
    else:
        targets = {}
    infos = await client.info("all", **targets)
    # A cluster answers per node; a single server with one dict.
    per_node = list(infos.values()) if isinstance(client, RedisCluster) else [infos]
    version = min(tuple(int(p) for p in str(i["redis_version"]).split(".")[:3])
                  for i in per_node)
    appendonly = all(bool(i.get("aof_enabled")) for i in per_node)
    replicas = min(int(i.get("connected_slaves", 0)) for i in per_node)
    try:
        configured: Any = await client.config_get("appendfsync", **targets)
        if isinstance(client, RedisCluster):
            values = {v.get("appendfsync") for v in configured.values()}
        else:
            values = {configured.get("appendfsync")}
        appendfsync = "always" if values == {"always"} else sorted(map(str, values))[0]
    except RedisError:  # CONFIG renamed or refused (managed Redis)
        appendfsync = None
    return ServerFacts(version, appendonly, appendfsync, replicas)


def log_facts(facts: ServerFacts, durability: AcceptDurability) -> None:
    warning = facts.warning(durability)
    if warning:
        log.warning(warning)
    else:
        log.info(facts.describe(durability))
