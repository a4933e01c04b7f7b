"""What the node tells the world about itself: its gRPC health, and its place in the ring.

One loop, every ``CHECK_INTERVAL_S``:

- **Redis.** A ping on a connection of its own (no retries, a short timeout). With no
  answer for ``redis_lost_after_s`` the node steps out of the ring: it stops taking
  tasks, and the coordinator recovers what it held without counting a crash (the node
  could not record their outcomes anyway). At the first answer after that it registers
  again, with a new epoch, and reclaims what it held before.
- **The io pool.** Once it is wedged (``max_abandoned`` io threads still running past
  their deadline), the node drains and exits with ``EXIT_WEDGED``, for its supervisor
  to start a fresh process (gunicorn's worker-timeout model).
- **Health.** SERVING exactly while the node takes tasks: registered and not draining.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from grpc_health.v1 import health, health_pb2

from ringpool.store.store import StateStore
from ringpool.v1 import node_pb2 as pb
from ringpool_node.core import Node
from ringpool_node.registration import Registration

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Node"].full_name
CHECK_INTERVAL_S = 0.5
PING_TIMEOUT_S = 1.0
EXIT_WEDGED = 3  # the exit code after a drain for a wedged io pool


async def set_health(servicer: health.aio.HealthServicer, serving: bool) -> None:
    status = (health_pb2.HealthCheckResponse.SERVING if serving
              else health_pb2.HealthCheckResponse.NOT_SERVING)
    for name in ("", SERVICE_NAME):
        await servicer.set(name, status)


class Health:
    def __init__(
        self,
        servicer: health.aio.HealthServicer,
        node: Node,
        registration: Registration,
        probe: StateStore,
        redis_lost_after_s: float,
        request_drain: Callable[[float, int], None],
    ) -> None:
        self.servicer = servicer
        self.node = node
        self.registration = registration
        self.probe = probe  # its own connection: no retries to wait through
        self.redis_lost_after_s = redis_lost_after_s
        self._request_drain = request_drain
        self.away = False  # out of the ring for want of Redis
        self._serving: bool | None = None
        self._wedged = False

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        last_answer = loop.time()
        while True:
            if self.node.pools.wedged and not self._wedged:
                self._wedged = True
                log.error("the io pool is wedged (%d threads still running past their "
                          "deadline): draining, then exiting for a fresh process",
                          self.node.pools.stats()["io"]["abandoned"])
                self._request_drain(0.0, EXIT_WEDGED)
            answered = await self._ping()
            if answered:
                last_answer = loop.time()
            if not self.away and not self.node.draining \
                    and loop.time() - last_answer >= self.redis_lost_after_s:
                log.error("no answer from Redis for %.0fs: leaving the ring until it answers",
                          loop.time() - last_answer)
                self.away = True
                await asyncio.to_thread(self.registration.step_out)
            elif self.away and answered and not self.node.draining:
                log.info("Redis answers again: joining the ring")
                self.away = False
                await asyncio.to_thread(self.registration.step_in)
            await self.show(self.node.serving)
            await asyncio.sleep(CHECK_INTERVAL_S)

    async def show(self, serving: bool) -> None:
        """Tell health checks; only when it changed."""
        if serving != self._serving:
            self._serving = serving
            await set_health(self.servicer, serving)

    async def _ping(self) -> bool:
        try:
            async with asyncio.timeout(PING_TIMEOUT_S):
                await self.probe.ping()
        except Exception:
            return False
        return True
