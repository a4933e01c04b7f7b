"""The node's local pools: one facade over the io, cpu and async tiers.

The node calls ``Pools.submit(job)`` from its event loop and awaits the returned
future; ``Outcome`` says how the task ended. ``PoolOverloaded`` is raised at once
when a tier has no room (the node answers OVERLOADED with a retry-after hint).
"""

from node.pool.facade import Job, Outcome, PoolOverloaded, Pools, PoolSettings

__all__ = ["Job", "Outcome", "PoolOverloaded", "PoolSettings", "Pools"]
