"""The Redis client the state store talks through: it rides out restarts, and it never
loses a cancellation.

redis-py 8.1 can finish a command normally although the calling task was cancelled
during it: the cancel is lost instead of delivered, and a loop told to stop (a demoted
leader's, a node's at shutdown) runs on. Every command and pipeline of this client
raises such a cancel when it returns (``raise_a_swallowed_cancel``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


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


class _Redis(aioredis.Redis):
    """A client whose commands and pipelines never lose a cancellation."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        result = await super().execute_command(*args, **options)
        raise_a_swallowed_cancel()
        return result

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> _Pipeline:
        return _Pipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)


def connect_redis(
    url: str, connect_timeout_s: float = 5.0, timeout_s: float = 10.0, retries: int = 20,
    backoff_cap_s: float = 1.0,
) -> aioredis.Redis:
    """An asyncio Redis client that rides out restarts: reconnects with backoff, up to
    ``retries`` times per command."""
    return _Redis.from_url(
        url,
        socket_connect_timeout=connect_timeout_s,
        socket_timeout=timeout_s,
        health_check_interval=15,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=backoff_cap_s), retries=retries),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )


