"""The protocol table: every ack code has one meaning, every refusal one exception and back."""

from __future__ import annotations

import pytest

from ringpool import (
    DispatchError,
    InvalidKey,
    InvalidTask,
    NoNodesAvailable,
    TaskAlreadyFinished,
    TaskNotFound,
    TaskState,
)
from ringpool.core.protocol import (
    ACCEPTS,
    BACK_OFF,
    REFUSALS,
    REROUTE,
    ack_code_for,
    cancel_refusal,
    code_name,
    refusal,
)
from ringpool.v1 import node_pb2 as pb


def test_every_ack_code_has_exactly_one_meaning() -> None:
    groups = [ACCEPTS, REROUTE, BACK_OFF, frozenset(REFUSALS)]
    codes = [code for _, code in pb.AckCode.items() if code != pb.ACK_UNSPECIFIED]
    for code in codes:
        assert sum(code in group for group in groups) == 1, code_name(code)
    assert sorted(c for group in groups for c in group) == sorted(codes)


@pytest.mark.parametrize("code", sorted(REFUSALS), ids=code_name)
def test_each_refusal_maps_to_one_exception_and_back(code: int) -> None:
    error = refusal(code, "why")
    assert type(error) is REFUSALS[code] and str(error) == "why"
    assert ack_code_for(error) == code


def test_refusing_exceptions_are_distinct_dispatch_errors() -> None:
    kinds = list(REFUSALS.values())
    assert len(set(kinds)) == len(kinds)
    assert all(issubclass(kind, DispatchError) for kind in kinds)


def test_a_subclass_answers_its_nearest_code() -> None:
    class EmptyKey(InvalidKey):
        pass

    assert ack_code_for(EmptyKey("")) == pb.INVALID_KEY


def test_client_only_errors_and_unknown_codes_stay_dispatch_errors() -> None:
    assert ack_code_for(NoNodesAvailable("x")) == pb.INVALID_ARGUMENT
    unknown = refusal(999)
    assert type(unknown) is DispatchError and str(unknown) == "999"
    assert type(refusal(pb.INVALID_ARGUMENT)) is InvalidTask
    assert str(refusal(pb.INVALID_ARGUMENT)) == "INVALID_ARGUMENT"  # no message: the code


def test_task_states_round_trip_the_wire_and_read_as_text() -> None:
    for state in TaskState:
        assert TaskState.from_wire(state.wire) is state
        assert TaskState.parse(state.value) is state and state == state.value
    assert {s.wire for s in TaskState} == {code for _, code in pb.TaskState.items()}
    assert TaskState.parse("") is TaskState.UNKNOWN and TaskState.parse("bogus") is TaskState.UNKNOWN
    assert f"{TaskState.FAILED}" == "FAILED"
    assert [s for s in TaskState if s.terminal] == [
        TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED]


def test_a_cancel_is_refused_typed_for_finished_and_unknown_tasks() -> None:
    for state in (TaskState.SCHEDULED, TaskState.QUEUED, TaskState.RUNNING,
                  TaskState.RETRY_SCHEDULED):
        assert cancel_refusal("t1", state) is None
    for state in (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED):
        refused = cancel_refusal("t1", state)
        assert isinstance(refused, TaskAlreadyFinished) and refused.state == state
        assert "already finished" in str(refused)
    assert isinstance(cancel_refusal("t1", TaskState.UNKNOWN), TaskNotFound)
