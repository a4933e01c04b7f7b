"""One long-lived Submit stream per node: batches out, acks and pushed results in.

Envelopes handed to ``send`` while a batch is on the wire gather into the next
one, so concurrent dispatches share messages without any added delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import cast

import grpc
from grpc import aio

from ringpool.client.settings import ClientSettings
from ringpool.errors import Unauthenticated
from ringpool.v1 import node_pb2 as pb
from ringpool.v1 import node_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
MAX_BATCH = 500


class LinkDown(Exception):
    """The stream to a node broke before these tasks were acknowledged."""


def open_channel(addr: str, settings: ClientSettings) -> aio.Channel:
    max_message = settings.limits.max_message_bytes
    options: list[tuple[str, str | int]] = [
        ("grpc.max_receive_message_length", max_message),
        ("grpc.max_send_message_length", max_message),
    ]
    if not settings.tls_ca:
        return aio.insecure_channel(addr, options=options)
    if settings.tls_server_name:
        options.append(("grpc.ssl_target_name_override", settings.tls_server_name))
    credentials = grpc.ssl_channel_credentials(
        root_certificates=Path(settings.tls_ca).read_bytes(),
        private_key=Path(settings.tls_key).read_bytes() if settings.tls_key else None,
        certificate_chain=Path(settings.tls_cert).read_bytes() if settings.tls_cert else None,
    )
    return aio.secure_channel(addr, credentials, options=options)


def call_metadata(settings: ClientSettings) -> tuple[tuple[str, str], ...]:
    """The bearer token a call presents: the operator's when this client has it."""
    token = settings.operator_token or settings.token
    return (("authorization", f"Bearer {token}"),) if token else ()


class _PendingAcks:
    """The acks of one ``send`` call: one future for the lot, not one per task."""

    __slots__ = ("acks", "done", "missing")

    def __init__(self, size: int, done: asyncio.Future[list[pb.Ack]]) -> None:
        self.acks: list[pb.Ack | None] = [None] * size
        self.missing = size
        self.done = done

    def answer(self, index: int, ack: pb.Ack) -> None:
        if self.acks[index] is None:
            self.acks[index] = ack
            self.missing -= 1
            if not self.missing and not self.done.done():
                self.done.set_result(cast(list[pb.Ack], self.acks))


class NodeLink:
    def __init__(
        self,
        node_id: str,
        addr: str,
        settings: ClientSettings,
        on_result: Callable[[pb.TaskResult], None],
    ) -> None:
        self.node_id = node_id
        self.addr = addr
        self._settings = settings
        self._on_result = on_result
        self.channel = open_channel(addr, settings)
        self.stub = pb_grpc.NodeStub(self.channel)
        self._outbox: list[pb.TaskEnvelope] = []
        self._waiting: dict[str, tuple[_PendingAcks, int]] = {}
        self._ready = asyncio.Event()
        self._call: aio.StreamStreamCall | None = None
        self._reader: asyncio.Task[None] | None = None
        self._batch_id = 0
        self.closed = False

    async def send(self, envelopes: Sequence[pb.TaskEnvelope]) -> list[pb.Ack]:
        """The node's ack for each envelope; LinkDown if the stream broke first."""
        batch = _PendingAcks(len(envelopes), asyncio.get_running_loop().create_future())
        waiting = self._waiting
        for index, envelope in enumerate(envelopes):
            waiting[envelope.task_id] = (batch, index)
        self._outbox.extend(envelopes)
        self._ensure_stream()
        self._ready.set()
        try:
            return await batch.done
        finally:
            for envelope in envelopes:
                waiting.pop(envelope.task_id, None)

    def _ensure_stream(self) -> None:
        if self.closed:
            raise LinkDown(f"link to {self.node_id} is closed")
        if self._reader is None or self._reader.done():
            # A fresh event per stream: a dead stream's request generator must never
            # take a batch meant for its successor.
            self._ready = asyncio.Event()
            self._call = self.stub.Submit(
                self._requests(self._ready), metadata=call_metadata(self._settings)
            )
            self._reader = asyncio.create_task(self._read(self._call))

    async def _requests(self, ready: asyncio.Event) -> AsyncIterator[pb.SubmitRequest]:
        while not self.closed:
            await ready.wait()
            ready.clear()
            if ready is not self._ready:
                return
            while self._outbox:
                batch, self._outbox = self._outbox[:MAX_BATCH], self._outbox[MAX_BATCH:]
                self._batch_id += 1
                yield pb.SubmitRequest(batch_id=self._batch_id, tasks=batch)

    async def _read(self, call: aio.StreamStreamCall) -> None:
        error: Exception = LinkDown(f"stream to {self.node_id} ({self.addr}) ended")
        try:
            async for response in call:
                for ack in response.acks:
                    entry = self._waiting.pop(ack.task_id, None)
                    if entry is not None:
                        entry[0].answer(entry[1], ack)
                for result in response.results:
                    self._on_result(result)
        except aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                error = Unauthenticated(f"{self.node_id} refused us: {exc.details()}")
            else:
                error = LinkDown(f"stream to {self.node_id} ({self.addr}): {exc.code().name}")
        except asyncio.CancelledError:
            error = LinkDown(f"link to {self.node_id} closed")
            raise
        finally:
            # Whatever was not acknowledged on this stream is unknown: the sender resends
            # it (the fingerprint makes a resend of an accepted task a DUPLICATE).
            self._outbox.clear()
            for batch, _ in self._waiting.values():
                if not batch.done.done():
                    batch.done.set_exception(error)

    async def close(self) -> None:
        self.closed = True
        self._ready.set()
        if self._call is not None:
            self._call.cancel()
        if self._reader is not None:
            # Cancel the reader too: a cancelled call only ends it once gRPC reports
            # back, and that report can come late or, rarely, not at all.
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        await self.channel.close(grace=None)
