"""One long-lived Submit stream per node: batches of tickets out, acks and results in.

A link sends at once when nothing of its is in flight, and gathers what is queued
while a batch is in flight into the next send: a lone task goes out with no added
delay, and a loop of dispatches forms batches by itself. Every answer, every
pushed result and every ticket a broken stream leaves unanswered goes to the
link's ``LinkEvents`` (the Router), which decides what happens next.

``Link`` is the interface the Router needs; ``NodeLink`` speaks gRPC, and tests of
the Router's logic pass links of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Protocol

import grpc
from grpc import aio

from ringpool.client.settings import ClientSettings
from ringpool.client.tickets import Ticket
from ringpool.errors import Unauthenticated
from ringpool.v1 import node_pb2 as pb
from ringpool.v1 import node_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
MAX_BATCH = 500  # tasks per message
MAX_BATCH_BYTES = 1024 * 1024  # a message closes after the task that passes this


class LinkDown(Exception):
    """The stream to a node broke before these tasks were acknowledged."""


class LinkEvents(Protocol):
    """What a link reports, on the event loop."""

    def on_answers(self, link: Link, answers: list[tuple[Ticket, pb.Ack]]) -> None: ...

    def on_down(self, link: Link, tickets: list[Ticket], error: Exception) -> None: ...

    def on_result(self, result: pb.TaskResult) -> None: ...

    def on_idle(self, link: Link) -> None:
        """Everything the link sent is answered: what is queued goes out at once."""


class Link(Protocol):
    node_id: str
    addr: str

    @property
    def closed(self) -> bool: ...

    @property
    def busy(self) -> bool:
        """True while something it sent is unanswered (what is queued then waits)."""

    def queue(self, tickets: Sequence[Ticket]) -> None:
        """Send these (in order) after what is already queued."""

    def forget(self, ticket: Ticket) -> None:
        """Stop waiting for this ticket's answer (the Router gave up on it)."""

    async def close(self) -> None: ...


LinkFactory = Callable[[str, str, LinkEvents], Link]


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


def batches(tickets: list[Ticket]) -> list[list[Ticket]]:
    """``tickets`` cut into messages of at most ``MAX_BATCH`` tasks and about
    ``MAX_BATCH_BYTES``."""
    cut: list[list[Ticket]] = []
    start, size = 0, 0
    for index, ticket in enumerate(tickets):
        size += ticket.size
        if index + 1 - start >= MAX_BATCH or size >= MAX_BATCH_BYTES:
            cut.append(tickets[start:index + 1])
            start, size = index + 1, 0
    if start < len(tickets):
        cut.append(tickets[start:])
    return cut


class NodeLink:
    def __init__(
        self, node_id: str, addr: str, settings: ClientSettings, events: LinkEvents
    ) -> None:
        self.node_id = node_id
        self.addr = addr
        self._settings = settings
        self._events = events
        self.channel = open_channel(addr, settings)
        self.stub = pb_grpc.NodeStub(self.channel)
        self._outbox: list[Ticket] = []
        self._in_flight: dict[str, Ticket] = {}  # sent, not answered: by task id, in send order
        self._ready = asyncio.Event()
        self._call: aio.StreamStreamCall | None = None
        self._reader: asyncio.Task[None] | None = None
        self._batch_id = 0
        self._responses = 0  # responses read on the current stream
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def busy(self) -> bool:
        return bool(self._in_flight)

    def queue(self, tickets: Sequence[Ticket]) -> None:
        if self._closed:
            self._events.on_down(self, list(tickets), LinkDown(f"link to {self.node_id} is closed"))
            return
        self._outbox.extend(tickets)
        self._ensure_stream()
        if not self._in_flight:
            self._ready.set()

    def forget(self, ticket: Ticket) -> None:
        if self._in_flight.pop(ticket.task_id, None) is not None and not self._in_flight:
            self._ready.set()  # a settled ticket in the outbox is skipped when sending
            self._events.on_idle(self)

    def _ensure_stream(self) -> None:
        if self._reader is None or self._reader.done():
            # A fresh event per stream: a dead stream's request generator must never
            # take a batch meant for its successor.
            self._ready = asyncio.Event()
            self._responses = 0
            self._call = self.stub.Submit(
                self._requests(self._ready), metadata=call_metadata(self._settings)
            )
            self._reader = asyncio.create_task(self._read(self._call))

    async def _requests(self, ready: asyncio.Event) -> AsyncIterator[pb.SubmitRequest]:
        while not self._closed:
            await ready.wait()
            ready.clear()
            if ready is not self._ready:
                return
            if self._in_flight or not self._outbox:
                continue  # what is queued goes once everything in flight is answered
            tickets = [ticket for ticket in self._outbox if not ticket.done]
            self._outbox = []
            in_flight = self._in_flight
            for ticket in tickets:
                in_flight[ticket.task_id] = ticket
            for batch in batches(tickets):
                self._batch_id += 1
                yield pb.SubmitRequest(batch_id=self._batch_id, responses_seen=self._responses,
                                       tasks=[ticket.envelope for ticket in batch])

    async def _read(self, call: aio.StreamStreamCall) -> None:
        error: Exception = LinkDown(f"stream to {self.node_id} ({self.addr}) ended")
        in_flight = self._in_flight
        try:
            async for response in call:
                self._responses += 1
                if response.acks:
                    answers = []
                    for ack in response.acks:
                        ticket = in_flight.pop(ack.task_id, None)
                        if ticket is not None:
                            answers.append((ticket, ack))
                    if answers:
                        self._events.on_answers(self, answers)
                for result in response.results:
                    self._events.on_result(result)
                if not in_flight and response.acks:
                    self._events.on_idle(self)
                    if self._outbox:
                        self._ready.set()
        except aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                error = Unauthenticated(f"{self.node_id} refused us: {exc.details()}")
            else:
                error = LinkDown(f"stream to {self.node_id} ({self.addr}): {exc.code().name}")
        except asyncio.CancelledError:
            error = LinkDown(f"link to {self.node_id} closed")
            raise
        finally:
            # What was not answered on this stream is unknown, and what is queued must
            # not overtake it: all of it goes back to the Router, in order (a resend of
            # an accepted task is answered DUPLICATE).
            lost = [t for t in (*in_flight.values(), *self._outbox) if not t.done]
            in_flight.clear()
            self._outbox = []
            if lost:
                self._events.on_down(self, lost, error)
            self._events.on_idle(self)

    async def close(self) -> None:
        self._closed = True
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
