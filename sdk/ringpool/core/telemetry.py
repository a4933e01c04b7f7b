"""OpenTelemetry helpers: spans for dispatch, accept and execute, linked through the envelope.

The W3C trace context (``traceparent``/``tracestate``) travels in the task
envelope's ``headers``. The record in Redis keeps the envelope, so a retry, a
recovery and a DLQ replay re-send the same headers and their spans join the
trace of the original dispatch.

Nothing is exported by default. ``configure_from_env`` (called by the node and the
coordinator at start) installs an SDK ``TracerProvider`` only when
``OTEL_TRACES_EXPORTER`` names an exporter (``console``, ``otlp`` when its package
is installed, ...); the usual ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_TRACES_SAMPLER`` and ``OTEL_SDK_DISABLED`` apply. An application that sets
its own provider (or runs under ``opentelemetry-instrument``) is left alone. When
no provider is set, every helper here returns at once: the hot path pays one
isinstance check per batch.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from importlib.metadata import entry_points
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import NoOpTracerProvider, ProxyTracerProvider, SpanKind

from ringpool.v1 import node_pb2 as pb

log = logging.getLogger(__name__)
TRACER_NAME = "ringpool"
SYSTEM = "ringpool"


def enabled() -> bool:
    """True when some real tracer provider is installed (ours or the application's)."""
    # While none is set, get_tracer_provider() looks the environment up on every call: a
    # tenth of a dispatch() loop's time. Its own "set" slot says the same for nothing.
    if getattr(trace, "_TRACER_PROVIDER", _UNKNOWN) is None and not _provider_in_environment():
        return False
    return not isinstance(trace.get_tracer_provider(), ProxyTracerProvider | NoOpTracerProvider)


_UNKNOWN = object()  # an opentelemetry without that slot: always ask get_tracer_provider()


@functools.cache
def _provider_in_environment() -> bool:
    return "OTEL_PYTHON_TRACER_PROVIDER" in os.environ


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


def configure_from_env(service_name: str) -> bool:
    """Install a TracerProvider when ``OTEL_TRACES_EXPORTER`` asks for one; True if tracing."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if enabled():
        return True
    names = [n.strip() for n in os.environ.get("OTEL_TRACES_EXPORTER", "").split(",")]
    names = [n for n in names if n and n != "none"]
    if not names:
        return False
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    installed = 0
    for name in names:
        found = entry_points(group="opentelemetry_traces_exporter", name=name)
        if not found:
            log.error("OTEL_TRACES_EXPORTER names %r, which no installed package provides", name)
            continue
        exporter_class = next(iter(found)).load()
        provider.add_span_processor(BatchSpanProcessor(exporter_class()))
        installed += 1
    if not installed:
        return False
    trace.set_tracer_provider(provider)
    return True


# -- context in headers ----------------------------------------------------------------


def inject(headers: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Write the current trace context into ``headers`` (W3C trace context)."""
    propagate.inject(headers)
    return headers


def extract(headers: Mapping[str, str]) -> otel_context.Context:
    return propagate.extract(headers)


def traced(headers: Mapping[str, str]) -> bool:
    return "traceparent" in headers


# -- the client's side -----------------------------------------------------------------


@contextmanager
def dispatch_span(
    op: str, task_name: str, count: int = 1, headers: Mapping[str, str] | None = None
) -> Iterator[dict[str, str] | None]:
    """A PRODUCER span around a dispatch; yields the headers to send (None when not tracing).

    The yielded mapping is ``headers`` plus the span's trace context: every envelope
    of a ``dispatch_many`` batch carries the batch span's context.
    """
    if not enabled():
        yield None
        return
    attributes: dict[str, Any] = {"messaging.system": SYSTEM, "messaging.operation.type": "send",
                  "messaging.destination.name": task_name, "messaging.batch.message_count": count}
    with tracer().start_as_current_span(f"{op} {task_name}", kind=SpanKind.PRODUCER,
                                        attributes=attributes):
        yield dict(inject(dict(headers or {})))


# -- the node's side -------------------------------------------------------------------


def record_accepts(
    envelopes: Sequence[pb.TaskEnvelope], acks: Sequence[pb.Ack], node_id: str, started_ns: int
) -> None:
    """One CONSUMER span per durably accepted traced envelope, child of its dispatch."""
    if not enabled():
        return
    now = time.time_ns()
    t = tracer()
    for envelope, ack in zip(envelopes, acks, strict=False):
        if ack.code != pb.ACCEPTED or not traced(envelope.headers):
            continue
        span = t.start_span(
            f"accept {envelope.name}", context=extract(envelope.headers), kind=SpanKind.CONSUMER,
            start_time=started_ns, attributes=_attributes(envelope.name, envelope.attempt, node_id,
                                                          "receive", envelope.source),
        )
        span.end(end_time=now)


def _attributes(name: str, attempt: int, node_id: str, operation: str,
                source: int = pb.SOURCE_CLIENT) -> dict[str, Any]:
    return {"messaging.system": SYSTEM, "messaging.operation.type": operation,
            "messaging.destination.name": name, "ringpool.task.attempt": attempt,
            "ringpool.node.id": node_id,
            "ringpool.task.source": pb.Source.Name(source).removeprefix("SOURCE_").lower()}


class _Context:  # what the pool middleware sees (ringpool.task.TaskContext)
    name: str
    attempt: int
    node_id: str
    headers: Mapping[str, str]


def execute_middleware() -> tuple[Callable[[Any, Callable[[], Any]], Any],
                                  Callable[[Any, Callable[[], Any]], Any]]:
    """Pool middleware (sync, async) wrapping each traced task's run in a CONSUMER span."""

    def trace_execute(ctx: _Context, call_next: Callable[[], Any]) -> Any:
        if not traced(ctx.headers):
            return call_next()
        with tracer().start_as_current_span(
            f"execute {ctx.name}", context=extract(ctx.headers), kind=SpanKind.CONSUMER,
            attributes=_attributes(ctx.name, ctx.attempt, ctx.node_id, "process"),
        ):
            return call_next()

    async def trace_execute_async(ctx: _Context, call_next: Callable[[], Any]) -> Any:
        if not traced(ctx.headers):
            return await call_next()
        with tracer().start_as_current_span(
            f"execute {ctx.name}", context=extract(ctx.headers), kind=SpanKind.CONSUMER,
            attributes=_attributes(ctx.name, ctx.attempt, ctx.node_id, "process"),
        ):
            return await call_next()

    return trace_execute, trace_execute_async
