"""Output for people (rich tables) and for scripts (``--json``), plus the shared value types."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from ringpool.cli.taskctl.app import Options
from ringpool.errors import ConfigError
from ringpool.ops.units import parse_duration, parse_rate
from ringpool.task import check_group


class Parsed(click.ParamType):
    """A click type for numbers written with units, parsed by ``parse``."""

    def __init__(self, name: str, parse: Callable[[str], float]) -> None:
        self.name = name
        self._parse = parse

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):
            return float(value)
        try:
            return self._parse(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


DURATION = Parsed("DURATION", parse_duration)
RATE = Parsed("N/s", parse_rate)


def group_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A click callback checking a task group name ('' : the default group)."""
    try:
        return check_group(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None


def console(stderr: bool = False) -> Console:
    """A console on the current stdout/stderr (so click's test runner captures it)."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 200  # pipes and files: wide, so ids are never cut
    return Console(file=stream, highlight=False, soft_wrap=False, width=width)


def emit(options: Options, data: Any, human: Callable[[Console], None]) -> None:
    """JSON on stdout with ``--json``, else whatever ``human`` prints."""
    if options.json:
        click.echo(json.dumps(data, indent=2, default=_default))
    else:
        human(console())


def _default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def table(*columns: str, title: str | None = None) -> Table:
    t = Table(title=title, title_justify="left", header_style="bold", box=None, pad_edge=False)
    for column in columns:
        justify = "right" if column.endswith((" ", "%")) or column in NUMERIC else "left"
        t.add_column(column.strip(), justify=justify,  # type: ignore[arg-type]
                     no_wrap=column in NO_WRAP)
    return t


NO_WRAP = frozenset({"task id", "node", "key", "address", "share", "dead-lettered"})
NUMERIC = frozenset({"share", "in-flight", "queued", "running", "count", "attempts", "keys",
                     "measured", "replays", "ring v", "attempt", "progress"})


def bar(fraction: float, width: int = 30) -> str:
    filled = max(0, min(width, round(fraction * width)))
    return "█" * filled + "·" * (width - filled)
