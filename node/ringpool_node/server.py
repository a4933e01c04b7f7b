"""Start a node: load tasks, connect, serve gRPC, register; on SIGTERM drain and exit."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
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
from grpc_health.v1 import health, health_pb2_grpc
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
from ringpool.core.schedule import DECLARED
from ringpool.errors import ConfigError
from ringpool.pool import Pools
from ringpool.store.schedules import PutResult
from ringpool.store.store import StateStore, connect_redis
from ringpool.task import REGISTRY, check_group
from ringpool.v1 import node_pb2_grpc as pb_grpc
from ringpool_node.auth import Credentials, TokenAuth
from ringpool_node.config_watch import ConfigWatch
from ringpool_node.core import Node
from ringpool_node.health import PING_TIMEOUT_S, SERVICE_NAME, Health, set_health
from ringpool_node.metrics import NodeMetrics, instrument, probe_zookeeper
from ringpool_node.registration import Registration
from ringpool_node.service import NodeService
from ringpool_node.settings import NodeSettings

log = logging.getLogger(__name__)
EXIT_ID_TAKEN = 2  # another process registered our node id while our session was gone


def load_task_modules(modules: tuple[str, ...], group: str = "") -> None:
    """Import the task modules; ConfigError when one cannot be imported, or when a node of a
    named ``group`` would serve nothing (none of their tasks declares that group)."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"cannot import task module {module!r}: {exc}") from None
    if group and not any(d.group == group for d in REGISTRY.values()):
        declared = sorted({d.group for d in REGISTRY.values() if d.group})
        raise ConfigError(f"no task in {', '.join(modules) or 'the task modules'} declares "
                          f"group={group!r} (groups declared: {', '.join(declared) or 'none'})")
    for schedule in DECLARED.values():
        if schedule.task.name not in REGISTRY:
            raise ConfigError(f"schedule {schedule.name!r} runs task {schedule.task.name!r}, "
                              "which no loaded task module registers")


