"""Run a coordinator replica: contend for leadership; while leading, fire retries, delayed
tasks and schedule ticks, and recover.

What start-up opens goes on one exit stack, so a start-up that fails half-way closes
exactly what it opened. Each term's loops run in one task group, which has ended
before the lock is given up, so two leaders never run at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import uuid
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from ringpool.cli.process import metrics_endpoint, metrics_registry, state_store, zookeeper_session
from ringpool.client.metrics import client_metrics
from ringpool.client.router import Router
from ringpool.core.membership import Membership
from ringpool.core.telemetry import configure_from_env
from ringpool.store.store import Waiting
from ringpool_coordinator.election import Leadership
from ringpool_coordinator.events import CoordinatorEvents
from ringpool_coordinator.firing import DueFirer
from ringpool_coordinator.metrics import CoordinatorMetrics
from ringpool_coordinator.recovery import Recoverer
from ringpool_coordinator.retention import DlqRetention
from ringpool_coordinator.settings import CoordinatorSettings
from ringpool_coordinator.ticker import ScheduleTicker

log = logging.getLogger(__name__)

LeaderLoop = Callable[[], Coroutine[Any, Any, None]]


async def run(settings: CoordinatorSettings) -> int:
    """Run the replica until SIGTERM or SIGINT; returns the process exit code."""
    identifier = f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
    configure_from_env("ringpool-coordinator")
    loop = asyncio.get_running_loop()
    async with contextlib.AsyncExitStack() as stack:
        zk = await stack.enter_async_context(
            zookeeper_session(settings, settings.zk_session_timeout_s))
        store = await stack.enter_async_context(state_store(
            settings.redis, settings.cluster, partitions=settings.partitions or None))
        membership = await asyncio.to_thread(Membership(zk, settings.cluster).start)
        stack.push_async_callback(asyncio.to_thread, membership.stop)
        registry = metrics_registry(settings.metrics_port)
        # Retries and delayed tasks go out through a Router on this same ZooKeeper session
        # and ring.
        router = Router(settings, membership, client_metrics(registry)).start()
        stack.push_async_callback(router.close)
        metrics = CoordinatorMetrics(store, loop, registry)
        recoverer = Recoverer(zk, store, membership, settings.max_crash_recoveries, metrics)
        retries = DueFirer(store, router, Waiting.RETRY, events=metrics)
        delays = DueFirer(store, router, Waiting.SCHEDULED, events=metrics)
        ticker = ScheduleTicker(store, metrics)
        retention = DlqRetention(store, settings.dlq_retention_s, metrics)

        def on_ring(_: object) -> None:
            loop.call_soon_threadsafe(recoverer.ring_changed)

        membership.subscribe(on_ring)
        leadership = Leadership(zk, membership.names.election, identifier)
        stack.callback(leadership.close)
        stack.push_async_callback(leadership.release)
        stack.enter_context(metrics_endpoint(settings.metrics_port))

        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
            stack.callback(loop.remove_signal_handler, sig)
        async with asyncio.TaskGroup() as tasks:
            leading = tasks.create_task(lead_when_elected(
                leadership, identifier,
                (retries.run, delays.run, ticker.run, recoverer.run, retention.run), metrics))
            await stop.wait()
            leading.cancel()
    return 0


async def lead_when_elected(leadership: Leadership, identifier: str,
                            loops: Sequence[LeaderLoop], events: CoordinatorEvents) -> None:
    """Contend; while elected, run ``loops`` until demoted; step down and contend again.

    A loop that fails ends the term (logged); the lock goes only once every loop of the
    term has stopped.
    """
    while True:
        await leadership.wait_elected()
        log.info("%s is the leader", identifier)
        events.leading(True)
        try:
            async with asyncio.TaskGroup() as term:
                running = [term.create_task(body()) for body in loops]
                await leadership.wait_demoted()
                for task in running:
                    task.cancel()
        except* Exception as failed:
            log.error("a leader loop failed; stepping down", exc_info=failed)
        finally:
            events.leading(False)
            await leadership.release()
        log.info("%s stepped down", identifier)
