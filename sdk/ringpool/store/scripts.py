"""The store's Lua scripts (``lua/``), registered on a Redis client."""

from __future__ import annotations

from importlib import resources

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript


def script(client: aioredis.Redis, *names: str) -> AsyncScript:
    """The scripts ``names`` (``lua/<name>.lua``) joined into one, registered on ``client``,
    with the helpers every script shares (``lua/lib.lua``: Redis' clock) in front. A script
    may start with more shared code (``summary`` for the listings)."""
    lua = resources.files(__package__).joinpath("lua")
    text = "".join(lua.joinpath(f"{name}.lua").read_text() for name in ("lib", *names))
    return client.register_script(text)
