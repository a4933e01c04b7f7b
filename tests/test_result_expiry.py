"""A task's own result TTL on a real cluster: ``@task(result_ttl=...)``, ``Task(result_ttl=...)``
(carried in the envelope, honoured by the store), shown by ``taskctl task show``, and
its bad inputs."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from ringpool import Cluster, InvalidTask, Task, task
from ringpool.errors import ConfigError
from ringpool.task import MAX_RESULT_TTL_S
from ringpool.testing.local import LocalCluster
from tests import tasks_features as tasks
from tests.helpers import eventually, records, taskctl

DAY_S = 24 * 3600


def show(local: LocalCluster, task_id: str) -> tuple[int, str]:
    done = taskctl(local, "--json", "task", "show", task_id)
    return done.exit_code, done.output


def test_a_declared_result_ttl_expires_the_record_then(
    features_client: Cluster, features_cluster: LocalCluster,
) -> None:
    handle = features_client.dispatch("ttl:1", tasks.short_lived.s(7))
    assert handle.result(timeout=30) == 7
    code, out = show(features_cluster, handle.task_id)
    assert code == 0, out
    shown = json.loads(out)
    assert shown["result_ttl_s"] == 2
    assert 0 < shown["expires_at"] - time.time() <= 2
    eventually(lambda: records(features_cluster, [handle.task_id]) == [None], timeout=30,
               what="the record to expire after its own TTL")
    assert show(features_cluster, handle.task_id)[0] == 3  # not found


@pytest.mark.parametrize(("ttl", "kept_s"), [(1, 1), (0.2, 1), (2 * DAY_S, 2 * DAY_S)])
def test_a_tasks_own_ttl_overrides_the_clusters(
    features_client: Cluster, features_cluster: LocalCluster, ttl: float, kept_s: int,
) -> None:
    handle = features_client.dispatch("ttl:2", Task("features.echo", args=("x",), result_ttl=ttl))
    assert handle.result(timeout=30) == "x"
    (record,) = records(features_cluster, [handle.task_id])
    assert record is not None and record.envelope.result_ttl_s == kept_s
    code, out = show(features_cluster, handle.task_id)
    if kept_s > DAY_S:  # longer than the cluster's 24 h
        assert code == 0 and json.loads(out)["expires_at"] - time.time() > DAY_S + 3600
    else:
        eventually(lambda: records(features_cluster, [handle.task_id]) == [None], timeout=30,
                   what="the record to expire")


def test_without_a_ttl_of_its_own_a_result_keeps_the_clusters(
    features_client: Cluster, features_cluster: LocalCluster,
) -> None:
    handle = features_client.dispatch("ttl:3", tasks.echo.s(1))
    handle.result(timeout=30)
    code, out = show(features_cluster, handle.task_id)
    shown = json.loads(out)
    assert code == 0 and shown["result_ttl_s"] is None
    assert DAY_S - 60 < shown["expires_at"] - time.time() <= DAY_S


@pytest.mark.parametrize("ttl", [0, -1, "1h", True, MAX_RESULT_TTL_S + 1, float("nan")])
def test_a_bad_ttl_is_refused_typed_and_nothing_is_sent(features_client: Cluster, ttl: Any) -> None:
    with pytest.raises(InvalidTask, match="result_ttl"):
        features_client.dispatch("ttl:4", Task("features.echo", args=(1,), result_ttl=ttl))
    with pytest.raises(ConfigError, match="result_ttl"):
        task("features.bad_ttl", result_ttl=ttl)(lambda: None)
