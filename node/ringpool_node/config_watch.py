"""Live config: watch the cluster's config znode and apply each good version at once.

kazoo calls the watch on its own thread; the watch only hands the bytes to the
event loop, which parses them with ``ringpool.core.config`` and applies them: io pool
bounds (``Pools.tune``), autoscaler weights, retry defaults for tasks that declare
none, the payload limit, the fingerprint and result TTLs, the accept durability
(the last two fall back to the node's own flags where the config leaves them empty)
and tasks' cluster-wide rate limits. A config that does not parse is logged, counted
in ``ringpool_config_errors_total`` and ignored: the last good one stays. A missing
znode changes nothing (the node's own flags stay in force).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

from kazoo.client import KazooClient
from kazoo.protocol.states import ZnodeStat

from ringpool.core import config as schema
from ringpool.core.config import ClusterConfig
from ringpool.core.naming import Names
from ringpool.errors import ConfigError
from ringpool.store.durability import AcceptDurability
from ringpool_node.core import Node

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class OwnSettings:
    """The node's own values of what the config may leave to each node."""

    result_ttl_s: int
    accept_durability: AcceptDurability


def apply_config(node: Node, config: ClusterConfig, own: OwnSettings) -> None:
    """Apply ``config`` to a running node; raises ConfigError (nothing changed) if it cannot."""
    pool = config.pool
    node.pools.tune(pool.min_workers, pool.max_workers)  # validates before it changes anything
    weights = config.autoscaler
    node.pools.reconfigure(
        idle_timeout_s=pool.idle_timeout_s,
        weights=(weights.arrival_weight, weights.queue_weight, weights.gc_weight),
    )
    node.execution.default_retry = config.retry.policy()
    node.limits = dataclasses.replace(node.limits, max_payload_bytes=config.limits.max_payload_bytes)
    store = node.store
    store.fingerprint_ttl_s = config.fingerprint_ttl_s
    store.result_ttl_s = config.result_ttl_s or own.result_ttl_s
    durability = AcceptDurability(config.accept_durability or own.accept_durability)
    if durability is not store.durability:
        store.durability = durability
        log.info("accept durability is now %s", durability.value)
    node.execution.rates.overrides = dict(config.rate_limits)
    node.execution.rates.changed()


class ConfigWatch:
    def __init__(self, zk: KazooClient, cluster: str, node: Node) -> None:
        self.zk = zk
        self.path = Names(cluster).config
        self.node = node
        self.own = OwnSettings(node.store.result_ttl_s, node.store.durability)
        self.events = node.events
        self.version = schema.MISSING_VERSION  # the znode version in force
        self.config: ClusterConfig | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped = False

    def start(self) -> ConfigWatch:
        """Watch from now on (call on the event loop); the current content is applied first."""
        self._loop = asyncio.get_running_loop()
        self.zk.DataWatch(self.path, self._on_change)
        return self

    def stop(self) -> None:
        self._stopped = True

    def _on_change(self, data: bytes | None, stat: ZnodeStat | None, *_: Any) -> bool | None:
        # kazoo's thread: hand over and return; returning False ends the watch.
        if self._stopped:
            return False
        if stat is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self.apply, data or b"", stat.version)
        return None

    def apply(self, data: bytes, version: int) -> bool:
        """Parse and apply one version of the znode; False (and the old config) if refused."""
        if version == self.version:
            return True
        try:
            config = schema.parse(data)
            apply_config(self.node, config, self.own)
        except ConfigError as exc:
            log.error("config version %d refused, keeping version %d: %s", version, self.version, exc)
            self.events.config_refused(version)
            return False
        except Exception:
            log.exception("config version %d could not be applied", version)
            self.events.config_refused(version)
            return False
        self.version, self.config = version, config
        log.info("config version %d applied: pool %d-%d workers", version,
                 config.pool.min_workers, config.pool.max_workers)
        self.events.config_applied(version)
        return True
