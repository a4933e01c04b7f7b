"""The fixed surfaces: the committed stubs match proto/, and ringpool exports exactly the contract."""

from __future__ import annotations

import filecmp
from pathlib import Path

import ringpool
from proto.generate import DEFAULT_OUT, generate


def test_committed_stubs_match_the_proto(tmp_path: Path) -> None:
    fresh = generate(tmp_path)
    assert fresh, "protoc produced nothing"
    for path in fresh:
        committed = DEFAULT_OUT / path.relative_to(tmp_path)
        assert committed.exists(), f"{committed} is missing: run `make proto`"
        assert filecmp.cmp(path, committed, shallow=False), f"{committed} is stale: run `make proto`"


def test_ringpool_exports_exactly_the_documented_api() -> None:
    contract = {"Cluster", "AsyncCluster", "Task", "task", "TaskHandle", "RetryPolicy"}
    extensions = {
        "AsyncTaskHandle", "Retry", "PermanentError", "TaskContext", "current_task", "TaskState",
        # the error tree (ringpool/errors.py)
        "RingpoolError", "DispatchError", "UnknownTask", "InvalidKey", "InvalidTask",
        "PayloadTooLarge", "NoNodesAvailable", "Overloaded", "TooManyHops", "NotRedeliverable",
        "TaskIdTaken", "PermissionDenied",
        "ClusterUnavailable", "Unauthenticated", "ResultTimeout", "TaskNotFound", "TaskFailed",
        "ConfigError", "TaskCancelled", "TaskAlreadyFinished", "InvalidSchedule",
        "ScheduleNotFound",
        # periodic schedules: declared in task modules, as cluster.schedule() returns them
        "periodic", "StoredSchedule",
    }
    assert set(ringpool.__all__) == contract | extensions
    for name in ringpool.__all__:
        assert getattr(ringpool, name) is not None


def test_result_timeout_is_a_timeout_error() -> None:
    assert issubclass(ringpool.ResultTimeout, TimeoutError)
    assert issubclass(ringpool.ResultTimeout, ringpool.RingpoolError)
    for name in ringpool.__all__:
        value = getattr(ringpool, name)
        if isinstance(value, type) and issubclass(value, Exception) and value not in (
            ringpool.Retry, ringpool.PermanentError,  # raised by tasks, not by ringpool
        ):
            assert issubclass(value, ringpool.RingpoolError), name
