"""Start the dashboard: connect, keep the live view polling, serve HTTP(S) until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator

import uvicorn
from prometheus_client import CollectorRegistry

from ringpool.cli.process import state_store
from ringpool.client.metrics import client_metrics
from ringpool.client.router import Router
from ringpool.core.membership import Membership, connect_zookeeper
from ringpool.dashboard.app import Dashboard, create_app
from ringpool.dashboard.jobs import Jobs
from ringpool.dashboard.live import ClusterView
from ringpool.dashboard.settings import DashboardSettings, parse_listen

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def open_dashboard(settings: DashboardSettings) -> AsyncIterator[Dashboard]:
    """Connections, the live view's poller and the job runner; all closed on exit."""
    async with contextlib.AsyncExitStack() as stack:
        zk = await asyncio.to_thread(connect_zookeeper, settings.zk,
                                     settings.zk_session_timeout_s, settings.zk_auth,
                                     settings.zk_operator_auth)
        stack.callback(zk.close)
        stack.push_async_callback(asyncio.to_thread, zk.stop)
        store = await stack.enter_async_context(state_store(settings.redis, settings.cluster))
        senders: list[Router] = []
        lock = asyncio.Lock()

        async def sender() -> Router:
            """The Router replays go through, on this ZooKeeper session, started on first use."""
            async with lock:
                if not senders:
                    membership = await asyncio.to_thread(Membership(zk, settings.cluster).start)
                    stack.push_async_callback(asyncio.to_thread, membership.stop)
                    senders.append(Router(settings, membership,
                                          client_metrics(CollectorRegistry())).start())
                    stack.push_async_callback(senders[0].close)
                return senders[0]

        view = ClusterView(zk, store, settings, settings.poll_interval_s)
        jobs = Jobs(store, sender)
        stack.push_async_callback(jobs.close)
        poller = asyncio.create_task(view.run(), name="dashboard-poller")

        async def stop_poller() -> None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller

        stack.push_async_callback(stop_poller)
        yield Dashboard(settings, zk, store, view, jobs)


async def serve(settings: DashboardSettings) -> int:
    """Serve until SIGTERM or SIGINT; returns the exit code."""
    host, port = parse_listen(settings.listen)
    async with open_dashboard(settings) as dashboard:
        config = uvicorn.Config(
            create_app(dashboard), host=host, port=port, lifespan="off", log_level="warning",
            ssl_certfile=settings.server_tls_cert or None,
            ssl_keyfile=settings.server_tls_key or None, proxy_headers=False,
            server_header=False, timeout_graceful_shutdown=5)
        server = uvicorn.Server(config)
        scheme = "https" if settings.tls else "http"
        log.info("dashboard of cluster %s on %s://%s", settings.cluster, scheme, settings.listen)
        # uvicorn raises the signal that stopped it again once it has shut down; with these
        # handlers in place the process then closes its connections and exits 0.
        previous = {sig: signal.signal(sig, _ignore) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            await server.serve()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return 0


def _ignore(sig: int, frame: object) -> None:
    """A signal uvicorn has already acted on."""
