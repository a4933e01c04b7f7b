"""The cluster config: schema, validation and the ZooKeeper znode that holds it.

The config lives as JSON at ``/ringpool/<cluster>/config``, nested by section::

    {"pool": {"min_workers": 4, "max_workers": 32, "idle_timeout_s": 10.0},
     "autoscaler": {"arrival_weight": 0.4, "queue_weight": 0.35, "gc_weight": 0.25},
     "retry": {"max_retries": 3, "base_s": 1.0, "factor": 2.0, "cap_s": 300.0},
     "limits": {"max_payload_bytes": 1048576},
     "fingerprint_ttl_s": 86400, "result_ttl_s": 0, "accept_durability": "",
     "rate_limits": {"billing.charge": 100.0}}

Keys left out take their defaults; unknown keys are refused. Operators name keys
with dots (``pool.max_workers``); a task's cluster-wide rate limit is
``rate_limits.<task name>``, in starts per second (``0``: unlimited), and overrides the
``rate_limit`` the task declares (typed as ``100/s``, ``600/m``, ``unlimited``, or
``declared`` to drop the override). Every check raises ``ConfigError`` with the
reason. Writes validate first and use the znode version as a compare-and-set, so
two concurrent writers never silently overwrite each other.

This module imports nothing from ``node`` or ``coordinator``: both read it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, NoAuthError, NodeExistsError, NoNodeError
from kazoo.security import ACL, OPEN_ACL_UNSAFE

from ringpool.core.naming import Names
from ringpool.errors import ConfigError
from ringpool.task import MAX_RESULT_TTL_S, MAX_RETRIES_LIMIT, RetryPolicy, parse_rate

MIB = 1024 * 1024
MAX_PAYLOAD_LIMIT = 64 * MIB
MAX_FINGERPRINT_TTL_S = 31 * 24 * 3600
ACCEPT_DURABILITIES = ("memory", "replica", "aof")  # ringpool.store.durability
MISSING_VERSION = -1  # the version ``read_config`` reports when the znode does not exist
RATE_LIMITS = "rate_limits"
RATE_PREFIX = f"{RATE_LIMITS}."
UNLIMITED = "unlimited"  # a rate limit's value that lifts the task's declared limit
DECLARED = "declared"  # a rate limit's value that drops the override: the declared one holds
MAX_RATE_LIMITS = 1000


class ConfigConflict(ConfigError):
    """The znode changed between our read and our write (compare-and-set lost)."""


@dataclass(frozen=True)
class PoolConfig:
    min_workers: int = 4
    max_workers: int = 32
    idle_timeout_s: float = 10.0


@dataclass(frozen=True)
class AutoscalerConfig:
    arrival_weight: float = 0.40
    queue_weight: float = 0.35
    gc_weight: float = 0.25


_RETRY_DEFAULTS = RetryPolicy()


@dataclass(frozen=True)
class RetryConfig:
    """The cluster's ``RetryPolicy`` for tasks that declare none: its tunable fields."""

    max_retries: int = _RETRY_DEFAULTS.max_retries
    base_s: float = _RETRY_DEFAULTS.base_s
    factor: float = _RETRY_DEFAULTS.factor
    cap_s: float = _RETRY_DEFAULTS.cap_s

    def policy(self) -> RetryPolicy:
        return RetryPolicy(max_retries=self.max_retries, base_s=self.base_s, factor=self.factor,
                           cap_s=self.cap_s)


@dataclass(frozen=True)
class LimitsConfig:
    max_payload_bytes: int = MIB


