"""Local worker pools: one facade over the io, cpu and async tiers.

They run a node's tasks, and the same code runs them in the in-process test cluster
(``ringpool.testing``), so a task behaves alike in both. The node calls
``Pools.submit(job)`` from its event loop and awaits the returned future;
``Outcome`` says how the task ended. ``PoolOverloaded`` is raised at once when a
tier has no room (the node answers OVERLOADED with a retry-after hint).
"""

from ringpool.pool.autoscaler import AdaptivePolicy, FixedPolicy, LoadSample, ScalingPolicy
from ringpool.pool.errors import PoolClosed, PoolOverloaded, TaskTimeout
from ringpool.pool.facade import Pools
from ringpool.pool.job import Job, Outcome
from ringpool.pool.settings import AutoscalerSettings, CpuSettings, PoolSettings

__all__ = [
    "AdaptivePolicy",
    "AutoscalerSettings",
    "CpuSettings",
    "FixedPolicy",
    "Job",
    "LoadSample",
    "Outcome",
    "PoolClosed",
    "PoolOverloaded",
    "PoolSettings",
    "Pools",
    "ScalingPolicy",
    "TaskTimeout",
]
