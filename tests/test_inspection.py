"""``taskctl tasks ls`` and ``taskctl retries ls`` on a real cluster: by state, filtered by
node, task name and key, a page at a time, and their bad inputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ringpool import Cluster
from ringpool.testing.local import LocalCluster
from tests import tasks_features as tasks
from tests.helpers import eventually, taskctl


def listed(local: LocalCluster, *args: str) -> dict[str, Any]:
    done = taskctl(local, "--json", *args)
    assert done.exit_code == 0, done.output
    return json.loads(done.output)  # type: ignore[no-any-return]


def every_page(local: LocalCluster, *args: str) -> list[dict[str, Any]]:
    """Every task a listing shows, following its cursors."""
    found, cursor = [], None
    for _ in range(100):
        page = listed(local, *args, *(["--cursor", cursor] if cursor else []))
        found += page["tasks"]
        cursor = page["next"]
        if cursor is None:
            return found
    raise AssertionError("the listing never ended")


def test_running_tasks_are_listed_with_their_node_and_progress(
    features_client: Cluster, features_cluster: LocalCluster, tmp_path: Path,
) -> None:
    gate = tmp_path / "gate"
    gate.touch()
    handles = [features_client.dispatch(f"inspect:{i}", tasks.steps.s(str(gate))) for i in range(4)]
    gpu = features_client.dispatch("inspect:gpu", tasks.gpu_where.s())
    gpu.result(timeout=30)
    ids = {h.task_id for h in handles}
    try:
        running = eventually(lambda: (page := listed(
            features_cluster, "tasks", "ls", "--state", "running", "--key", "inspect:*"))["tasks"]
            and {t["task_id"] for t in page["tasks"]} == ids and all(
                t["progress"] == 1.0 for t in page["tasks"]) and page["tasks"],
            what="the four tasks running, with their progress")
        assert {t["name"] for t in running} == {"features.steps"}
        nodes = {t["node"] for t in running}
        for node in nodes:
            mine = listed(features_cluster, "tasks", "ls", "--node", node, "--key", "inspect:*")
            assert {t["node"] for t in mine["tasks"]} == {node}
            assert {t["task_id"] for t in mine["tasks"]} == {
                t["task_id"] for t in running if t["node"] == node}
        by_name = listed(features_cluster, "tasks", "ls", "--name", "features.st?ps",
                         "--key", "inspect:[0-9]")
        assert by_name["tasks"] == []  # globs are * and ?, so [0-9] is taken literally
        one = listed(features_cluster, "tasks", "ls", "--key", "inspect:1")
        assert [t["task_id"] for t in one["tasks"]] == [handles[1].task_id]
        done = taskctl(features_cluster, "tasks", "ls", "--key", "inspect:*")
        assert done.exit_code == 0 and "features.steps" in done.output and "RUNNING" in done.output
    finally:
        gate.unlink()
    for handle in handles:
        handle.result(timeout=30)


def test_retrying_tasks_are_listed_soonest_first_a_page_at_a_time(
    features_client: Cluster, features_cluster: LocalCluster,
) -> None:
    handles = [features_client.dispatch(f"later:{i}", tasks.later.s(f"not yet {i}", 600 + i))
               for i in range(5)]
    ids = [h.task_id for h in handles]
    eventually(lambda: len(listed(features_cluster, "retries", "ls", "--key", "later:*")[
        "tasks"]) == 5, what="five tasks in the retry set")
    paged = every_page(features_cluster, "retries", "ls", "--key", "later:*", "--limit", "2")
    assert [t["task_id"] for t in paged] == ids  # due 600 s, 601 s, ... from now
    assert {t["error_type"] for t in paged} == {"Retry"}
    assert paged == every_page(features_cluster, "tasks", "ls", "--state", "retrying",
                               "--key", "later:*", "--limit", "3")
    assert listed(features_cluster, "retries", "ls", "--key", "later:*", "--error",
                  "Conn*")["tasks"] == []
    done = taskctl(features_cluster, "retries", "ls", "--key", "later:*", "--limit", "2")
    assert done.exit_code == 0
    assert "next page: taskctl retries ls --key 'later:*' --limit 2 --cursor" in done.output


@pytest.mark.parametrize(("args", "says"), [
    (("tasks", "ls", "--state", "done"), "'done' is not one of"),
    (("tasks", "ls", "--limit", "0"), "--limit"),
    (("tasks", "ls", "--limit", "1001"), "--limit"),
    (("tasks", "ls", "--cursor", "not-a-cursor"), "not a listing cursor"),
    (("retries", "ls", "--cursor", "x:y"), "not a listing cursor"),
    (("tasks", "ls", "--name", "a\tb"), "control characters"),
    (("retries", "ls", "--key", "k" * 300), "longer than"),
])
def test_bad_listing_input_is_a_usage_error(
    features_cluster: LocalCluster, args: tuple[str, ...], says: str,
) -> None:
    done = taskctl(features_cluster, *args)
    assert done.exit_code == 2 and says in done.output
