"""Start a node: load tasks, connect, serve gRPC, register; on SIGTERM drain and exit."""

from __future__ import annotations

import asyncio
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
from prometheus_client import start_http_server

from ringpool.core.membership import Membership, connect_zookeeper
from ringpool.core.naming import Names, check_node_id
from ringpool.core.zkacl import secure_cluster
from ringpool.errors import ConfigError
from ringpool.pool import Pools
from ringpool.store.store import StateStore
from ringpool.task import REGISTRY
from ringpool.v1 import node_pb2 as pb
from ringpool.v1 import node_pb2_grpc as pb_grpc
from ringpool_node.auth import TokenAuth
from ringpool_node.config_watch import ConfigWatch
from ringpool_node.core import Node
from ringpool_node.metrics import NodeMetrics, instrument, node_registry, probe_zookeeper
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
    if not (settings.tls_cert or settings.tls_key):
        return None
    if not (settings.tls_cert and settings.tls_key):
        raise ConfigError("--tls-cert and --tls-key go together")
    ca = Path(settings.tls_ca).read_bytes() if settings.tls_ca else None
    return grpc.ssl_server_credentials(
        [(Path(settings.tls_key).read_bytes(), Path(settings.tls_cert).read_bytes())],
        root_certificates=ca, require_client_auth=ca is not None,
    )


def advertised_address(settings: NodeSettings, port: int) -> str:
    if settings.advertise:
        return settings.advertise
    host = settings.listen.rsplit(":", 1)[0].strip("[]")
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostbyname(socket.gethostname())
    return f"{host}:{port}"


async def serve(settings: NodeSettings) -> int:
    """Run the node until it is told to stop; returns the process exit code."""
    check_node_id(settings.node_id)
    names = Names(settings.cluster)
    load_task_modules(settings.tasks)
    credentials = server_credentials(settings)

    zk = await asyncio.to_thread(
        connect_zookeeper, settings.zk, settings.zk_session_timeout_s, settings.zk_auth
    )
    if settings.zk_auth:
        await asyncio.to_thread(secure_cluster, zk, settings.cluster, settings.zk_auth)
    store = StateStore.from_url(
        settings.redis, settings.cluster,
        fingerprint_ttl_s=settings.fingerprint_ttl_s, result_ttl_s=settings.result_ttl_s,
    )
    await asyncio.wait_for(store.ping(), 10.0)
    membership = await asyncio.to_thread(Membership(zk, settings.cluster).start)
    pools = Pools(settings.pool)
    metrics = NodeMetrics(node_registry(settings.metrics_port))
    node = Node(settings.node_id, store, membership, pools, settings.limits,
                max_stream_pending=settings.max_stream_pending, metrics=metrics)
    instrument(node, metrics)

    drain_requested = asyncio.Event()
    registered = threading.Event()
    background: set[asyncio.Task[None]] = set()
    drain_timeout = [settings.drain_timeout_s]
    loop = asyncio.get_running_loop()

    def request_drain(timeout_s: float = 0.0) -> None:
        if timeout_s > 0:
            drain_timeout[0] = timeout_s
        loop.call_soon_threadsafe(drain_requested.set)

    def set_epoch(epoch: int | None) -> None:
        # Called from ZooKeeper threads: record and hand off. A lost session stops
        # accepts at once; a new registration reclaims work stamped with the old epoch.
        reregistered = node.epoch is None and epoch is not None and registered.is_set()
        node.epoch = epoch
        if reregistered:
            loop.call_soon_threadsafe(lambda: background.add(loop.create_task(node.reclaim_stale())))
        registered.set()

    interceptors = [TokenAuth(settings.token)] if settings.token else []
    max_message = settings.limits.max_message_bytes
    server = aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", max_message),
            ("grpc.max_send_message_length", max_message),
        ],
    )
    started_at = time.time()
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    if credentials is None:
        port = server.add_insecure_port(settings.listen)
    else:
        port = server.add_secure_port(settings.listen, credentials)
    address = advertised_address(settings, port)
    pb_grpc.add_NodeServicer_to_server(
        NodeService(node, address, started_at, request_drain), server
    )
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    await server.start()
    if settings.metrics_port:
        start_http_server(settings.metrics_port)
    config_watch = ConfigWatch(zk, settings.cluster, node, metrics).start()
    probe = asyncio.create_task(probe_zookeeper(zk, names.zk_root, metrics))
    reconcile = asyncio.create_task(node.reconcile_forever())

    # Our own in-flight tasks from an earlier life go back to the retry set first.
    recovered = await store.recover(
        settings.node_id, keep_epoch=None, max_recoveries=node.max_crash_recoveries
    )
    metrics.recovery(recovered)
    if recovered.recovered or recovered.poisoned:
        log.info("recovered %d of our own tasks (%d poisoned)", recovered.recovered,
                 recovered.poisoned)
    registration = Registration(
        zk, names, settings.node_id, address, settings.weight, REGISTRY, set_epoch
    )
    await asyncio.to_thread(registration.register)
    await asyncio.to_thread(
        membership.wait_for, lambda ring: settings.node_id in ring.members, 10.0
    )
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("node %s serving on %s (advertised %s)", settings.node_id, settings.listen, address)

    # Startup objects live as long as the node: keep them out of every future GC pass.
    gc.freeze()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, request_drain)
    await drain_requested.wait()

    log.info("draining (timeout %.1fs)", drain_timeout[0])
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    node.draining = True
    await asyncio.to_thread(registration.leave)
    await node.drain(drain_timeout[0])
    await server.stop(grace=1.0)
    config_watch.stop()
    probe.cancel()
    reconcile.cancel()
    membership.stop()
    await asyncio.to_thread(zk.stop)
    zk.close()
    await store.close()
    return 0
