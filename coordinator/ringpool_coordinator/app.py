"""Run a coordinator replica: contend for leadership; while leading, fire retries and recover."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import uuid
from dataclasses import dataclass

from prometheus_client import start_http_server

from ringpool.client.metrics import client_metrics
from ringpool.client.router import Router
from ringpool.client.settings import ClientSettings
from ringpool.core.membership import Membership, connect_zookeeper
from ringpool.core.telemetry import configure_from_env
from ringpool.core.zkacl import secure_cluster
from ringpool.store.store import StateStore
from ringpool_coordinator.election import Leadership
from ringpool_coordinator.metrics import CoordinatorMetrics
from ringpool_coordinator.recovery import Recoverer
from ringpool_coordinator.retention import DlqRetention
from ringpool_coordinator.retries import RetryFirer

log = logging.getLogger(__name__)


@dataclass
class CoordinatorSettings:
    zk: str = "127.0.0.1:2181"
    redis: str = "redis://127.0.0.1:6379/0"
    cluster: str = "default"
    token: str = ""
    metrics_port: int = 9401
    max_crash_recoveries: int = 3
    dlq_retention_s: float = 14 * 24 * 3600.0  # 0 keeps dead letters forever
    zk_session_timeout_s: float = 10.0
    zk_auth: str = ""  # USER:PASSWORD member identity when the cluster uses ZooKeeper ACLs


async def run(settings: CoordinatorSettings) -> int:
    identifier = f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
    configure_from_env("ringpool-coordinator")
    zk = await asyncio.to_thread(
        connect_zookeeper, settings.zk, settings.zk_session_timeout_s, settings.zk_auth
    )
    if settings.zk_auth:
        await asyncio.to_thread(secure_cluster, zk, settings.cluster, settings.zk_auth)
    store = StateStore.from_url(settings.redis, settings.cluster)
    membership = await asyncio.to_thread(Membership(zk, settings.cluster).start)
    # Retries go out through a Router on this same ZooKeeper session and ring.
    client = ClientSettings.resolve(settings.zk, settings.redis, settings.cluster, settings.token,
                                    zk_auth=settings.zk_auth)
    router = Router(client, membership, client_metrics()).start()
    recoverer = Recoverer(zk, store, membership, settings.max_crash_recoveries)
    firer = RetryFirer(store, router)
    retention = DlqRetention(store, settings.dlq_retention_s)
    loop = asyncio.get_running_loop()
    metrics = CoordinatorMetrics(store, firer, recoverer, retention, loop)

    def on_ring(_: object) -> None:
        loop.call_soon_threadsafe(recoverer.ring_changed)

    membership.subscribe(on_ring)
    leadership = Leadership(zk, membership.names.election, identifier)
    if settings.metrics_port:
        start_http_server(settings.metrics_port)

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stopping = asyncio.create_task(stop.wait())
    try:
        while not stop.is_set():
            elected = asyncio.create_task(leadership.wait_elected())
            await asyncio.wait({elected, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set():
                elected.cancel()
                break
            log.info("%s is the leader", identifier)
            metrics.leading = True
            loops = [asyncio.create_task(loop_body()) for loop_body in
                     (firer.run, recoverer.run, retention.run)]
            demoted = asyncio.create_task(leadership.wait_demoted())
            done, _ = await asyncio.wait(
                {demoted, stopping, *loops}, return_when=asyncio.FIRST_COMPLETED
            )
            for task in [*loops, demoted]:
                task.cancel()
            for task in loops:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                if task in done and task.exception() is not None:
                    log.error("leader loop failed", exc_info=task.exception())
            await leadership.release()  # only now: our loops have stopped
            metrics.leading = False
            log.info("%s stepped down", identifier)
    finally:
        await leadership.release()
        await router.close()
        await asyncio.to_thread(membership.stop)
        await store.close()
        await asyncio.to_thread(zk.stop)
        zk.close()
    return 0
