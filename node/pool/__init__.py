"""The node's local pools: one facade over the io, cpu and async tiers.

The node calls ``Pools.submit(job)`` from its event loop and awaits the returned
future; ``Outcome`` says how the task ended. ``PoolOverloaded`` is raised at once
when a tier has no room (the node answers OVERLOADED with a retry-after hint).
"""

from node.pool.autoscaler import AdaptivePolicy, FixedPolicy, LoadSample, ScalingPolicy
from node.pool.errors import PoolClosed, PoolOverloaded, TaskTimeout
from node.pool.facade import Pools
from node.pool.job import Job, Outcome
from node.pool.settings import AutoscalerSettings, CpuSettings, PoolSettings

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
