"""The store's Lua scripts (``lua/``), registered on a Redis client."""

from __future__ import annotations

from importlib import resources

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript


def script(client: aioredis.Redis, *names: str) -> AsyncScript:
    """The scripts ``names`` (``lua/<name>.lua``) joined into one, registered on ``client``:
    a script may start with shared code (``summary`` for the listings)."""
    text = "".join(resources.files(__package__).joinpath(f"lua/{name}.lua").read_text()
                   for name in names)
    return client.register_script(text)
