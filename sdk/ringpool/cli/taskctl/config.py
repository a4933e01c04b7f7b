"""``config get [KEY]`` and ``config set KEY=VALUE...``: the cluster config znode.

Besides the fixed keys, ``rate_limits.<task name>`` sets a task's cluster-wide rate
limit (``100/s``, ``600/m``, ``unlimited``; ``declared`` drops it again).
"""

from __future__ import annotations

import asyncio
from typing import Any

import click
from rich.console import Console

from ringpool.cli.taskctl.app import EXIT_USAGE, Session, fail, options_of, run
from ringpool.cli.taskctl.output import emit, table
from ringpool.core import config as schema
from ringpool.core.config import ClusterConfig, StoredConfig
from ringpool.ops.units import show_rate_limit

DEFAULTS = ClusterConfig().flat()


def _show(value: Any, key: str = "") -> str:
    if key.startswith(schema.RATE_PREFIX):
        return show_rate_limit(value)
    return f"{value:g}" if isinstance(value, float) else str(value)


@click.group()
def config() -> None:
    """Read and change the cluster config (validated before it is written)."""


@config.command("get")
@click.argument("key", required=False)
@click.pass_context
def get(ctx: click.Context, key: str | None) -> None:
    """Print the whole config, or the value of one dotted KEY (e.g. pool.max_workers)."""
    options = options_of(ctx)
    if key is not None:
        ClusterConfig().get(key)  # an unknown key is refused before connecting

    async def body(session: Session) -> StoredConfig:
        zk = await session.zk()
        return await asyncio.to_thread(schema.read_config, zk, options.cluster)

    stored = run(options, body)
    if key is not None:
        value = stored.config.get(key)
        if options.json:
            emit(options, {"key": key, "value": value, "version": stored.version}, print)
        else:
            click.echo(_show(value, key))
        return
    data = {"cluster": options.cluster, "version": stored.version, "stored": stored.exists,
            "config": stored.config.to_dict(), "values": stored.config.flat()}

    def human(out: Console) -> None:
        where = f"znode version {stored.version}" if stored.exists else "not stored yet: defaults"
        out.print(f"[bold]config[/bold] of cluster {options.cluster} ({where})")
        t = table("key", "value", "default", "meaning")
        for name, value in stored.config.flat().items():
            default = DEFAULTS.get(name)
            changed = value != default
            shown = _show(value, name)
            t.add_row(name, f"[bold yellow]{shown}[/bold yellow]" if changed else shown,
                      _show(default, name), schema.describe(name))
        out.print(t)

    emit(options, data, human)


@config.command("set")
@click.argument("assignments", nargs=-1, required=True, metavar="KEY=VALUE...")
@click.pass_context
def set_(ctx: click.Context, assignments: tuple[str, ...]) -> None:
    """Change config values; all are validated together before anything is written."""
    options = options_of(ctx)
    values: dict[str, str] = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():  # an empty VALUE: e.g. accept_durability= (unset)
            fail(f"expected KEY=VALUE, got {item!r}", EXIT_USAGE)
        values[key.strip()] = value.strip()
    for key, value in values.items():
        schema.check_value(key, value)  # unknown keys, types and ranges, before connecting

    async def body(session: Session) -> tuple[StoredConfig, StoredConfig]:
        zk = await session.zk()
        before = await asyncio.to_thread(schema.read_config, zk, options.cluster)
        after = await asyncio.to_thread(
            schema.update_config, zk, options.cluster, lambda c: c.with_values(values)
        )
        return before, after

    before, after = run(options, body)
    changes = {k: {"old": before.config.get(k), "new": after.config.get(k)} for k in values}
    data = {"cluster": options.cluster, "version": after.version, "changed": changes,
            "config": after.config.to_dict()}

    def human(out: Console) -> None:
        out.print(f"config of cluster {options.cluster} stored (znode version {after.version})")
        for key, change in changes.items():
            out.print(f"  {key}: {_show(change['old'], key)} -> {_show(change['new'], key)}")

    emit(options, data, human)
