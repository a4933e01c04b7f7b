"""Testing helpers: run tasks in the test process, or against a real local cluster.

    from ringpool.testing import InMemoryCluster

    with InMemoryCluster(tasks=["myapp.tasks"]) as cluster:     # the Cluster API, no servers
        assert cluster.dispatch("user:42", add.s(1, 2)).result() == 3

``AsyncInMemoryCluster`` is its ``AsyncCluster`` twin. ``LocalCluster`` (real
ZooKeeper, Redis and node processes, from ``ringpool.testing.local``) is imported
on first use only. The pytest plugin (``pytest_ringpool``) gives both as fixtures:
``ringpool_cluster`` and ``ringpool_local``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ringpool.testing.async_memory import AsyncInMemoryCluster, AsyncInMemoryTaskHandle
from ringpool.testing.memory import InMemoryCluster, InMemoryTaskHandle

if TYPE_CHECKING:
    from ringpool.testing.local import LocalCluster

__all__ = [
    "AsyncInMemoryCluster",
    "AsyncInMemoryTaskHandle",
    "InMemoryCluster",
    "InMemoryTaskHandle",
    "LocalCluster",
]


def __getattr__(name: str) -> Any:
    # The launcher (subprocesses, server binaries) only for those who ask for it.
    if name == "LocalCluster":
        from ringpool.testing.local import LocalCluster

        return LocalCluster
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