async def publish_schedules(store: StateStore, settings: NodeSettings) -> None:
    """Publish the schedules the task modules declare; unchanged ones stay as they are
    (their next tick, their counts, paused or not)."""
    for schedule in DECLARED.values():
        declared = schedule.task.group
        group = REGISTRY[schedule.task.name].group if declared is None else declared
        result = await store.schedules.put(
            schedule.name, schedule.key, schedule.template(settings.limits, group),
            schedule.timing, origin=f"node:{settings.node_id}")
        if result is not PutResult.UNCHANGED:
            log.info("schedule %s %s (%s)", schedule.name, result.name.lower(),
                     schedule.timing.describe())


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
    check_group(settings.group)
    load_task_modules(settings.tasks, settings.group)
    credentials = server_credentials(settings)
    tokens = Credentials(settings.token, settings.operator_token)
    names = Names(settings.cluster)
    loop = asyncio.get_running_loop()
    metrics = NodeMetrics(metrics_registry(settings.metrics_port))
    drain_requested = asyncio.Event()
    drain_timeout_s = settings.drain_timeout_s
    exit_code = 0

    def request_drain(timeout_s: float = 0.0, code: int = 0) -> None:
        nonlocal drain_timeout_s, exit_code
        if timeout_s > 0:
            drain_timeout_s = timeout_s
        exit_code = exit_code or code
        loop.call_soon_threadsafe(drain_requested.set)

    async with contextlib.AsyncExitStack() as stack:
        # From the first moment: a SIGTERM during start-up drains once started, never kills.
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, request_drain)
            stack.callback(loop.remove_signal_handler, sig)
        zk = await stack.enter_async_context(
            zookeeper_session(settings, settings.zk_session_timeout_s))
        store = await stack.enter_async_context(state_store(
            settings.redis, settings.cluster, fingerprint_ttl_s=settings.fingerprint_ttl_s,
            result_ttl_s=settings.result_ttl_s, events=metrics,
            partitions=settings.partitions or None, durability=settings.accept_durability))
        await store.check_durability()
        probe = StateStore(connect_redis(settings.redis, connect_timeout_s=PING_TIMEOUT_S,
                                         timeout_s=PING_TIMEOUT_S, retries=0), settings.cluster)
        stack.push_async_callback(probe.close)
        membership = await asyncio.to_thread(Membership(zk, settings.cluster).start)
        stack.callback(membership.stop)
        pools = Pools(dataclasses.replace(settings.pool,
                                          max_abandoned=settings.max_abandoned_threads))
        stack.push_async_callback(pools.release, 0.0)
        node = Node(settings.node_id, store, membership, pools, settings.limits,
                    max_pending=settings.max_pending,
                    max_crash_recoveries=settings.max_crash_recoveries,
                    max_stream_pending=settings.max_stream_pending, events=metrics,
                    group=settings.group,
                    # A crashed holder's leases lapse about when its tasks are recovered.
                    order_lease_ttl_s=settings.zk_session_timeout_s)
        instrument(node, metrics)

        server, port = grpc_server(settings, credentials, tokens)
        stack.push_async_callback(server.stop, 1.0)
        address = advertised_address(settings, port)
        pb_grpc.add_NodeServicer_to_server(
            NodeService(node, metrics, address, time.time(), request_drain, tokens,
                        settings.max_stream_bytes), server)
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
            node.registered(epoch)
            if again:
                loop.call_soon_threadsafe(reregistered.set)
            registered.set()

        def id_taken() -> None:
            request_drain(0.0, EXIT_ID_TAKEN)

        async with asyncio.TaskGroup() as tasks:
            loops = [tasks.create_task(probe_zookeeper(zk, names.zk_root, metrics)),
                     tasks.create_task(node.reconcile_forever()),
                     tasks.create_task(node.cancel_forever()),
                     tasks.create_task(reclaim_when(reregistered, node))]
            # One process per node id: wait for an earlier one's session to end (or give
            # up, saying so); then what it held goes back to the retry set before we join.
            registration = Registration(
                zk, names, settings.node_id, address, settings.weight, node.tasks, set_epoch,
                takeover_wait_s=2 * settings.zk_session_timeout_s + 5, on_id_taken=id_taken,
                group=settings.group)
            stack.callback(registration.stop)
            await asyncio.to_thread(registration.claim)
            await node.reclaim()
            await publish_schedules(store, settings)
            await asyncio.to_thread(registration.register)
            await asyncio.to_thread(
                membership.wait_for, lambda ring: settings.node_id in ring.members,
                STARTUP_TIMEOUT_S)
            watch = Health(health_servicer, node, registration, probe,
                           settings.redis_lost_after_s, request_drain)
            await watch.show(node.serving)
            loops.append(tasks.create_task(watch.run()))
            log.info("node %s serving on %s (advertised %s)", settings.node_id, settings.listen,
                     address)

            # Startup objects live as long as the node: keep them out of every future GC pass.
            gc.freeze()
            await drain_requested.wait()

            log.info("draining (timeout %.1fs)", drain_timeout_s)
            node.draining = True
            await watch.show(serving=False)
            await asyncio.to_thread(registration.leave)
            await node.drain(drain_timeout_s)
            for task in loops:
                task.cancel()
    return exit_code


async def reclaim_when(reregistered: asyncio.Event, node: Node) -> None:
    """Each time the node registers again after a lost session, reclaim its stale work."""
    while True:
        await reregistered.wait()
        reregistered.clear()
        await node.reclaim_stale()


def grpc_server(settings: NodeSettings, credentials: grpc.ServerCredentials | None,
                tokens: Credentials) -> tuple[aio.Server, int]:
    """The node's gRPC server, bound (not started), and its port."""
    max_message = settings.limits.max_message_bytes
    server = aio.server(
        interceptors=[TokenAuth(tokens)] if tokens.required else [],
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
