"""Listen to one Redis channel for as long as the caller wants, across Redis restarts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from ringpool.store.connection import RedisClient

log = logging.getLogger(__name__)


async def listen_forever(
    client: RedisClient,
    channel: str,
    on_message: Callable[[bytes], Awaitable[None]],
    on_subscribed: Callable[[], Awaitable[None]] | None = None,
    retry_s: float = 0.5,
) -> None:
    """Call ``on_message(data)`` for each message; resubscribe after any failure.

    ``on_subscribed`` runs after every (re)subscription: the place to catch up on
    what was published while nobody listened. Ends only when cancelled.
    """
    while True:
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(channel)
            if on_subscribed is not None:
                await on_subscribed()
            async for message in pubsub.listen():
                await on_message(message["data"])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("subscription to %s broke (%s); resubscribing", channel, exc)
            await asyncio.sleep(retry_s)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
