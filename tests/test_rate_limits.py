"""Cluster-wide rate limits on a real cluster: declared (``@task(rate_limit=...)``), set and
lifted live (``taskctl config set rate_limits.<task>=...``), waiting (never failing),
shown while they wait, handed back by a drain, and their bad inputs.

The bounds asserted here are what the limit guarantees (starts spread over at least
the time the rate allows), never how fast anything runs. ``bench/ratelimit.py``
measures the accuracy.
"""

from __future__ import annotations

import json
import signal
from typing import Any

import pytest

from ringpool import Cluster, Task, TaskCancelled, TaskState, task
from ringpool.errors import ConfigError
from ringpool.testing.local import LocalCluster
from tests import tasks_features as tasks
from tests.helpers import FEATURE_NODES, eventually, metric_sum, records, taskctl

DEFAULT_NODES = ("node-0", "node-1")


def set_limits(local: LocalCluster, **limits: str) -> None:
    """Set rate limits (task name with '_' for '.') and wait until every node applied them."""
    done = taskctl(local, "--json", "config", "set",
                        *(f"rate_limits.{name.replace('__', '.')}={value}"
                          for name, value in limits.items()))
    assert done.exit_code == 0, done.output
    version = json.loads(done.output)["version"]
    eventually(lambda: all(metric_sum(local, [n], "ringpool_config_version") >= version
                           for n in FEATURE_NODES), what=f"every node to apply config v{version}")


def spread_s(starts: list[float]) -> float:
    return max(starts) - min(starts)


def test_a_declared_limit_spreads_the_starts_and_none_fails(features_client: Cluster) -> None:
    handles = features_client.dispatch_many([(f"limited:{i}", tasks.limited.s(i)) for i in range(60)])
    starts = [h.result(timeout=60) for h in handles]
    # 20/s with a burst of 4: the 60 starts take at least (60 - 4) / 20 s.
    assert spread_s(starts) >= (60 - 4) / 20 * 0.95


def test_a_live_limit_holds_cluster_wide_with_one_call_per_batch(
    features_client: Cluster, features_cluster: LocalCluster,
) -> None:
    set_limits(features_cluster, features__burst="200/s")
    try:
        calls_before = metric_sum(features_cluster, DEFAULT_NODES,
                                  "ringpool_redis_round_trip_seconds_count", op="tokens")
        handles = features_client.dispatch_many([(f"burst:{i}", tasks.burst.s(i)) for i in range(600)])
        starts = [h.result(timeout=60) for h in handles]
        calls = metric_sum(features_cluster, DEFAULT_NODES,
                           "ringpool_redis_round_trip_seconds_count", op="tokens") - calls_before
    finally:
        set_limits(features_cluster, features__burst="declared")
    assert spread_s(starts) >= (600 - 40) / 200 * 0.95  # both nodes took from one bucket
    assert calls < 600 / 5, f"{calls} token calls for 600 starts"


def test_lifting_a_limit_live_starts_what_waits_and_waiting_tasks_show_as_queued(
    features_client: Cluster, features_cluster: LocalCluster,
) -> None:
    handles = features_client.dispatch_many([(f"lift:{i}", tasks.limited.s(i)) for i in range(400)])
    features_client.flush(timeout=30)
    eventually(lambda: metric_sum(features_cluster, DEFAULT_NODES,
                                  "ringpool_rate_limit_waiting", task="features.limited") > 100,
               what="starts waiting for tokens")
    done = taskctl(features_cluster, "--json", "tasks", "ls", "--state", "queued",
                        "--name", "features.limited", "--key", "lift:*")
    assert done.exit_code == 0, done.output
    listed = json.loads(done.output)["tasks"]
    assert listed and {t["state"] for t in listed} == {"QUEUED"}
    set_limits(features_cluster, features__limited="unlimited")
    try:
        # At 20/s the 400 would take 20 s; lifted, what waits starts at once.
        starts = [h.result(timeout=15) for h in handles]
    finally:
        set_limits(features_cluster, features__limited="declared")
    assert len(starts) == 400


def test_a_draining_node_hands_back_the_starts_that_wait(
    features_client: Cluster, features_cluster: LocalCluster,
) -> None:
    features_cluster.start_node("drainer", extra=["--drain-timeout", "0.5"])
    eventually(lambda: "drainer" in features_client.ring.members, what="the features_client to see drainer")
    keys = [k for k in (f"drain:{i}" for i in range(2000))
            if features_client.owner(k) == "drainer"][:100]
    handles = features_client.dispatch_many([(k, tasks.limited.s(i)) for i, k in enumerate(keys)])
    features_client.flush(timeout=30)
    assert features_cluster.stop_node("drainer", signal.SIGTERM) == 0
    starts = [h.result(timeout=60) for h in handles]  # handed back, run by the others
    assert len(starts) == len(keys)
    ran_on = {r.node for r in records(features_cluster, [h.task_id for h in handles]) if r}
    assert ran_on <= {"node-0", "node-1", "drainer"} and ran_on & {"node-0", "node-1"}


def test_a_start_cancelled_while_it_waits_for_a_token_never_runs(
    features_client: Cluster, features_cluster: LocalCluster,
) -> None:
    handles = features_client.dispatch_many([(f"cancel:{i}", tasks.limited.s(i)) for i in range(80)])
    last = handles[-1]
    assert last.status() is TaskState.QUEUED  # 20/s: the last waits about 4 s for its token
    assert last.cancel() is TaskState.QUEUED  # the state it was in
    with pytest.raises(TaskCancelled):
        last.result(timeout=30)
    assert len([h.result(timeout=60) for h in handles[:-1]]) == 79
    (record,) = records(features_cluster, [last.task_id])
    assert record is not None and record.state is TaskState.CANCELLED
    assert record.started_at is None  # it never ran


@pytest.mark.parametrize("rate", ["fast", "0/s", "-5/s", 0, -1, float("inf"), True, "5/d"])
def test_a_bad_declared_rate_is_refused_when_the_task_is_declared(rate: Any) -> None:
    with pytest.raises(ConfigError, match="rate"):
        task("features.bad_rate", rate_limit=rate)(lambda: None)


@pytest.mark.parametrize("value", ["fast", "0/s", "-1/s", "1/d", ""])
def test_a_bad_live_rate_is_refused_and_changes_nothing(
    features_cluster: LocalCluster, value: str,
) -> None:
    done = taskctl(features_cluster, "config", "set", f"rate_limits.features.burst={value}")
    assert done.exit_code in (2, 5) and "error" in done.output
    done = taskctl(features_cluster, "config", "get", "rate_limits.features.burst")
    assert done.exit_code == 0 and done.output.strip() == "declared"


def test_a_rate_limit_on_no_task_name_is_refused(features_cluster: LocalCluster) -> None:
    done = taskctl(features_cluster, "config", "set", "rate_limits.=5/s")
    assert done.exit_code == 5 and "name a task" in done.output


def test_tasks_without_a_limit_never_ask_for_tokens(
    features_client: Cluster, features_cluster: LocalCluster,
) -> None:
    before = metric_sum(features_cluster, FEATURE_NODES,
                        "ringpool_redis_round_trip_seconds_count", op="tokens")
    handles = features_client.dispatch_many([(f"free:{i}", Task("features.echo", args=(i,)))
                                    for i in range(50)])
    assert [h.result(timeout=30) for h in handles] == list(range(50))
    assert metric_sum(features_cluster, FEATURE_NODES,
                      "ringpool_redis_round_trip_seconds_count", op="tokens") == before
