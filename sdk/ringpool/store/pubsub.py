"""Listen to one Redis channel for as long as the caller wants, across Redis restarts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from ringpool.store.connection import RedisClient
from ringpool.store.redis_client import raise_a_swallowed_cancel

log = logging.getLogger(__name__)
POLL_S = 1.0  # a listener looks up this often, so that a lost cancel still stops it


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
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True,
                                                   timeout=POLL_S)
                raise_a_swallowed_cancel()
                if message is not None:
                    await on_message(message["data"])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("subscription to %s broke (%s); resubscribing", channel, exc)
            await asyncio.sleep(retry_s)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
