"""The JSON codec for task arguments and results: the only codec on the wire.

Nothing is ever unpickled: a payload is JSON or it is refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ringpool.errors import InvalidTask

CODEC = "json"

_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encode(value: Any) -> bytes:
    """JSON bytes for ``value``; InvalidTask names what could not be encoded."""
    try:
        return _encoder.encode(value).encode()
    except (TypeError, ValueError) as exc:
        raise InvalidTask(f"not JSON-serialisable: {exc}") from None
    except RecursionError:
        raise InvalidTask("not JSON-serialisable: nested too deeply") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode(data: bytes) -> Any:
    """The value of JSON ``data``; InvalidTask for anything else (NaN and Infinity too).

    Nesting deep enough to exhaust the stack is refused like any other bad JSON.
    """
    try:
        return json.loads(data, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidTask(f"payload is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidTask("payload is not valid JSON: nested too deeply") from None


def encode_call(args: tuple[Any, ...] | list[Any], kwargs: Mapping[str, Any]) -> bytes:
    return encode({"args": list(args), "kwargs": dict(kwargs)})


def decode_call(data: bytes) -> tuple[list[Any], dict[str, Any]]:
    """The (args, kwargs) of a payload; InvalidTask for anything of the wrong shape."""
    call = decode(data)
    if not isinstance(call, dict) or set(call) - {"args", "kwargs"}:
        raise InvalidTask("payload must be an object with 'args' and 'kwargs'")
    args = call.get("args", [])
    kwargs = call.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise InvalidTask("'args' must be a list and 'kwargs' an object")
    return args, kwargs