@dataclass(frozen=True)
class ClusterConfig:
    """One cluster's tunables; build with ``parse`` or ``ClusterConfig().with_values``."""

    pool: PoolConfig = field(default_factory=PoolConfig)
    autoscaler: AutoscalerConfig = field(default_factory=AutoscalerConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    fingerprint_ttl_s: int = 86400
    result_ttl_s: int = 0  # 0: each node's --result-ttl
    accept_durability: str = ""  # "": each node's --accept-durability
    # Task name -> cluster-wide starts per second (0: unlimited), over the declared limit.
    rate_limits: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The nested JSON form stored in the znode."""
        return asdict(self)

    def flat(self) -> dict[str, Any]:
        """Dotted key -> value, in schema order, then each rate limit by task name."""
        return {**{key: self.get(key) for key in KEYS},
                **{RATE_PREFIX + name: rate for name, rate in sorted(self.rate_limits.items())}}

    def get(self, key: str) -> Any:
        """The value of dotted ``key`` (None for a task without a rate limit here);
        ConfigError for a key the schema does not have."""
        if key.startswith(RATE_PREFIX):
            return self.rate_limits.get(rate_limit_task(key))
        _spec(key)
        value: Any = self
        for part in key.split("."):
            value = getattr(value, part)
        return value

    def with_values(self, values: Mapping[str, Any]) -> ClusterConfig:
        """A validated copy with dotted keys set (values already typed, or strings to parse)."""
        data = self.to_dict()
        for key, raw in values.items():
            if key.startswith(RATE_PREFIX):
                rate = rate_limit_value(key, raw)
                if rate is None:
                    data[RATE_LIMITS].pop(rate_limit_task(key), None)
                else:
                    data[RATE_LIMITS][rate_limit_task(key)] = rate
                continue
            spec = _spec(key)
            value = spec.coerce(raw) if isinstance(raw, str) else raw
            section, _, name = key.rpartition(".")
            target = data[section] if section else data
            target[name] = value
        return parse(data)


@dataclass(frozen=True)
class _Spec:
    kind: type  # int, float, or str (one of ``choices``)
    low: float = 0
    high: float = 0
    choices: tuple[str, ...] = ()

    def check(self, key: str, value: Any) -> int | float | str:
        if self.kind is str:
            if value not in self.choices:
                shown = ", ".join(repr(c) for c in self.choices)
                raise ConfigError(f"{key} must be one of {shown}, got {value!r}")
            return str(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key} must be {_kind_name(self.kind)}, got {value!r}")
        if self.kind is int and not isinstance(value, int):
            if not (isinstance(value, float) and value.is_integer()):
                raise ConfigError(f"{key} must be an integer, got {value!r}")
            value = int(value)
        if not math.isfinite(value) or not self.low <= value <= self.high:
            raise ConfigError(f"{key} must be in [{_num(self.low)}, {_num(self.high)}], "
                              f"got {value!r}")
        return self.kind(value)  # type: ignore[no-any-return]

    def coerce(self, text: str) -> int | float | str:
        """A value typed on a command line: ``64``, ``0.5``, ``1e6``, ``replica``."""
        if self.kind is str:
            return text
        try:
            value: Any = json.loads(text)
        except ValueError:
            raise ConfigError(f"{text!r} is not a number") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{text!r} is not a number")
        return value  # type: ignore[no-any-return]


def _kind_name(kind: type) -> str:
    return "an integer" if kind is int else "a number"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


SCHEMA: dict[str, _Spec] = {
    "pool.min_workers": _Spec(int, 0, 10_000),
    "pool.max_workers": _Spec(int, 1, 10_000),
    "pool.idle_timeout_s": _Spec(float, 0.001, 86_400),
    "autoscaler.arrival_weight": _Spec(float, 0, 1_000),
    "autoscaler.queue_weight": _Spec(float, 0, 1_000),
    "autoscaler.gc_weight": _Spec(float, 0, 1_000),
    "retry.max_retries": _Spec(int, 0, MAX_RETRIES_LIMIT),
    "retry.base_s": _Spec(float, 0, 86_400),
    "retry.factor": _Spec(float, 1, 100),
    "retry.cap_s": _Spec(float, 0, 7 * 86_400),
    "limits.max_payload_bytes": _Spec(int, 1, MAX_PAYLOAD_LIMIT),
    "fingerprint_ttl_s": _Spec(int, 1, MAX_FINGERPRINT_TTL_S),
    "result_ttl_s": _Spec(int, 0, MAX_RESULT_TTL_S),
    "accept_durability": _Spec(str, choices=("", *ACCEPT_DURABILITIES)),
}
KEYS: tuple[str, ...] = tuple(SCHEMA)
DESCRIPTIONS: dict[str, str] = {
    "pool.min_workers": "io pool: threads kept when idle",
    "pool.max_workers": "io pool: most threads the autoscaler may start",
    "pool.idle_timeout_s": "io pool: an idle thread above the minimum exits after this",
    "autoscaler.arrival_weight": "load score weight of the arrival rate",
    "autoscaler.queue_weight": "load score weight of the queue depth",
    "autoscaler.gc_weight": "load score weight of GC pressure",
    "retry.max_retries": "default retries for tasks that declare none",
    "retry.base_s": "backoff ceiling after the first failure",
    "retry.factor": "backoff growth per failed attempt",
    "retry.cap_s": "longest backoff",
    "limits.max_payload_bytes": "largest encoded task arguments a node accepts",
    "fingerprint_ttl_s": "how long an idempotency fingerprint is remembered",
    "result_ttl_s": "how long a finished task's result is kept (0: each node's --result-ttl)",
    "accept_durability": "when an accept is acknowledged: memory, replica (WAIT 1) or aof "
                         "(on disk); empty: each node's --accept-durability",
}
_SECTIONS: dict[str, type] = {
    "pool": PoolConfig, "autoscaler": AutoscalerConfig, "retry": RetryConfig,
    "limits": LimitsConfig,
}


def check_value(key: str, value: Any) -> int | float | str | None:
    """One dotted key's value checked alone (type and range); strings are parsed first."""
    if key.startswith(RATE_PREFIX):
        return rate_limit_value(key, value)
    spec = _spec(key)
    return spec.check(key, spec.coerce(value) if isinstance(value, str) else value)


def rate_limit_task(key: str) -> str:
    """The task name of a ``rate_limits.<task name>`` key."""
    name = key.removeprefix(RATE_PREFIX)
    if not name or len(name) > 200:
        raise ConfigError(f"{key!r}: name a task of 1-200 characters after {RATE_PREFIX!r}")
    return name


def rate_limit_value(key: str, value: Any) -> float | None:
    """A rate limit as stored (starts per second, 0: unlimited), or None to drop it; from
    ``100/s``, ``600/m``, ``unlimited``, ``declared`` or a number."""
    rate_limit_task(key)
    if value is None or (isinstance(value, str) and value.strip().lower() == DECLARED):
        return None
    if isinstance(value, str) and value.strip().lower() == UNLIMITED:
        return 0.0
    if not isinstance(value, str) and not isinstance(value, bool) \
            and isinstance(value, int | float) and value == 0:
        return 0.0
    try:
        return parse_rate(value)
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc}; or '{UNLIMITED}', or '{DECLARED}' for the task's "
                          "own") from None


