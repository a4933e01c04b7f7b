"""The gRPC face of the node: the ``Node`` service from ``proto/ringpool/v1``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from importlib import metadata
from typing import Any

from grpc import aio

from ringpool.v1 import node_pb2 as pb
from ringpool.v1 import node_pb2_grpc as pb_grpc
from ringpool_node.auth import Credentials
from ringpool_node.core import Node
from ringpool_node.metrics import NodeMetrics
from ringpool_node.streams import ClientStream

log = logging.getLogger(__name__)


class NodeService(pb_grpc.NodeServicer):
    """The RPCs. Who may call which is ``TokenAuth``'s business; whether a caller may send
    retries and replays is decided here, per call, from the same ``credentials``."""

    def __init__(self, node: Node, metrics: NodeMetrics, address: str, started_at: float,
                 request_drain: Callable[[float], None], credentials: Credentials,
                 max_stream_bytes: int) -> None:
        self.node = node
        self.metrics = metrics
        self.address = address
        self.started_at = started_at
        self._request_drain = request_drain
        self.credentials = credentials
        self.max_stream_bytes = max_stream_bytes
        self.version = installed_version()

    async def Submit(
        self, request_iterator: AsyncIterator[pb.SubmitRequest], context: aio.ServicerContext
    ) -> AsyncIterator[pb.SubmitResponse]:
        stream = ClientStream(max_buffer_bytes=self.max_stream_bytes)
        operator = self.credentials.is_operator(context)
        reader = asyncio.create_task(self._read(request_iterator, stream, operator))
        try:
            async for response in stream.responses():
                yield response
        finally:
            stream.close()
            reader.cancel()

    async def _read(
        self, request_iterator: AsyncIterator[pb.SubmitRequest], stream: ClientStream,
        operator: bool,
    ) -> None:
        # One batch at a time, in the order sent: a key's ordered tasks are judged (and
        # fenced, see KeyFences) in their client's order, and HTTP/2 flow control holds
        # a fast sender back instead of our memory. Execution and results go on meanwhile.
        try:
            async for request in request_iterator:
                await stream.wait_for_room()  # a client that does not read: stop reading too
                await self._handle(request, stream, operator)
        finally:
            stream.input_done = True
            stream.wake()

    async def _handle(self, request: pb.SubmitRequest, stream: ClientStream,
                      operator: bool) -> None:
        stream.handlers += 1
        try:
            tasks = list(request.tasks)
            acks, hold = await self._answer(tasks, request, stream, operator)
            stream.fences.raise_for(tasks, acks, stream.responses_sent + 1)
            stream.push_acks(acks, hold=hold)
        finally:
            stream.handlers -= 1
            stream.wake()

    async def _answer(
        self, tasks: list[pb.TaskEnvelope], request: pb.SubmitRequest, stream: ClientStream,
        operator: bool,
    ) -> tuple[list[pb.Ack], bool]:
        """An ack per task, and whether to hold them for a result to ride along."""
        try:
            held = stream.fences.held_back(tasks, request.responses_seen)
            judged = [t for i, t in enumerate(tasks) if i not in held] if held else tasks
            answers = iter(await self.node.submit(judged, stream, operator))
            if not held:
                acks = list(answers)
                return acks, self.node.results_soon(judged, acks, stream.hold_s)
            return [held[i] if i in held else next(answers) for i in range(len(tasks))], False
        except Exception as exc:
            # Every task gets an answer: a failure here must not leave the client waiting.
            log.exception("batch %d failed", request.batch_id)
            return [pb.Ack(task_id=t.task_id, code=pb.INTERNAL, message=f"node error: {exc}",
                           retry_after_s=0.2) for t in tasks], False

    async def SubmitBatch(
        self, request: pb.SubmitRequest, context: aio.ServicerContext
    ) -> pb.SubmitResponse:
        acks = await self.node.submit(list(request.tasks), None,
                                      self.credentials.is_operator(context))
        return pb.SubmitResponse(batch_id=request.batch_id, acks=acks)

    async def Status(
        self, request: pb.StatusRequest, context: aio.ServicerContext
    ) -> pb.StatusResponse:
        node = self.node.snapshot()
        return pb.StatusResponse(
            node_id=node.node_id, address=self.address, ring_version=node.ring_version,
            in_flight=node.in_flight, queued=node.queued, running=node.running,
            draining=node.draining, started_at=self.started_at, counters=self.metrics.totals(),
            version=self.version,
            pools=pool_status(node.pools, self.node.pools.settings.cpu.processes),
            runs_finished=self.node.execution.runs_finished,
            run_seconds_total=self.node.execution.run_seconds_total,
            zookeeper_state=node.zookeeper_state, ring_stale_s=node.ring_stale_s,
        )

    async def Drain(
        self, request: pb.DrainRequest, context: aio.ServicerContext
    ) -> pb.DrainResponse:
        self._request_drain(request.timeout_s)
        return pb.DrainResponse()


def installed_version() -> str:
    try:
        return metadata.version("ringpool-node")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def pool_status(stats: dict[str, Any], cpu_processes: int) -> list[pb.PoolStatus]:
    """Each tier's size from ``Pools.stats()`` (cpu processes start on demand)."""
    io, cpu, aio = stats["io"], stats["cpu"], stats["async"]
    return [
        pb.PoolStatus(kind="io", workers=int(io["threads"]), min_workers=int(io["min_workers"]),
                      max_workers=int(io["max_workers"]), running=int(io["running"]),
                      queued=int(io["queued"])),
        pb.PoolStatus(kind="cpu", workers=int(cpu["processes"]), max_workers=cpu_processes,
                      running=int(cpu["running"]), queued=int(cpu["queued"])),
        pb.PoolStatus(kind="async", workers=int(aio["limit"]), min_workers=int(aio["limit"]),
                      max_workers=int(aio["limit"]), running=int(aio["running"]),
                      queued=int(aio["queued"])),
    ]
