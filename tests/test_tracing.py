"""OpenTelemetry: one trace id spans dispatch -> accept -> execute -> retry -> execute,
and a DLQ replay joins the same trace.

Spans go to an in-memory exporter, so the node runs in this process: ``serve`` on
the main thread's event loop (as ``python -m ringpool_node`` runs it), the test's client on a
worker thread. The coordinator that fires the retry is a real subprocess; it
re-sends the envelope stored in Redis, whose headers carry the trace context.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
import redis
from click.testing import CliRunner
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from ringpool import Cluster, PermanentError, Retry, Task, TaskFailed, current_task, task
from ringpool.cli.taskctl import cli
from ringpool.store.keys import Keys
from ringpool.testing.local import LocalCluster
from ringpool.v1 import node_pb2 as pb
from ringpool.v1 import node_pb2_grpc as pb_grpc
from ringpool_node.server import serve
from ringpool_node.settings import NodeSettings
from tests.helpers import eventually

NODE_ID = "traced-0"
_replayed: set[str] = set()
_lock = threading.Lock()


@task("trace.flaky", timeout=5.0, max_retries=2)
def flaky() -> int:
    ctx = current_task()
    assert ctx is not None
    if ctx.attempt == 1:
        raise Retry(countdown=0.05, reason="first attempt fails on purpose")
    return ctx.attempt


@task("trace.once", timeout=5.0, max_retries=0)
def once(tag: str) -> str:
    with _lock:
        if tag not in _replayed:
            _replayed.add(tag)
            raise PermanentError("dead-lettered on purpose")
    return "replayed"


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    yield memory
    memory.clear()


def drain(address: str) -> None:
    with grpc.insecure_channel(address) as channel:
        pb_grpc.NodeStub(channel).Drain(pb.DrainRequest(timeout_s=2.0), timeout=5.0)


def run_node_with(lc: LocalCluster, scenario: Callable[[Cluster], dict[str, str]]) -> dict[str, str]:
    """Run an in-process node while ``scenario(cluster)`` runs on a thread; its result."""
    settings = NodeSettings(zk=lc.zk, redis=lc.redis, cluster=lc.cluster, node_id=NODE_ID,
                            listen="127.0.0.1:0", metrics_port=0, drain_timeout_s=5.0,
                            tasks=("tests.test_tracing",))

    def client_side() -> dict[str, str]:
        eventually(lambda: NODE_ID in lc.members(), 30, "the in-process node")
        with Cluster.connect(zk=lc.zk, redis=lc.redis, cluster=lc.cluster) as cluster:
            try:
                return scenario(cluster)
            finally:
                drain(cluster.ring.members[NODE_ID].addr)

    async def main() -> dict[str, str]:
        node = asyncio.create_task(serve(settings))
        client = asyncio.create_task(asyncio.to_thread(client_side))
        done, _ = await asyncio.wait({node, client}, return_when=asyncio.FIRST_COMPLETED)
        if node in done and client not in done:
            node.result()  # the node failed: raise its error
        try:
            result = await client
        finally:
            await asyncio.wait_for(node, 30)
        return result

    return asyncio.run(main())


def spans_of(exporter: InMemorySpanExporter, trace_id: int) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]


def test_one_trace_spans_dispatch_execute_retry_execute_and_a_replay(
    zookeeper, redis_server, exporter: InMemorySpanExporter  # type: ignore[no-untyped-def]
) -> None:
    def scenario(cluster: Cluster) -> dict[str, str]:
        handle = cluster.dispatch("user:7", Task("trace.flaky"))
        assert handle.result(timeout=30) == 2
        dead = cluster.dispatch("user:8", Task("trace.once", args=("a",)))
        with pytest.raises(TaskFailed):
            dead.result(timeout=30)
        replay = CliRunner().invoke(cli, ["--zk", cluster.settings.zk, "--redis",
                                          cluster.settings.redis, "--cluster",
                                          cluster.settings.cluster, "dlq", "replay",
                                          dead.task_id, "--yes"])
        assert replay.exit_code == 0, replay.output
        record = Keys(cluster.settings.cluster).task(dead.task_id)
        with redis.Redis.from_url(cluster.settings.redis) as client:
            eventually(lambda: client.hget(record, "state") == b"SUCCEEDED", 30,
                       "the replay to succeed")
        return {"retried": handle.task_id, "replayed": dead.task_id}

    with LocalCluster(nodes=0, coordinators=1, zk=zookeeper.address,
                      redis=redis_server.url) as lc:
        run_node_with(lc, scenario)

    finished = exporter.get_finished_spans()
    (dispatch,) = [s for s in finished if s.name == "dispatch trace.flaky"]
    assert dispatch.kind == SpanKind.PRODUCER
    spans = spans_of(exporter, dispatch.context.trace_id)
    accepts = sorted((s for s in spans if s.name == "accept trace.flaky"),
                     key=lambda s: s.attributes["ringpool.task.attempt"])
    executes = sorted((s for s in spans if s.name == "execute trace.flaky"),
                      key=lambda s: s.attributes["ringpool.task.attempt"])
    assert [s.attributes["ringpool.task.attempt"] for s in executes] == [1, 2]
    assert [s.attributes["ringpool.task.source"] for s in accepts] == ["client", "retry"]
    for span in [*accepts, *executes]:
        assert span.kind == SpanKind.CONSUMER
        assert span.parent is not None and span.parent.span_id == dispatch.context.span_id
        assert span.attributes["ringpool.node.id"] == NODE_ID
    assert executes[0].status.status_code == StatusCode.ERROR  # the Retry it raised
    assert executes[1].status.status_code != StatusCode.ERROR
    assert executes[0].end_time <= accepts[1].start_time  # the retry came after the failure

    (first,) = [s for s in finished if s.name == "dispatch trace.once"]
    replay_trace = spans_of(exporter, first.context.trace_id)
    runs = [s for s in replay_trace if s.name == "execute trace.once"]
    assert len(runs) == 2, "the DLQ replay's run is not in the original trace"
    assert {s.attributes["ringpool.task.source"] for s in replay_trace
            if s.name == "accept trace.once"} == {"client", "replay"}
    # Health checks and the Drain RPC are not traced: only our spans exist.
    assert {s.name.split()[0] for s in finished} <= {"dispatch", "dispatch_many", "accept",
                                                    "execute"}


@pytest.mark.parametrize(("env", "expected"), [
    ({}, "False False None"),
    ({"OTEL_TRACES_EXPORTER": "none"}, "False False None"),
    ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}, "False False None"),
    ({"OTEL_TRACES_EXPORTER": "console"}, "True True traceparent"),
])
def test_an_exporter_only_when_the_environment_asks(env: dict[str, str], expected: str) -> None:
    code = ("from ringpool.core import telemetry\n"
            "on = telemetry.configure_from_env('t')\n"
            "with telemetry.dispatch_span('dispatch', 'demo.add') as headers:\n"
            "    print(on, telemetry.enabled(), headers and ','.join(headers), flush=True)\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True,
                         text=True, timeout=60, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == expected
