"""``taskctl`` end to end: the real CLI against a real local cluster (2 nodes, 1 coordinator).

Most commands run in-process through click's runner; the interrupted replay and
``dev up`` run as subprocesses so they can be signalled. The module runs on a single
Redis and (the tests marked ``redis_cluster``) on a Redis Cluster (``any_redis``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner, Result

from ringpool import Cluster, Task, TaskFailed, TaskState
from ringpool.cli.taskctl import cli
from ringpool.cli.taskctl.app import Options, Session, run
from ringpool.cli.taskctl.dlq import replay_entries
from ringpool.ops import dlq as dlq_ops
from ringpool.ops.dlq import Tally
from ringpool.ops.members import member_state
from ringpool.store.keys import Keys
from ringpool.testing.local import LocalCluster, RedisServer, ZooKeeperServer
from tests.helpers import dlq_key, dlq_size, eventually, redis_client, taskctl
from tests.tasks_flaky import gate_key, runs_key

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def local(zookeeper: ZooKeeperServer, any_redis: str) -> Iterator[LocalCluster]:
    for attempt in range(3):
        cluster = LocalCluster(
            nodes=2, coordinators=1, tasks=["ringpool.demo", "tests.tasks_flaky"],
            zk=zookeeper.address, redis=any_redis,
            cluster=f"ctl{uuid.uuid4().hex[:10]}",
        )
        try:
            cluster.start()
            break
        except Exception:  # LocalCluster.members() gives up on one slow ZooKeeper connect
            if attempt == 2:
                raise
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def client(local: LocalCluster) -> Iterator[Cluster]:
    with Cluster.connect(zk=local.zk, redis=local.redis, cluster=local.cluster) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def rds(local: LocalCluster) -> Iterator[redis.Redis]:
    r = redis_client(local.redis)
    yield r
    r.close()


def ok(result: Result) -> Result:
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.output}"
    return result


def as_json(result: Result) -> dict:  # type: ignore[type-arg]
    return json.loads(ok(result).stdout)  # type: ignore[no-any-return]


def one_line_error(result: Result, code: int, text: str, prompt: str = "") -> None:
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    if prompt:  # the question went to stderr first
        assert lines[0].startswith(prompt), lines
        lines = lines[1:]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("taskctl: error: ") and text in lines[0], lines[0]
    assert "Traceback" not in result.output


def empty_dlq(local: LocalCluster) -> None:
    ok(taskctl(local, "dlq", "purge", "--all", "--yes"))


def states(rds: redis.Redis, local: LocalCluster, ids: list[str], field: str = "state") -> list:  # type: ignore[type-arg]
    keys = Keys(local.cluster)
    pipe = rds.pipeline(transaction=False)
    for task_id in ids:
        pipe.hget(keys.task(task_id), field)
    return [v.decode() if v is not None else None for v in pipe.execute()]


def dead_letter(
    client: Cluster, rds: redis.Redis, local: LocalCluster, count: int, gate: str
) -> list[str]:
    """``count`` flaky.gate tasks that fail into the DLQ; the gate is then opened."""
    rds.set(gate_key(gate), 1)
    ids: list[str] = []
    for start in range(0, count, 500):
        handles = client.dispatch_many(
            [(f"{gate}:{i}", Task("flaky.gate", args=(gate,)))
             for i in range(start, min(count, start + 500))]
        )
        ids += [h.task_id for h in handles]
    eventually(lambda: all(s == "FAILED" for s in states(rds, local, ids)), 60,
               f"{count} tasks to reach the DLQ")
    assert all(rds.zscore(dlq_key(local.cluster, i), i) is not None for i in ids[:10])
    rds.delete(gate_key(gate))
    return ids


def wait_succeeded(rds: redis.Redis, local: LocalCluster, ids: list[str]) -> None:
    eventually(lambda: all(s == "SUCCEEDED" for s in states(rds, local, ids)), 90,
               f"{len(ids)} replayed tasks to succeed")


def assert_replayed_once(rds: redis.Redis, local: LocalCluster, ids: list[str], gate: str) -> None:
    assert set(states(rds, local, ids, "replays")) == {"1"}
    runs = {k.decode(): int(v) for k, v in rds.hgetall(runs_key(gate)).items()}
    assert len(runs) == len(ids)
    assert {runs[i] for i in ids} == {2}  # failed once, then ran once more on replay
    assert dlq_size(rds, local.cluster) == 0


# -- status, ring, route, task show ------------------------------------------------------------


@pytest.mark.redis_cluster
def test_status_in_both_modes(local: LocalCluster) -> None:
    text = ok(taskctl(local, "status")).stdout
    assert f"cluster {local.cluster}" in text and "ring v" in text
    assert "node-0" in text and "node-1" in text and "serving" in text
    data = as_json(taskctl(local, "--json", "status"))
    assert [m["node_id"] for m in data["members"]] == ["node-0", "node-1"]
    assert abs(sum(m["share"] for m in data["members"]) - 1.0) < 1e-6
    assert all(m["state"] == "serving" and m["in_flight"] is not None for m in data["members"])
    assert all((m["zookeeper"], m["ring_stale_s"]) == ("CONNECTED", 0) for m in data["members"])
    assert data["leader"] and data["leader"] == data["coordinators"][0]
    assert data["ring_version"] >= 2
    assert isinstance(data["dlq"], int) and isinstance(data["retry_set"], int)


@pytest.mark.parametrize(("error", "draining", "zookeeper", "state"), [
    ("UNAVAILABLE: gone", False, "", "unreachable"),
    (None, True, "CONNECTED", "draining"),
    (None, False, "SUSPENDED", "no-zookeeper"),
    (None, False, "LOST", "no-zookeeper"),
    (None, False, "CONNECTED", "serving"),
    (None, False, "", "serving"),  # a node from before the field
])
def test_a_members_state_from_its_status(
    error: str | None, draining: bool, zookeeper: str, state: str
) -> None:
    assert member_state(error, draining, zookeeper) == state


def test_ring_in_both_modes(local: LocalCluster) -> None:
    text = ok(taskctl(local, "ring", "--keys", "4000")).stdout
    assert "node-0" in text and "█" in text and "measured over 4000 sample keys" in text
    data = as_json(taskctl(local, "--json", "ring", "--keys", "4000"))
    members = data["members"]
    assert abs(sum(m["measured_share"] for m in members) - 1.0) < 1e-6
    for member in members:  # 4000 keys measure each share to within a few points
        assert abs(member["measured_share"] - member["share"]) < 0.05
    assert "measured_share" not in as_json(taskctl(local, "--json", "ring"))["members"][0]


def test_route_in_both_modes_and_from_stdin(local: LocalCluster, client: Cluster) -> None:
    keys = [f"user:{i}" for i in range(20)]
    data = as_json(taskctl(local, "--json", "route", *keys))
    assert [r["key"] for r in data["routes"]] == keys
    assert all(r["owner"] == client.owner(r["key"]) for r in data["routes"])
    assert {r["owner"] for r in data["routes"]} == {"node-0", "node-1"}
    text = ok(taskctl(local, "route", "-", input="\n".join(keys) + "\n")).stdout
    for key in keys:
        line = next(line for line in text.splitlines() if line.split()[0] == key)
        assert client.owner(key) in line


@pytest.mark.redis_cluster
def test_task_show_in_both_modes(local: LocalCluster, client: Cluster) -> None:
    done = client.dispatch("show:1", Task("demo.add", args=(1, 2)))
    assert done.result(timeout=30) == 3
    text = ok(taskctl(local, "task", "show", done.task_id)).stdout
    assert "SUCCEEDED" in text and "demo.add" in text and "result" in text
    data = as_json(taskctl(local, "--json", "task", "show", done.task_id))
    assert data["state"] == "SUCCEEDED" and data["result"] == "3" and data["attempt"] == 1
    assert data["node"] == client.owner("show:1") and data["finished_at_iso"]
    # Too short to be marked RUNNING, yet its start is recorded with its outcome.
    assert data["accepted_at"] <= data["started_at"] <= data["finished_at"]

    failed = client.dispatch("show:2", Task("demo.fail", args=("kaput [bold]x[/bold]",)))
    eventually(lambda: failed.status() is TaskState.FAILED, 30, "demo.fail to fail")
    text = ok(taskctl(local, "task", "show", failed.task_id)).stdout
    assert "Traceback (most recent call last)" in text
    # In the error line and the traceback's last line, as raised: neither markup nor escaped.
    assert text.count("ValueError: kaput [bold]x[/bold]") == 2 and "\\[" not in text
    assert "(in the DLQ)" in text
    data = as_json(taskctl(local, "--json", "task", "show", failed.task_id))
    assert data["error_type"] == "ValueError" and data["in_dlq"] is True
    assert "raise ValueError(message)" in data["traceback"]


def test_a_long_task_shows_running_from_when_it_started(
    local: LocalCluster, client: Cluster
) -> None:
    handle = client.dispatch("show:3", Task("probe.run", args=("long", 2.0)))
    eventually(lambda: handle.status() == "RUNNING", 10, "the task to show RUNNING")
    running = as_json(taskctl(local, "--json", "task", "show", handle.task_id))
    assert running["state"] == "RUNNING" and running["started_at"] >= running["accepted_at"]
    assert handle.result(timeout=30)["task_id"] == handle.task_id
    done = as_json(taskctl(local, "--json", "task", "show", handle.task_id))
    assert done["started_at"] == running["started_at"]
    assert done["finished_at"] >= done["started_at"] + 2.0


# -- the DLQ: ls, show, stats --------------------------------------------------------------------


@pytest.mark.redis_cluster
def test_dlq_ls_show_stats_in_both_modes(
    local: LocalCluster, client: Cluster, rds: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dlq_ops, "DLQ_PAGE", 3)  # seven entries: three pages
    empty_dlq(local)
    flaky = dead_letter(client, rds, local, 6, f"ls{uuid.uuid4().hex[:6]}")
    fail = client.dispatch("ls:fail", Task("demo.fail", args=("nope",)))
    eventually(lambda: fail.status() == "FAILED", 30, "demo.fail to fail")

    text = ok(taskctl(local, "dlq", "ls")).stdout
    assert all(i in text for i in [*flaky, fail.task_id])
    assert "GateClosed" in text and "7 shown; the DLQ holds 7" in text
    data = as_json(taskctl(local, "--json", "dlq", "ls", "--task", "flaky.*"))
    assert sorted(e["task_id"] for e in data["entries"]) == sorted(flaky)
    assert data["total"] == 7
    data = as_json(taskctl(local, "--json", "dlq", "ls", "--error", "ValueError"))
    assert [e["task_id"] for e in data["entries"]] == [fail.task_id]
    assert as_json(taskctl(local, "--json", "dlq", "ls", "--limit", "2"))["count"] == 2
    assert as_json(taskctl(local, "--json", "dlq", "ls", "--since", "10m"))["count"] == 7
    old = as_json(taskctl(local, "--json", "dlq", "ls", "--since", "1ms"))["count"]
    assert old < 7

    text = ok(taskctl(local, "dlq", "show", fail.task_id)).stdout
    assert "ValueError: nope" in text and "Traceback" in text
    data = as_json(taskctl(local, "--json", "dlq", "show", flaky[0]))
    assert data["error_type"] == "GateClosed" and data["in_dlq"] and data["dead_lettered_at"]

    text = ok(taskctl(local, "dlq", "stats")).stdout
    assert "DLQ 7 entries" in text and "flaky.gate" in text and "GateClosed" in text
    stats = as_json(taskctl(local, "--json", "dlq", "stats"))
    assert stats["total"] == stats["matched"] == 7
    assert stats["by_task"] == {"flaky.gate": 6, "demo.fail": 1}
    assert stats["by_error"] == {"GateClosed": 6, "ValueError": 1}
    assert stats["by_task_and_error"] == [
        {"task": "flaky.gate", "error_type": "GateClosed", "count": 6},
        {"task": "demo.fail", "error_type": "ValueError", "count": 1}]
    only = as_json(taskctl(local, "--json", "dlq", "stats", "--error", "Gate*"))
    assert (only["total"], only["matched"], only["by_task"]) == (7, 6, {"flaky.gate": 6})
    assert "7 entries, 6 matched" in ok(taskctl(local, "dlq", "stats", "--task", "flaky.*")).stdout
    assert "2 shown (the oldest that match; --limit 2); the DLQ holds 7" in ok(
        taskctl(local, "dlq", "ls", "--limit", "2")).stdout
    empty_dlq(local)


# -- replay --------------------------------------------------------------------------------------


def test_replay_1000_at_a_rate_then_all_succeed(
    local: LocalCluster, client: Cluster, rds: redis.Redis
) -> None:
    empty_dlq(local)
    gate = f"rate{uuid.uuid4().hex[:6]}"
    ids = dead_letter(client, rds, local, 1000, gate)
    rate = 250.0
    summary = as_json(taskctl(local, "--json", "dlq", "replay", "--task", "flaky.gate",
                          "--rate", f"{rate:g}/s", "--yes"))
    assert summary["replayed"] == 1000 and summary["skipped"] == 0 and summary["failed"] == 0
    # Each accept stamps the record: the spread of those stamps is the rate the nodes saw.
    # The bucket starts with a tenth of a second's burst, so 975 tokens pace the run.
    stamps = sorted(float(s) for s in states(rds, local, ids, "accepted_at"))
    measured = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    expected_s = (1000 - rate / 10) / rate
    print(f"replay rate: asked {rate:g}/s, measured {measured:.1f}/s from accept stamps, "
          f"run took {summary['elapsed_s']}s (ideal {expected_s:.2f}s)")
    # The bucket promises a ceiling, not a floor: a loaded machine may replay slower, never
    # faster. So the rate is bounded above; the run may take longer, within reason.
    assert measured <= 1.2 * rate
    assert 0.8 * expected_s <= summary["elapsed_s"] <= 3 * expected_s
    wait_succeeded(rds, local, ids)
    assert_replayed_once(rds, local, ids, gate)


# A test run started in the background has SIGINT ignored, and so would taskctl: give
# it Python's Ctrl-C handling back first, as it has when started from a terminal.
RUN_TASKCTL = ("import runpy, signal, sys; "
               "signal.signal(signal.SIGINT, signal.default_int_handler); "
               "sys.argv[0] = 'taskctl'; runpy.run_module('ringpool.cli.taskctl', run_name='__main__')")


def taskctl_process(*args: str) -> subprocess.Popen[str]:
    """``taskctl`` in its own process, answering Ctrl-C (SIGINT) as in a terminal."""
    return subprocess.Popen(
        [sys.executable, "-c", RUN_TASKCTL, *args],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},  # this tree's code
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _replay_process(local: LocalCluster, *args: str) -> subprocess.Popen[str]:
    return taskctl_process("--zk", local.zk, "--redis", local.redis,
                           "--cluster", local.cluster, "dlq", "replay", *args)


def test_interrupted_replays_resume_and_replay_each_entry_once(
    local: LocalCluster, client: Cluster, rds: redis.Redis
) -> None:
    empty_dlq(local)
    gate = f"kill{uuid.uuid4().hex[:6]}"
    ids = dead_letter(client, rds, local, 300, gate)
    args = ("--task", "flaky.gate", "--rate", "50/s", "--yes")  # 6 s: room to interrupt

    # Ctrl-C a sixth of the way: a clean stop that says how far it got.
    first = _replay_process(local, *args)
    eventually(lambda: dlq_size(rds, local.cluster) <= 250, 60, "a sixth of the replay")
    first.send_signal(signal.SIGINT)
    out, err = first.communicate(timeout=30)
    assert first.returncode == 130, (out, err)
    assert "taskctl: error: interrupted: replayed" in err and "run the same command again" in err

    # SIGKILL half way: no chance to clean up at all.
    second = _replay_process(local, *args)
    eventually(lambda: dlq_size(rds, local.cluster) <= 150, 60, "half the replay")
    second.kill()
    second.communicate(timeout=30)
    assert second.returncode == -signal.SIGKILL

    left = dlq_size(rds, local.cluster)
    assert 0 < left <= 150
    summary = as_json(taskctl(local, "--json", "dlq", "replay", *args))
    # A batch the killed process had already sent may still be accepted after ``left`` was
    # read, so fewer may be left to replay; assert_replayed_once checks exactly-once.
    assert 0 < summary["replayed"] <= left and summary["failed"] == 0
    wait_succeeded(rds, local, ids)
    assert_replayed_once(rds, local, ids, gate)
    nothing = ok(taskctl(local, "dlq", "replay", *args))
    assert "nothing" in nothing.output or "replayed 0" in nothing.output


@pytest.mark.redis_cluster
def test_replay_ids_dry_run_confirmation_and_no_double_replay(
    local: LocalCluster, client: Cluster, rds: redis.Redis
) -> None:
    empty_dlq(local)
    gate = f"ids{uuid.uuid4().hex[:6]}"
    ids = dead_letter(client, rds, local, 3, gate)

    dry = as_json(taskctl(local, "--json", "dlq", "replay", "--all", "--dry-run"))
    assert dry["dry_run"] and dry["would_replay"] == 3
    assert "would replay 3" in ok(taskctl(local, "dlq", "replay", "--all", "--dry-run")).stdout
    declined = taskctl(local, "dlq", "replay", ids[0], input="n\n")
    one_line_error(declined, 1, "aborted: nothing was replayed",
                   prompt="Replay 1 dead-lettered tasks? [y/N]")
    assert dlq_size(rds, local.cluster) == 3

    text = ok(taskctl(local, "dlq", "replay", ids[0], input="y\n")).stdout
    assert "replayed 1, skipped 0, failed 0 of 1" in text
    again = as_json(taskctl(local, "--json", "dlq", "replay", ids[0], "--yes"))
    assert again["replayed"] == 0 and again["skipped"] == 1

    # Even a stale selection sent again is refused by the node: never two live copies.
    options = Options(zk=local.zk, redis=local.redis, cluster=local.cluster, token="",
                      json=False, debug=False, timeout_s=5.0)
    tally = Tally(selected=1)

    async def resend(session: Session) -> None:
        await replay_entries(session, [ids[0]], tally, None, None)

    run(options, resend)
    assert (tally.replayed, tally.skipped, tally.failed) == (0, 1, 0)

    both = as_json(taskctl(local, "--json", "dlq", "replay", ids[1], ids[2], "--yes"))
    assert both["replayed"] == 2
    wait_succeeded(rds, local, ids)
    assert_replayed_once(rds, local, ids, gate)


# -- purge ---------------------------------------------------------------------------------------


@pytest.mark.redis_cluster
def test_purge_with_and_without_confirmation(
    local: LocalCluster, client: Cluster, rds: redis.Redis
) -> None:
    empty_dlq(local)
    ids = dead_letter(client, rds, local, 4, f"purge{uuid.uuid4().hex[:6]}")
    keys = Keys(local.cluster)

    declined = taskctl(local, "dlq", "purge", ids[0], input="n\n")
    one_line_error(declined, 1, "aborted: nothing was purged",
                   prompt="Purge 1 DLQ entry and delete their records? [y/N]")
    assert dlq_size(rds, local.cluster) == 4 and rds.exists(keys.task(ids[0]))

    accepted = ok(taskctl(local, "dlq", "purge", ids[0], input="y\n"))
    assert "purged 1" in accepted.stdout
    assert rds.zscore(dlq_key(local.cluster, ids[0]), ids[0]) is None
    assert not rds.exists(keys.task(ids[0]))

    assert as_json(taskctl(local, "--json", "dlq", "purge", "--older-than", "1h", "--yes")) == {
        "requested": 0, "purged": 0}
    data = as_json(taskctl(local, "--json", "dlq", "purge", "--older-than", "0s", "--yes"))
    assert data == {"requested": 3, "purged": 3}
    assert dlq_size(rds, local.cluster) == 0 and not any(rds.exists(keys.task(i)) for i in ids)


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (("task", "show", "no-such-task"), 3, "no task no-such-task"),
        (("dlq", "show", "no-such-task"), 3, "not in the dead-letter queue"),
        (("dlq", "replay", "no-such-task", "--yes"), 3, "no such task: no-such-task"),
        (("dlq", "purge", "no-such-task", "--yes"), 3, "not in the dead-letter queue"),
        (("dlq", "ls", "--since", "3 fortnights"), 2, "is not a duration"),
        (("dlq", "purge", "--older-than", "soon"), 2, "is not a duration"),
        (("dlq", "replay", "--all", "--rate", "fast"), 2, "is not a rate"),
        (("dlq", "replay"), 2, "name what to replay"),
        (("dlq", "purge"), 2, "name what to purge"),
        (("dlq", "stats", "--limit", "5"), 2, "No such option '--limit'"),
        (("config", "set", "pool.max_workers=0"), 5, "pool.max_workers must be in [1, 10000]"),
        (("route", ""), 5, "routing key must be a non-empty string"),
        (("route", "--group", "a b", "k"), 2, "invalid group 'a b'"),
        (("route", "--group", "tpu", "k"), 4, "no nodes of group 'tpu'"),
        (("dev", "up", "--group", "gpu"), 2, "expected NAME=COUNT"),
        (("dev", "up", "--group", "gpu=0"), 2, "expected NAME=COUNT"),
        (("dev", "up", "--group", "a/b=1"), 2, "invalid group"),
        (("no-such-command",), 2, "No such command"),
    ],
)
def test_bad_input_gives_one_line_and_its_exit_code(
    local: LocalCluster, args: tuple[str, ...], code: int, text: str
) -> None:
    one_line_error(taskctl(local, *args), code, text)


def test_unreachable_zookeeper_fails_within_the_timeout(local: LocalCluster) -> None:
    started = time.monotonic()
    result = CliRunner().invoke(
        cli, ["--zk", "127.0.0.1:1", "--redis", local.redis, "--timeout", "2", "status"])
    elapsed = time.monotonic() - started
    one_line_error(result, 4, "cannot reach ZooKeeper at 127.0.0.1:1")
    assert elapsed < 8.0  # the 2 s timeout plus teardown, far below kazoo's own defaults
    debug = CliRunner().invoke(
        cli, ["--zk", "127.0.0.1:1", "--redis", local.redis, "--timeout", "2", "--debug", "ring"])
    assert debug.exit_code == 4 and "Traceback" in debug.stderr


def test_unreachable_redis_is_exit_4(local: LocalCluster) -> None:
    result = CliRunner().invoke(
        cli, ["--zk", local.zk, "--redis", "redis://127.0.0.1:1/0", "--timeout", "2", "dlq", "ls"])
    one_line_error(result, 4, "cannot reach Redis")


def test_version_help_and_completion() -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["--version"]).stdout.startswith("taskctl ")
    assert "dlq" in runner.invoke(cli, ["--help"]).stdout
    script = runner.invoke(cli, ["completion", "bash"])
    assert script.exit_code == 0 and "_TASKCTL_COMPLETE" in script.stdout


# -- dev up --------------------------------------------------------------------------------------


@pytest.mark.parametrize("servers_after_up", [False, True], ids=["taskctl-flags", "dev-up-flags"])
def test_dev_up_prints_settings_serves_and_tears_down(
    zookeeper: ZooKeeperServer, redis_server: RedisServer, servers_after_up: bool
) -> None:
    cluster = f"dev{uuid.uuid4().hex[:8]}"
    servers = ["--zk", zookeeper.address, "--redis", redis_server.url]
    process = taskctl_process(*([] if servers_after_up else servers), "--cluster", cluster,
                              "dev", "up", "--nodes", "1", "--coordinators", "0",
                              *(servers if servers_after_up else []))
    try:
        assert process.stdout is not None
        exports: dict[str, str] = {}
        deadline = time.monotonic() + 60
        while len(exports) < 3 and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            name, _, value = line.strip().removeprefix("export ").partition("=")
            exports[name] = value
        assert exports == {"RINGPOOL_ZK": zookeeper.address, "RINGPOOL_REDIS": redis_server.url,
                           "RINGPOOL_CLUSTER": cluster}
        status = CliRunner().invoke(cli, ["--json", "status"], env=exports)
        assert status.exit_code == 0, status.output
        assert [m["node_id"] for m in json.loads(status.stdout)["members"]] == ["node-0"]
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        assert "stopped" in err
        gone = CliRunner().invoke(cli, ["--json", "status"], env=exports)
        assert json.loads(gone.stdout)["members"] == []
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=30)


def test_a_handle_made_after_a_replay_sees_the_new_run(
    local: LocalCluster, client: Cluster, rds: redis.Redis
) -> None:
    gate = f"again{uuid.uuid4().hex[:6]}"
    rds.set(gate_key(gate), 1)
    first = client.dispatch(f"{gate}:0", Task("flaky.gate", args=(gate,)))
    with pytest.raises(TaskFailed):
        first.result(timeout=30)
    rds.delete(gate_key(gate))
    ok(taskctl(local, "dlq", "replay", first.task_id, "--yes"))
    # The first handle still lives (and holds the failure it saw); a new one follows the
    # task as it is now.
    assert client.handle(first.task_id).result(timeout=30) == "ok"
