"""Progress of running tasks on a real cluster: ``current_task().progress(value, meta)``,
``handle.progress()`` (sync and async, on the submitter's stream and from the record),
``taskctl task show``, the throttle, and bad reports."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ringpool import AsyncCluster, Cluster, InvalidProgress, TaskProgress, TaskState
from ringpool.task import MAX_PROGRESS_META_BYTES
from ringpool.testing.local import LocalCluster
from tests import tasks_features as tasks
from tests.helpers import FEATURE_NODES, eventually, metric_sum, taskctl


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "gate"
    path.touch()
    yield path
    path.unlink(missing_ok=True)


def reports_passed(local: LocalCluster) -> float:
    """Progress reports the nodes passed on (to streams and records)."""
    return metric_sum(local, FEATURE_NODES, "ringpool_progress_reports_total")


@pytest.mark.parametrize(("dispatch", "expected"), [
    (lambda gate: tasks.steps.s(str(gate)), TaskProgress(1.0, {"step": 4})),
    (lambda gate: tasks.steps_async.s(str(gate)), TaskProgress(0.5, {"phase": "async"})),
    (lambda gate: tasks.steps_cpu.s(str(gate)), TaskProgress(0.75, {"phase": "cpu"})),
], ids=["io", "async", "cpu"])
def test_a_running_task_shows_its_latest_progress(
    features_client: Cluster, features_cluster: LocalCluster, gate: Path, dispatch: Any,
    expected: TaskProgress,
) -> None:
    handle = features_client.dispatch("progress:1", dispatch(gate))
    seen = eventually(lambda: (p := handle.progress()) is not None and p.value == expected.value
                      and p, what="the task's last report on its handle")
    assert seen.meta == expected.meta and seen.at > 0
    assert handle.status() is TaskState.RUNNING
    # The record gets it too (at most a second later): for other clients and taskctl.
    other = features_client.handle(handle.task_id)
    assert eventually(lambda: (p := other.progress()) is not None and p.value == expected.value,
                      what="the report in the record")
    done = taskctl(features_cluster, "--json", "task", "show", handle.task_id)
    assert done.exit_code == 0, done.output
    shown = json.loads(done.output)["progress"]
    assert (shown["value"], shown["meta"]) == (expected.value, expected.meta)
    gate.unlink()
    handle.result(timeout=30)


def test_many_reports_are_passed_on_a_few_times_a_second(
    features_client: Cluster, features_cluster: LocalCluster, gate: Path,
) -> None:
    before = reports_passed(features_cluster)
    handle = features_client.dispatch("progress:2", tasks.steps.s(str(gate)))  # 800 reports at once
    eventually(lambda: (p := handle.progress()) is not None and p.value == 1.0,
               what="the last report")
    gate.unlink()
    assert handle.result(timeout=30) == 4
    passed = reports_passed(features_cluster) - before
    assert 1 <= passed <= 10, passed


def test_the_async_handle_reads_progress_and_none_before_any(
    features_cluster: LocalCluster, gate: Path,
) -> None:
    async def main() -> tuple[TaskProgress | None, TaskProgress | None]:
        async with AsyncCluster.connect(zk=features_cluster.zk, redis=features_cluster.redis,
                                        cluster=features_cluster.cluster) as cluster:
            quiet = await cluster.dispatch("progress:3", tasks.echo.s(1))
            await quiet.result(timeout=30)
            handle = await cluster.dispatch("progress:4", tasks.steps_async.s(str(gate)))
            for _ in range(2000):
                report = await handle.progress()
                if report is not None:
                    break
                await asyncio.sleep(0.01)
            gate.unlink()
            await handle.result(timeout=30)
            return await quiet.progress(), report

    quiet, report = asyncio.run(main())
    assert quiet is None
    assert report is not None and report.value == 0.5 and report.meta == {"phase": "async"}


def test_bad_reports_raise_invalid_progress_in_the_task_and_change_nothing(
    features_client: Cluster, gate: Path,
) -> None:
    handle = features_client.dispatch("progress:5", tasks.bad_progress.s(str(gate)))
    report = eventually(handle.progress, what="the one good report")
    assert (report.value, report.meta) == (0.25, {"ok": True})
    gate.unlink()
    refused = handle.result(timeout=30)
    assert len(refused) == 6, refused


@pytest.mark.parametrize(("value", "meta", "says"), [
    (math.inf, None, "finite number"),
    (None, None, "finite number"),
    ("0.5", None, "finite number"),
    (0.5, {1: "a"}, "text keys"),
    (0.5, {"f": math.nan}, "not JSON"),
    (0.5, {"b": "x" * MAX_PROGRESS_META_BYTES}, "bytes as JSON"),
])
def test_a_report_is_checked_where_it_is_made(value: Any, meta: Any, says: str) -> None:
    with pytest.raises(InvalidProgress, match=says):
        TaskProgress.checked(value, meta)
    assert issubclass(InvalidProgress, ValueError)

