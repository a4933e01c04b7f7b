"""What a client stream sends, and when: held acks ride with the next result."""

from __future__ import annotations

import asyncio

from ringpool.v1 import node_pb2 as pb
from ringpool_node.streams import ClientStream

WAIT_S = 10.0  # deadline for anything that should happen; nothing here waits on it


def ack(task_id: str) -> pb.Ack:
    return pb.Ack(task_id=task_id, code=pb.ACCEPTED)


def result(task_id: str) -> pb.TaskResult:
    return pb.TaskResult(task_id=task_id, state=pb.SUCCEEDED, result=b"null")


async def next_response(stream: ClientStream) -> pb.SubmitResponse:
    return await asyncio.wait_for(anext(stream.responses()), WAIT_S)


async def test_a_held_ack_goes_out_with_the_result() -> None:
    stream = ClientStream(hold_s=WAIT_S)
    stream.outstanding = 1
    stream.push_acks([ack("t1")], hold=True)
    asyncio.get_running_loop().call_later(0.05, stream.push_result, result("t1"))

    response = await next_response(stream)

    assert [a.task_id for a in response.acks] == ["t1"]
    assert [r.task_id for r in response.results] == ["t1"]


async def test_a_held_ack_goes_out_alone_once_the_hold_is_over() -> None:
    stream = ClientStream(hold_s=0.05)
    stream.outstanding = 1
    stream.push_acks([ack("t1")], hold=True)

    response = await next_response(stream)

    assert [a.task_id for a in response.acks] == ["t1"]
    assert not response.results
    assert stream.outstanding == 1  # its result is still to come


async def test_an_ack_that_is_not_held_sends_the_held_ones_too() -> None:
    stream = ClientStream(hold_s=WAIT_S)
    stream.push_acks([ack("t1")], hold=True)
    stream.push_acks([pb.Ack(task_id="t2", code=pb.DUPLICATE, original_task_id="t0")])

    response = await next_response(stream)

    assert [a.task_id for a in response.acks] == ["t1", "t2"]


async def test_closing_the_stream_ends_a_hold() -> None:
    stream = ClientStream(hold_s=WAIT_S)
    stream.push_acks([ack("t1")], hold=True)
    responses = stream.responses()
    first = asyncio.ensure_future(anext(responses))
    await asyncio.sleep(0)  # let it start holding
    stream.close()

    response = await asyncio.wait_for(first, WAIT_S)  # the held ack still goes out

    assert [a.task_id for a in response.acks] == ["t1"]
    assert [r async for r in responses] == []
