"""One client's Submit stream, seen from the node: acks and pushed results go out coalesced."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence

from ringpool.v1 import node_pb2 as pb

# Acks of tasks that usually finish within this long wait for their results, so both
# reach the client in one message (one write here, one wake-up there). A task that
# takes longer only has its ack delayed by this much. Clients do not wait for acks
# to dispatch (they pipeline), so the hold delays only accepted() and flush(); it
# saves a message each way on a dispatch().result() round trip, and a client's next
# batch gathers while held acks are on their way.
ACK_HOLD_S = 0.002
MAX_BUFFER_BYTES = 16 * 2**20
# Answers that make the client send a task again (after a ring refresh or a back-off).
RESEND_CODES = frozenset({pb.WRONG_OWNER, pb.DRAINING, pb.OVERLOADED, pb.INTERNAL})
MAX_FENCES = 1_000  # past this many fenced keys, those the client has seen are dropped


class KeyFences:
    """Per-key order of a stream's ordered tasks across batches in flight.

    The client may have several batches on the wire when an ordered task is answered
    with a resend code. Later ordered tasks of that key sent before the client read
    that answer must not be accepted ahead of its resend, so they get the same answer
    (they come back and are resent behind it). A batch sent after the client read the
    answer (``responses_seen`` at least the answer's response number) lifts the fence.
    """

    def __init__(self) -> None:
        self._fences: dict[str, tuple[int, pb.Ack]] = {}  # key -> (response number, answer)

    def held_back(
        self, tasks: Sequence[pb.TaskEnvelope], responses_seen: int
    ) -> dict[int, pb.Ack]:
        """The answers of the fenced tasks of a batch, by index; lifts fences the client saw."""
        fences = self._fences
        if not fences:
            return {}
        if len(fences) > MAX_FENCES:
            self._fences = fences = {
                key: fence for key, fence in fences.items() if fence[0] > responses_seen
            }
        held: dict[int, pb.Ack] = {}
        for index, task in enumerate(tasks):
            fence = fences.get(task.key) if task.ordered else None
            if fence is None:
                continue
            if responses_seen >= fence[0]:
                del fences[task.key]
                continue
            answer = fence[1]
            held[index] = pb.Ack(
                task_id=task.task_id, code=answer.code, ring_version=answer.ring_version,
                retry_after_s=answer.retry_after_s, node_id=answer.node_id,
                message=f"held back behind an earlier task of its key ({answer.message})",
            )
        return held

    def raise_for(
        self, tasks: Iterable[pb.TaskEnvelope], acks: Iterable[pb.Ack], response: int
    ) -> None:
        """Fence the key of every ordered task answered with a resend code in ``response``."""
        for task, ack in zip(tasks, acks, strict=True):
            if task.ordered and ack.code in RESEND_CODES:
                self._fences.setdefault(task.key, (response, ack))


class ClientStream:
    """Outgoing side of a Submit stream; everything queued goes out in one message.

    The stream ends once the client stopped sending, every batch is answered and
    every task accepted on it has had its result pushed.

    Acks pushed with ``hold=True`` go out with the next result, or after
    ``hold_s`` at the latest; an ack pushed without ``hold`` sends them at once.
    ``responses_sent`` numbers the messages: acks pushed now go out in message
    ``responses_sent + 1``.

    ``outstanding`` plus ``reserved`` is bounded by the node's per-stream limit
    (``Node.max_stream_pending``): tasks over it are answered OVERLOADED.

    What waits here to be sent is bounded by bytes, for a client that does not read
    its stream: past ``max_buffer_bytes`` a result is not queued (``push_result`` says
    False, and the node announces it through Redis instead), and the reader stops
    taking batches (``wait_for_room``) until the client reads, so HTTP/2 flow control
    holds the client back. Results count as done only once they are queued here.
    """

    def __init__(self, hold_s: float = ACK_HOLD_S,
                 max_buffer_bytes: int = MAX_BUFFER_BYTES) -> None:
        self.hold_s = hold_s
        self.max_buffer_bytes = max_buffer_bytes
        self.buffered_bytes = 0  # acks and results queued and not yet sent
        self.open = True
        self.outstanding = 0  # tasks accepted on this stream whose result is not pushed yet
        self.reserved = 0  # tasks admitted by a batch whose durable accept is in progress
        self.handlers = 0  # batches being handled
        self.input_done = False
        self.responses_sent = 0
        self.fences = KeyFences()
        self._acks: list[pb.Ack] = []
        self._results: list[pb.TaskResult] = []
        self._ready = asyncio.Event()
        self._sent = asyncio.Event()  # set whenever queued bytes went out
        self._hold_until = 0.0  # loop time until which queued acks wait for a result

    def push_acks(self, acks: Iterable[pb.Ack], hold: bool = False) -> None:
        if not hold:
            self._hold_until = 0.0
        elif not self._acks:
            self._hold_until = asyncio.get_running_loop().time() + self.hold_s
        before = len(self._acks)
        self._acks.extend(acks)
        self.buffered_bytes += sum(ack.ByteSize() for ack in self._acks[before:])
        self._ready.set()

    @property
    def full(self) -> bool:
        return self.buffered_bytes >= self.max_buffer_bytes

    def push_result(self, result: pb.TaskResult) -> bool:
        """Queue a result for the client; False when the stream is gone or full (the
        caller announces it through Redis instead)."""
        if not self.open or self.full:
            return False
        self.outstanding -= 1
        self._results.append(result)
        self.buffered_bytes += result.ByteSize()
        self._ready.set()
        return True

    async def wait_for_room(self) -> None:
        """Return once the queue is under its bytes cap (or the stream is closed)."""
        while self.open and self.full:
            self._sent.clear()
            await self._sent.wait()

    def room(self, limit: int) -> int:
        """How many more tasks this stream may have pending under ``limit``."""
        return max(0, limit - self.outstanding - self.reserved)

    def wake(self) -> None:
        self._ready.set()

    def close(self) -> None:
        self.open = False
        self._ready.set()
        self._sent.set()

    def _finished(self) -> bool:
        return self.input_done and self.handlers == 0 and self.outstanding <= 0

    async def responses(self) -> AsyncIterator[pb.SubmitResponse]:
        while self.open:
            await self._ready.wait()
            self._ready.clear()
            if self._hold_until:
                await self._wait_for_a_result()
            if self._acks or self._results:
                self._hold_until = 0.0
                self.responses_sent += 1
                acks, self._acks = self._acks, []
                results, self._results = self._results, []
                sending = self.buffered_bytes  # all of it goes in this message
                # Returns once gRPC took the message: a client that does not read stalls it.
                yield pb.SubmitResponse(acks=acks, results=results)
                self.buffered_bytes -= sending
                self._sent.set()
            if self._finished():
                return

    async def _wait_for_a_result(self) -> None:
        """Wait while acks are held and no result has come to carry them."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(self._hold_until):
                while self.open and self._hold_until and not self._results:
                    await self._ready.wait()
                    self._ready.clear()
