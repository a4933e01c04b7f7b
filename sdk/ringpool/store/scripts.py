"""The Lua scripts, and running many calls of them at once.

A script touches one partition (one slot) per call and declares every key it
touches. ``run`` sends a list of calls in one pipeline: one round trip per Redis
(per shard of a Redis Cluster). A script the server does not know (after a restart
or a failover) is loaded and its calls are sent again. A durability command (``WAIT``,
``WAITAOF``) goes after the calls on each connection that ran them: those commands
only wait for the writes of their own connection.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import NoScriptError

from ringpool.store.connection import RedisClient


@dataclass(frozen=True)
class Script:
    name: str
    source: str
    sha: str

    @classmethod
    def load(cls, name: str, *preludes: str) -> Script:
        """``lua/<name>.lua`` with the helpers every script shares (``lua/lib.lua``: Redis'
        clock, epoch order) and the shared code of ``lua/<prelude>.lua`` in front of it."""
        lua = resources.files(__package__).joinpath("lua")
        source = "".join(lua.joinpath(f"{part}.lua").read_text()
                         for part in ("lib", *preludes, name))
        return cls(name, source, hashlib.sha1(source.encode()).hexdigest())


@dataclass(frozen=True)
class Call:
    """One call of a script: its keys (all in one slot) and arguments."""

    script: Script
    keys: Sequence[str]
    args: Sequence[Any]


@dataclass(frozen=True)
class Replies:
    """What a batch of calls answered: each call's reply or error, and what the
    durability command on its connection answered (None when none was sent)."""

    replies: list[Any]
    waits: list[Any]


async def run(client: RedisClient, calls: Sequence[Call], wait: Sequence[Any] = ()) -> Replies:
    """Send ``calls`` in one pipeline (and ``wait`` after them on each connection)."""
    replies, waits = await _send(client, calls, wait)
    missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if missing:
        for script in {calls[i].script for i in missing}:
            await client.script_load(script.source)
        again, again_waits = await _send(client, [calls[i] for i in missing], wait)
        for i, reply, waited in zip(missing, again, again_waits, strict=True):
            replies[i], waits[i] = reply, waited
    return Replies(replies, waits)


async def call(client: RedisClient, script: Script, keys: Sequence[str],
               args: Sequence[Any]) -> Any:
    """One call's reply; its error raised."""
    (reply,) = (await run(client, [Call(script, keys, args)])).replies
    if isinstance(reply, Exception):
        raise reply
    return reply


async def _send(
    client: RedisClient, calls: Sequence[Call], wait: Sequence[Any]
) -> tuple[list[Any], list[Any]]:
    nodes: list[ClusterNode | None] = [None] * len(calls)
    if isinstance(client, RedisCluster) and wait:
        nodes = [client.get_node_from_key(call.keys[0]) for call in calls]
    async with client.pipeline(transaction=False) as pipe:
        for call in calls:
            # (redis-py blocks pipe.evalsha on a cluster; the command itself routes by key.)
            pipe.execute_command("EVALSHA", call.script.sha, len(call.keys), *call.keys,
                                 *call.args)
        if wait:
            # Each WAIT on the connection that carried the calls before it.
            for node in dict.fromkeys(nodes):
                if node is None:
                    pipe.execute_command(*wait)
                else:
                    pipe.execute_command(*wait, target_nodes=node)
        answers = await pipe.execute(raise_on_error=False)
    replies = list(answers[:len(calls)])
    if not wait:
        return replies, [None] * len(calls)
    by_node = dict(zip(dict.fromkeys(nodes), answers[len(calls):], strict=True))
    return replies, [by_node[node] for node in nodes]
