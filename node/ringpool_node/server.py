"""Start a node: load tasks, connect, serve gRPC, register; on SIGTERM drain and exit."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import signal
import socket
import threading
import time
from pathlib import Path

import grpc
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ringpool.cli.process import (
    STARTUP_TIMEOUT_S,
    metrics_endpoint,
    metrics_registry,
    state_store,
    zookeeper_session,
)
from ringpool.core.membership import Membership
from ringpool.core.naming import Names, check_node_id
from ringpool.errors import ConfigError
from ringpool.pool import Pools
from ringpool.task import REGISTRY
from ringpool.v1 import node_pb2 as pb
from ringpool.v1 import node_pb2_grpc as pb_grpc
from ringpool_node.auth import TokenAuth
from ringpool_node.config_watch import ConfigWatch
from ringpool_node.core import Node
from ringpool_node.metrics import NodeMetrics, instrument, probe_zookeeper
from ringpool_node.registration import Registration
from ringpool_node.service import NodeService
from ringpool_node.settings import NodeSettings

log = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Node"].full_name


def load_task_modules(modules: tuple[str, ...]) -> None:
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"cannot import task module {module!r}: {exc}") from None


def server_credentials(settings: NodeSettings) -> grpc.ServerCredentials | None:
    if not (settings.server_tls_cert or settings.server_tls_key):
        if settings.server_tls_client_ca:
            raise ConfigError("--server-tls-client-ca needs --server-tls-cert and --server-tls-key")
        return None
    if not (settings.server_tls_cert and settings.server_tls_key):
        raise ConfigError("--server-tls-cert and --server-tls-key go together")
    try:
        cert, key = (Path(settings.server_tls_cert).read_bytes(),
                     Path(settings.server_tls_key).read_bytes())
        ca = (Path(settings.server_tls_client_ca).read_bytes()
              if settings.server_tls_client_ca else None)
    except OSError as exc:
        raise ConfigError(f"cannot read the node's TLS files: {exc}") from None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=ca is not None,
    )


def advertised_address(settings: NodeSettings, port: int) -> str:
    if settings.advertise:
        return settings.advertise
    host = settings.listen.rsplit(":", 1)[0].strip("[]")
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostbyname(socket.gethostname())
    return f"{host}:{port}"


async def serve(settings: NodeSettings) -> int:
    """Run the node until it is told to stop; returns the process exit code.

    What start-up opens goes on one exit stack and the node's loops run in one task
    group, so a start-up that fails half-way closes exactly what it opened (in reverse
    order, the member znode with the session), and no loop outlives the node.
    """
    check_node_id(settings.node_id)
    load_task_modules(settings.tasks)
    credentials = server_credentials(settings)
    names = Names(settings.cluster)
    loop = asyncio.get_running_loop()
    metrics = NodeMetrics(metrics_registry(settings.metrics_port))
    drain_requested = asyncio.Event()
    drain_timeout_s = settings.drain_timeout_s

    def request_drain(timeout_s: float = 0.0) -> None:
        nonlocal drain_timeout_s
        if timeout_s > 0:
            drain_timeout_s = timeout_s
        loop.call_soon_threadsafe(drain_requested.set)

    async with contextlib.AsyncExitStack() as stack:
        zk = await stack.enter_async_context(
            zookeeper_session(settings, settings.zk_session_timeout_s))
        store = await stack.enter_async_context(state_store(
            settings.redis, settings.cluster, fingerprint_ttl_s=settings.fingerprint_ttl_s,
            result_ttl_s=settings.result_ttl_s, events=metrics,
            partitions=settings.partitions or None, durability=settings.accept_durability))
        await store.check_durability()
        membership = await asyncio.to_thread(Membership(zk, settings.cluster).start)
        stack.callback(membership.stop)
        pools = Pools(settings.pool)
        stack.push_async_callback(pools.release, 0.0)
        node = Node(settings.node_id, store, membership, pools, settings.limits,
                    max_crash_recoveries=settings.max_crash_recoveries,
                    max_stream_pending=settings.max_stream_pending, events=metrics)
        instrument(node, metrics)

        server, port = grpc_server(settings, credentials)
        stack.push_async_callback(server.stop, 1.0)
        address = advertised_address(settings, port)
        pb_grpc.add_NodeServicer_to_server(
            NodeService(node, metrics, address, time.time(), request_drain), server)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        await set_health(health_servicer, serving=False)
        await server.start()
        stack.enter_context(metrics_endpoint(settings.metrics_port))
        stack.callback(ConfigWatch(zk, settings.cluster, node).start().stop)

        reregistered = asyncio.Event()
        registered = threading.Event()

        def set_epoch(epoch: int | None) -> None:
            # Called from ZooKeeper threads: record and hand off. A lost session stops
            # accepts at once; a new registration reclaims work stamped with the old epoch.
            again = node.epoch is None and epoch is not None and registered.is_set()
            node.epoch = epoch
            if again:
                loop.call_soon_threadsafe(reregistered.set)
            registered.set()

        async with asyncio.TaskGroup() as tasks:
            loops = [tasks.create_task(probe_zookeeper(zk, names.zk_root, metrics)),
                     tasks.create_task(node.reconcile_forever()),
                     tasks.create_task(reclaim_when(reregistered, node))]
            # Our own in-flight tasks from an earlier life go back to the retry set first.
            await node.reclaim()
            registration = Registration(zk, names, settings.node_id, address, settings.weight,
                                        REGISTRY, set_epoch)
            stack.callback(registration.stop)
            await asyncio.to_thread(registration.register)
            await asyncio.to_thread(
                membership.wait_for, lambda ring: settings.node_id in ring.members,
                STARTUP_TIMEOUT_S)
            await set_health(health_servicer, serving=True)
            log.info("node %s serving on %s (advertised %s)", settings.node_id, settings.listen,
                     address)

            # Startup objects live as long as the node: keep them out of every future GC pass.
            gc.freeze()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, request_drain)
                stack.callback(loop.remove_signal_handler, sig)
            await drain_requested.wait()

            log.info("draining (timeout %.1fs)", drain_timeout_s)
            await set_health(health_servicer, serving=False)
            node.draining = True
            await asyncio.to_thread(registration.leave)
            await node.drain(drain_timeout_s)
            for task in loops:
                task.cancel()
    return 0


async def reclaim_when(reregistered: asyncio.Event, node: Node) -> None:
    """Each time the node registers again after a lost session, reclaim its stale work."""
    while True:
        await reregistered.wait()
        reregistered.clear()
        await node.reclaim_stale()


async def set_health(servicer: health.aio.HealthServicer, serving: bool) -> None:
    status = (health_pb2.HealthCheckResponse.SERVING if serving
              else health_pb2.HealthCheckResponse.NOT_SERVING)
    for name in ("", SERVICE_NAME):
        await servicer.set(name, status)


def grpc_server(settings: NodeSettings,
                credentials: grpc.ServerCredentials | None) -> tuple[aio.Server, int]:
    """The node's gRPC server, bound (not started), and its port."""
    max_message = settings.limits.max_message_bytes
    server = aio.server(
        interceptors=[TokenAuth(settings.token)] if settings.token else [],
        options=[
            ("grpc.max_receive_message_length", max_message),
            ("grpc.max_send_message_length", max_message),
        ],
    )
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    try:
        if credentials is None:
            port = server.add_insecure_port(settings.listen)
        else:
            port = server.add_secure_port(settings.listen, credentials)
    except RuntimeError as exc:
        raise ConfigError(f"cannot listen on {settings.listen}: {exc}") from None
    return server, port