def describe(key: str) -> str:
    """What a dotted key means."""
    if key.startswith(RATE_PREFIX):
        return (f"cluster-wide starts per second of {rate_limit_task(key)} "
                "(over its declared rate_limit; 0: unlimited)")
    _spec(key)
    return DESCRIPTIONS[key]


def _spec(key: str) -> _Spec:
    spec = SCHEMA.get(key)
    if spec is None:
        raise ConfigError(f"unknown config key {key!r}; known keys: {', '.join(KEYS)}")
    return spec


def parse(data: Mapping[str, Any] | str | bytes) -> ClusterConfig:
    """A validated config from the znode's JSON (or its decoded mapping)."""
    if isinstance(data, str | bytes):
        if not data.strip():
            return ClusterConfig()
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise ConfigError(f"config is not valid JSON: {exc}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"config must be a JSON object, got {type(data).__name__}")
    top: dict[str, Any] = {}
    for name, value in data.items():
        if name == RATE_LIMITS:
            top[name] = _rate_limits(value)
        elif name in _SECTIONS:
            if not isinstance(value, Mapping):
                raise ConfigError(f"config section {name!r} must be an object")
            section = _SECTIONS[name]
            known = {f.name for f in fields(section)}
            values = {}
            for key, item in value.items():
                if key not in known:
                    raise ConfigError(f"unknown config key '{name}.{key}'")
                values[key] = SCHEMA[f"{name}.{key}"].check(f"{name}.{key}", item)
            top[name] = section(**values)
        elif name in SCHEMA:
            top[name] = SCHEMA[name].check(name, value)
        else:
            raise ConfigError(f"unknown config key '{name}'")
    return validate(ClusterConfig(**top))


def _rate_limits(value: Any) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"config section {RATE_LIMITS!r} must be an object")
    if len(value) > MAX_RATE_LIMITS:
        raise ConfigError(f"at most {MAX_RATE_LIMITS} rate limits, got {len(value)}")
    limits = {}
    for name, rate in value.items():
        key = RATE_PREFIX + str(name)
        if isinstance(rate, str) or rate is None:
            raise ConfigError(f"{key} must be a number of starts per second, got {rate!r}")
        checked = rate_limit_value(key, rate)
        assert checked is not None
        limits[str(name)] = checked
    return limits


