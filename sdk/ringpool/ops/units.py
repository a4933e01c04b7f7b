"""Durations and rates as operators type them (``90s``, ``1h30m``, ``100/s``, ``600/m``),
and times as they read them."""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNITS_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*(s|sec|m|min|h))?\s*$")
_RATE_UNITS_S = {None: 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """``90``, ``30s``, ``5m``, ``1h30m``, ``2d`` -> seconds; ValueError otherwise."""
    value = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        return float(value)
    position, total = 0, 0.0
    for match in _DURATION_PART.finditer(value):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS_S[match.group(2)]
        position = match.end()
    if not value or position != len(value):
        raise ValueError(f"{text!r} is not a duration (use e.g. 90s, 15m, 2h, 1d, 1h30m)")
    return total


def parse_rate(text: str) -> float:
    """``100/s``, ``600/m``, ``50`` -> tasks per second; ValueError otherwise."""
    match = _RATE.match(text.lower())
    if not match:
        raise ValueError(f"{text!r} is not a rate (use e.g. 100/s, 600/m)")
    rate = float(match.group(1)) / _RATE_UNITS_S[match.group(2)]
    if rate <= 0 or not math.isfinite(rate):
        raise ValueError(f"rate must be > 0, got {text!r}")
    return rate


def when(ts: float | None) -> str:
    """A timestamp for people: UTC, to the second."""
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts else None


def ago(ts: float | None, now: float | None = None) -> str:
    """How long ago ``ts`` was (``5m ago``), or how soon it comes (``in 5m``)."""
    if not ts:
        return "-"
    seconds = (now or time.time()) - ts
    span = abs(seconds)
    unit, size = next(((u, n) for u, n in (("d", 86400), ("h", 3600), ("m", 60)) if span >= n),
                      ("s", 1))
    amount = f"{span / size:.0f}{unit}"
    return f"{amount} ago" if seconds >= -0.5 else f"in {amount}"
