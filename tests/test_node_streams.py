"""What a client stream sends, and when: held acks ride with the next result; a key's
ordered tasks stay in order behind one answered with a resend code."""

from __future__ import annotations

import asyncio

from ringpool.v1 import node_pb2 as pb
from ringpool_node.streams import ClientStream, KeyFences

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


# -- per-key fences of ordered tasks ---------------------------------------------------


def task(task_id: str, key: str = "k", ordered: bool = True) -> pb.TaskEnvelope:
    return pb.TaskEnvelope(task_id=task_id, key=key, ordered=ordered)


def test_a_resend_answer_fences_later_ordered_tasks_of_its_key_until_the_client_saw_it() -> None:
    fences = KeyFences()
    fences.raise_for([task("t1"), task("t2", key="other")],
                     [pb.Ack(task_id="t1", code=pb.OVERLOADED, retry_after_s=0.1),
                      pb.Ack(task_id="t2", code=pb.ACCEPTED)], response=3)

    # Sent before the client read response 3: held back with the same answer.
    held = fences.held_back([task("t3"), task("t4", key="other"), task("t5", ordered=False)],
                            responses_seen=2)
    assert list(held) == [0]
    assert (held[0].task_id, held[0].code, held[0].retry_after_s) == ("t3", pb.OVERLOADED, 0.1)

    # Sent after it: judged as usual, and the fence is gone.
    assert fences.held_back([task("t1")], responses_seen=3) == {}
    assert fences.held_back([task("t6")], responses_seen=0) == {}


def test_only_resend_codes_fence() -> None:
    fences = KeyFences()
    fences.raise_for([task("t1"), task("t2", key="b")],
                     [pb.Ack(task_id="t1", code=pb.UNKNOWN_TASK),
                      pb.Ack(task_id="t2", code=pb.DUPLICATE)], response=1)
    assert fences.held_back([task("t3"), task("t4", key="b")], responses_seen=0) == {}
