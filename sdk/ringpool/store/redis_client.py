"""The Redis clients the state store talks through never lose a cancellation.

redis-py 8.1 can finish a command normally although the calling task was cancelled
during it: the cancel is lost instead of delivered, and a loop told to stop (a demoted
leader's, a node's at shutdown) runs on. Every command and pipeline of these clients,
for one Redis and for a Redis Cluster, raises such a cancel when it returns
(``raise_a_swallowed_cancel``). ``ringpool.store.connection`` makes them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline, RedisCluster


def raise_a_swallowed_cancel() -> None:
    """Raise the cancellation of the current task if one was requested and not delivered."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError()


class _Pipeline(Pipeline):
    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        results = await super().execute(raise_on_error)
        raise_a_swallowed_cancel()
        return results


class Redis(aioredis.Redis):
    """One Redis whose commands and pipelines never lose a cancellation."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        result = await super().execute_command(*args, **options)
        raise_a_swallowed_cancel()
        return result

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> _Pipeline:
        return _Pipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)


class _ClusterPipeline(ClusterPipeline):
    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        results = await super().execute(raise_on_error, allow_redirections)
        raise_a_swallowed_cancel()
        return results


class Cluster(RedisCluster):
    """A Redis Cluster whose commands and pipelines never lose a cancellation."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        result = await super().execute_command(*args, **kwargs)
        raise_a_swallowed_cancel()
        return result

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None
                 ) -> _ClusterPipeline:
        if shard_hint:
            raise ValueError("shard_hint is not supported on a Redis Cluster")
        return _ClusterPipeline(self, transaction)  # type: ignore[abstract]