def validate(config: ClusterConfig) -> ClusterConfig:
    """Check every value and the rules between values; returns ``config`` unchanged."""
    for key in KEYS:
        SCHEMA[key].check(key, config.get(key))
    _rate_limits(config.rate_limits)
    pool = config.pool
    if pool.min_workers > pool.max_workers:
        raise ConfigError(f"pool.min_workers ({pool.min_workers}) must be <= "
                          f"pool.max_workers ({pool.max_workers})")
    weights = config.autoscaler
    if weights.arrival_weight + weights.queue_weight + weights.gc_weight <= 0:
        raise ConfigError("autoscaler weights must not all be zero")
    if config.retry.cap_s < config.retry.base_s:
        raise ConfigError(f"retry.cap_s ({config.retry.cap_s}) must be >= "
                          f"retry.base_s ({config.retry.base_s})")
    return config


def dumps(config: ClusterConfig) -> bytes:
    data = validate(config).to_dict()
    if not data[RATE_LIMITS]:
        del data[RATE_LIMITS]  # a config without rate limits reads as it did before them
    return json.dumps(data, indent=2, sort_keys=False).encode()


# -- the znode -----------------------------------------------------------------------


@dataclass(frozen=True)
class StoredConfig:
    """A config as read from ZooKeeper; ``version`` is -1 when the znode does not exist."""

    config: ClusterConfig
    version: int

    @property
    def exists(self) -> bool:
        return self.version != MISSING_VERSION


def read_config(client: KazooClient, cluster: str) -> StoredConfig:
    """The cluster's config (defaults when the znode is missing) and its znode version."""
    path = Names(cluster).config
    try:
        data, stat = client.get(path)
    except NoNodeError:
        return StoredConfig(ClusterConfig(), MISSING_VERSION)
    return StoredConfig(parse(data), stat.version)


def write_config(
    client: KazooClient, cluster: str, config: ClusterConfig, expected_version: int
) -> int:
    """Validate and store ``config`` if the znode is still at ``expected_version``.

    ``expected_version`` is what ``read_config`` reported (-1: the znode must not
    exist yet). Returns the new version; ConfigError when the config is invalid or
    somebody else wrote in between (re-read and try again).
    """
    data = dumps(config)
    path = Names(cluster).config
    try:
        if expected_version == MISSING_VERSION:
            # The root stays open here; a node or coordinator with --zk-auth tightens it.
            client.ensure_path(Names(cluster).zk_root, acl=OPEN_ACL_UNSAFE)
            client.create(path, data)  # with the client's default ACL (ringpool.core.zkacl)
            return 0
        version = int(client.set(path, data, version=expected_version).version)
        if client.default_acl and client.default_acl != OPEN_ACL_UNSAFE:
            _tighten(client, path, list(client.default_acl))
        return version
    except (BadVersionError, NodeExistsError, NoNodeError):
        raise ConfigConflict("the config changed while it was being written; "
                          "read it again and retry") from None
    except NoAuthError:
        raise ConfigError(f"not allowed to write {path}: the config is protected by a "
                          "ZooKeeper ACL; pass the operator identity "
                          "(taskctl --zk-operator-auth USER:PASSWORD)") from None


def _tighten(client: KazooClient, path: str, acl: list[ACL]) -> None:
    """Give an existing config znode our ACL (one created before ACLs were on is open)."""
    current, _ = client.get_acls(path)
    if sorted(map(repr, current)) != sorted(map(repr, acl)):
        client.set_acls(path, acl)


def update_config(
    client: KazooClient,
    cluster: str,
    change: Callable[[ClusterConfig], ClusterConfig],
    attempts: int = 5,
) -> StoredConfig:
    """Read, ``change`` and write with compare-and-set, retrying lost races."""
    for attempt in range(attempts):
        current = read_config(client, cluster)
        updated = validate(change(current.config))
        try:
            version = write_config(client, cluster, updated, current.version)
        except ConfigConflict:
            if attempt == attempts - 1:
                raise
            continue
        return StoredConfig(updated, version)
    raise AssertionError("unreachable")


__all__ = [
    "KEYS",
    "SCHEMA",
    "AutoscalerConfig",
    "ClusterConfig",
    "ConfigConflict",
    "LimitsConfig",
    "PoolConfig",
    "RetryConfig",
    "StoredConfig",
    "check_value",
    "describe",
    "parse",
    "read_config",
    "update_config",
    "validate",
    "write_config",
]
