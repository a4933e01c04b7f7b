"""Periodic schedules: when ticks fall (DST changes, with a fixed clock), the catch-up
policy, exactly-once claims, bad input, and the real cluster: the SDK, ``taskctl``,
schedules declared by task modules, and a tick every second across a leader kill."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import signal
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import redis
from click.testing import Result

from ringpool import (
    Cluster,
    InvalidKey,
    InvalidSchedule,
    ScheduleNotFound,
    Task,
    UnknownTask,
    periodic,
)
from ringpool.core import schedule as schedules
from ringpool.core.envelope import build
from ringpool.core.schedule import Timing
from ringpool.errors import ConfigError
from ringpool.store.keys import Keys
from ringpool.store.schedules import PutResult
from ringpool.store.store import StateStore
from ringpool.testing.local import LocalCluster, RedisServer, ZooKeeperServer
from ringpool_coordinator.ticker import ScheduleTicker
from ringpool_node.server import load_task_modules
from tests import tasks_conformance as tasks
from tests.helpers import connected, eventually, metric_value, records, taskctl

BERLIN = ZoneInfo("Europe/Berlin")
WAIT_S = 30.0


def berlin(*when: int) -> float:
    return datetime(*when, tzinfo=BERLIN).timestamp()  # type: ignore[misc]


def local_times(stamps: list[float]) -> list[str]:
    return [datetime.fromtimestamp(t, BERLIN).isoformat() for t in stamps]


# -- when ticks fall ------------------------------------------------------------------------


def walk(timing: Timing, start: float, end: float) -> list[float]:
    ticks, at = [], timing.next_tick(start)
    while at < end:
        ticks.append(at)
        at = timing.next_tick(at)
    return ticks


def test_a_daily_cron_across_both_dst_changes_runs_once_a_day() -> None:
    daily = Timing(cron="30 2 * * *", tz="Europe/Berlin")
    # 2026-03-29: 02:00 -> 03:00, so 02:30 does not exist: it runs when the gap ends.
    assert local_times(walk(daily, berlin(2026, 3, 27, 12), berlin(2026, 3, 30, 12))) == [
        "2026-03-28T02:30:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]
    # 2026-10-25: 03:00 -> 02:00, so 02:30 happens twice: it runs once.
    assert local_times(walk(daily, berlin(2026, 10, 23, 12), berlin(2026, 10, 26, 12))) == [
        "2026-10-24T02:30:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]


def test_an_hourly_cron_runs_each_real_hour_across_dst() -> None:
    hourly = Timing(cron="0 * * * *", tz="Europe/Berlin")
    spring = walk(hourly, berlin(2026, 3, 29, 0, 30), berlin(2026, 3, 29, 4, 30))
    assert local_times(spring) == ["2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00",
                                   "2026-03-29T04:00:00+02:00"]
    autumn = walk(hourly, berlin(2026, 10, 25, 0, 30), berlin(2026, 10, 25, 3, 30))
    assert local_times(autumn) == ["2026-10-25T01:00:00+02:00", "2026-10-25T02:00:00+02:00",
                                   "2026-10-25T02:00:00+01:00", "2026-10-25T03:00:00+01:00"]
    assert all(b - a == 3600 for a, b in itertools.pairwise(autumn))


def test_every_counts_seconds_since_the_epoch_whatever_the_time_zone() -> None:
    every = Timing(every_s=3600)
    ticks = walk(every, berlin(2026, 10, 25, 0, 30), berlin(2026, 10, 25, 3, 30))
    assert all(t % 3600 == 0 for t in ticks) and len(ticks) == 4  # 4 real hours that night
    assert Timing(every_s=30).next_tick(60.0) == 90.0 and Timing(every_s=30).next_tick(59.9) == 60


def test_catch_up_fires_the_latest_missed_tick_once_and_counts_the_rest() -> None:
    every = Timing(every_s=60)
    late = every.catch_up(600.0, 600.2)  # merely late: that tick, nothing skipped
    assert (late.fire_at, late.skipped, late.next_at) == (600.0, 0, 660.0)
    outage = every.catch_up(600.0, 1234.5)  # ticks 600..1200 missed
    assert (outage.fire_at, outage.skipped, outage.next_at) == (1200.0, 10, 1260.0)
    daily = Timing(cron="30 2 * * *", tz="Europe/Berlin")
    week = daily.catch_up(berlin(2026, 10, 20, 2, 30), berlin(2026, 10, 26, 12))
    assert local_times([week.fire_at, week.next_at]) == [
        "2026-10-26T02:30:00+01:00", "2026-10-27T02:30:00+01:00"]
    assert week.skipped == 6


@pytest.mark.parametrize(("options", "message"), [
    ({"cron": "* * *"}, "five fields"),
    ({"cron": "* * * * * *"}, "five fields"),
    ({"cron": "61 * * * *"}, "bad cron"),
    ({"cron": "0 0 30 2 *"}, "bad cron"),
    ({"cron": "0 3 * * *", "tz": "Mars/Olympus"}, "unknown time zone"),
    ({"every": 10, "tz": "Europe/Berlin"}, "cron schedule only"),
    ({}, "one of them"),
    ({"cron": "0 3 * * *", "every": 10}, "one of them"),
    ({"every": 0}, "every must be"),
    ({"every": -5}, "every must be"),
    ({"every": math.nan}, "every must be"),
    ({"every": 400 * 86400}, "every must be"),
    ({"every": "10"}, "every must be"),
], ids=["three-fields", "six-fields", "bad-minute", "no-such-day", "bad-tz", "tz-with-every",
        "neither", "both", "zero", "negative", "nan", "too-long", "text"])
def test_bad_timing_is_refused_typed(options: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidSchedule, match=message):
        schedules.timing(**options)  # type: ignore[arg-type]


def test_a_bad_schedule_is_refused_typed() -> None:
    every = Timing(every_s=10)
    for name in ("", "has space", "-leading", "x" * 201, 7):
        with pytest.raises(InvalidSchedule):
            schedules.Schedule(name, "k", tasks.add.s(1, 1), every)  # type: ignore[arg-type]
    with pytest.raises(InvalidKey):
        schedules.Schedule("ok", "", tasks.add.s(1, 1), every)
    with pytest.raises(InvalidSchedule, match="idempotency_key"):
        schedules.Schedule("ok", "k", tasks.add.s(1, 1).with_options(idempotency_key="x"), every)
    with pytest.raises(InvalidSchedule, match="must be a Task"):
        schedules.Schedule("ok", "k", "conformance.add", every)  # type: ignore[arg-type]


def test_a_schedule_declared_twice_differently_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schedules, "DECLARED", {})
    periodic("twice", "k", tasks.add.s(1, 1), every=60)
    periodic("twice", "k", tasks.add.s(1, 1), every=60)  # the same again: fine
    with pytest.raises(InvalidSchedule, match="declared twice"):
        periodic("twice", "k", tasks.add.s(1, 1), every=30)


def test_a_node_refuses_a_declared_schedule_of_a_task_it_does_not_serve(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(schedules, "DECLARED", {})
    monkeypatch.setattr("ringpool_node.server.DECLARED", schedules.DECLARED)
    with pytest.raises(ConfigError, match=r"no\.such\.task"):
        load_task_modules(("tests.tasks_periodic_unknown",))


# -- claiming ticks in Redis, with a fixed clock -------------------------------------------


def with_store(redis_url: str, cluster: str, body):  # type: ignore[no-untyped-def]
    async def run():  # type: ignore[no-untyped-def]
        store = StateStore.from_url(redis_url, cluster)
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(run())


async def put(store: StateStore, name: str, timing: Timing, next_at: float,
              rds: redis.Redis) -> None:
    """Publish a schedule whose next tick is ``next_at`` (where a fixed clock starts)."""
    await store.schedules.put(name, "k", build("k", tasks.add.s(1, 1), 0), timing, "test")
    keys = Keys(store.cluster)
    rds.zadd(keys.schedules(keys.schedule_partition(name)), {name: next_at})


def test_ticks_across_dst_changes_with_a_fixed_clock(
    redis_url: str, redis_client: redis.Redis, cluster_name: str
) -> None:
    async def body(store: StateStore) -> list[list[float]]:
        now = [0.0]

        async def clock() -> float:
            return now[0]

        ticker = ScheduleTicker(store, clock=clock)
        walks = []
        for name, timing, start, end in [
            ("spring", Timing(cron="30 2 * * *", tz="Europe/Berlin"), berlin(2026, 3, 27, 12),
             berlin(2026, 3, 30, 12)),
            ("autumn", Timing(cron="30 2 * * *", tz="Europe/Berlin"), berlin(2026, 10, 23, 12),
             berlin(2026, 10, 26, 12)),
            ("hourly", Timing(cron="0 * * * *", tz="Europe/Berlin"), berlin(2026, 10, 25, 0, 30),
             berlin(2026, 10, 25, 3, 30)),
        ]:
            await put(store, name, timing, timing.next_tick(start), redis_client)
            fired = []
            for step in range(int((end - start) // 600) + 1):  # the clock moves 10 min a pass
                now[0] = start + step * 600
                if await ticker.tick_due():
                    stored = await store.schedules.get(name)
                    assert stored is not None and stored.last_tick_at is not None
                    fired.append(stored.last_tick_at)
            await store.schedules.pause(name)
            walks.append(fired)
        return walks

    spring, autumn, hourly = with_store(redis_url, cluster_name, body)
    assert local_times(spring) == [
        "2026-03-28T02:30:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]
    assert local_times(autumn) == [
        "2026-10-24T02:30:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]
    assert len(hourly) == 4 and len(set(hourly)) == 4


def test_a_tick_is_claimed_once_by_racing_leaders_and_an_outage_is_coalesced(
    redis_url: str, redis_client: redis.Redis, cluster_name: str
) -> None:
    async def body(store: StateStore) -> tuple[list[int], int, int, list[float]]:
        other = StateStore.from_url(redis_url, cluster_name)
        try:
            await put(store, "race", Timing(every_s=60), 600.0, redis_client)
            async def clock() -> float:
                return 1234.5  # ticks 600..1200 were missed

            first, second = ScheduleTicker(store, clock=clock), ScheduleTicker(other, clock=clock)
            claims = await asyncio.gather(*(t.tick_due() for t in (first, second, first, second)))
            stored = await store.schedules.get("race")
            assert stored is not None
            page = await store.scheduled_list()
            return claims, stored.fired, stored.skipped, [item.at for item in page.items]
        finally:
            await other.close()

    claims, fired, skipped, etas = with_store(redis_url, cluster_name, body)
    assert sorted(claims) == [0, 0, 0, 1] and (fired, skipped) == (1, 10)
    assert etas == [1200.0]  # the latest missed tick, held SCHEDULED for the delay firer


def test_publishing_the_same_definition_changes_nothing(
    redis_url: str, cluster_name: str
) -> None:
    async def body(store: StateStore) -> list[object]:
        template = build("k", tasks.add.s(1, 1), 0)
        every = Timing(every_s=60)
        first = await store.schedules.put("same", "k", template, every, "a")
        await store.schedules.pause("same")
        again = await store.schedules.put("same", "k", template, every, "b")
        paused = await store.schedules.get("same")
        changed = await store.schedules.put("same", "k", template, Timing(every_s=30), "c")
        after = await store.schedules.get("same")
        assert paused is not None and after is not None
        return [first, again, paused.paused, paused.origin, changed, after.paused,
                after.timing.every_s, after.origin]

    assert with_store(redis_url, cluster_name, body) == [
        PutResult.CREATED, PutResult.UNCHANGED, True, "a", PutResult.REPLACED, True, 30.0, "c"]


# -- on a real cluster ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def local(zookeeper: ZooKeeperServer, redis_server: RedisServer) -> Iterator[LocalCluster]:
    with LocalCluster(nodes=2, coordinators=1,
                      tasks=["tests.tasks_conformance", "tests.tasks_periodic"],
                      zk=zookeeper.address, redis=redis_server.url,
                      cluster=f"sc{uuid.uuid4().hex[:10]}") as cluster:
        yield cluster


@pytest.fixture(scope="module")
def client(local: LocalCluster) -> Iterator[Cluster]:
    with connected(local, 2) as cluster:
        yield cluster


def ctl(local: LocalCluster, *args: str) -> Result:
    return taskctl(local, *args, terminal_width=200)  # schedule tables unwrapped


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_schedule_runs_its_task_at_each_tick(
    local: LocalCluster, client: Cluster, tmp_path: Path
) -> None:
    path = tmp_path / "ticks"
    stored = client.schedule("every-second", "tick:1", tasks.tick.s(str(path)), every=1)
    assert stored.origin == "api" and stored.timing.every_s == 1.0 and not stored.paused
    eventually(lambda: len(lines(path)) >= 3, WAIT_S, "three ticks to run")
    client.unschedule("every-second")
    etas = [float(line.split()[0]) for line in lines(path)]
    assert all(eta == int(eta) for eta in etas) and len(set(etas)) == len(etas)
    ran = records(local, [lines(path)[0].split()[1]])[0]
    assert ran is not None and ran.schedule == "every-second" and ran.node == client.owner("tick:1")
    assert metric_value(local, "coordinator-0", "ringpool_schedule_ticks_total",
                        schedule="every-second") >= 3
    with pytest.raises(ScheduleNotFound):
        client.unschedule("every-second")


def test_bad_schedules_are_refused_typed_and_change_nothing(
    local: LocalCluster, client: Cluster
) -> None:
    with pytest.raises(UnknownTask):
        client.schedule("bad", "k", Task("no.such.task"), every=60)
    with pytest.raises(InvalidSchedule):
        client.schedule("bad", "k", tasks.add.s(1, 1), cron="every day")
    with pytest.raises(InvalidSchedule):
        client.schedule("bad name", "k", tasks.add.s(1, 1), every=60)
    assert "bad" not in ctl(local, "schedule", "ls").output


def test_a_declared_schedule_is_published_by_the_nodes(local: LocalCluster) -> None:
    shown = json.loads(ctl(local, "--json", "schedule", "ls").output)
    nightly = next(s for s in shown if s["name"] == "conformance.nightly")
    assert nightly["origin"].startswith("node:node-")
    assert (nightly["cron"], nightly["tz"], nightly["task"]) == (
        "30 2 * * *", "Europe/Berlin", "conformance.add")
    next_local = datetime.fromtimestamp(nightly["next_at"], BERLIN)
    assert (next_local.hour, next_local.minute) in ((2, 30), (3, 0))


def test_taskctl_schedule_commands_in_both_modes(local: LocalCluster) -> None:
    added = ctl(local, "--json", "schedule", "add", "ctl-report", "--task", "conformance.add",
                "--key", "report:1", "--args", "[1, 2]", "--cron", "0 6 * * 1-5",
                "--tz", "Europe/Berlin")
    assert added.exit_code == 0, added.output
    data = json.loads(added.output)
    assert data["result"] == "created" and data["schedule"]["timing"] == (
        "cron 0 6 * * 1-5 (Europe/Berlin)")
    again = ctl(local, "schedule", "add", "ctl-report", "--task", "conformance.add", "--key",
                "report:1", "--args", "[1, 2]", "--cron", "0 6 * * 1-5", "--tz", "Europe/Berlin")
    assert again.exit_code == 0 and "schedule ctl-report unchanged" in again.output
    listed = ctl(local, "schedule", "ls")
    assert listed.exit_code == 0
    row = next(line for line in listed.output.splitlines() if line.startswith("ctl-report"))
    assert "conformance.add" in row and "report:1" in row and "operator" in row
    paused = ctl(local, "schedule", "pause", "ctl-report")
    assert paused.exit_code == 0 and "schedule ctl-report paused\n" in paused.output
    assert json.loads(ctl(local, "--json", "schedule", "ls").output)[0]["paused"] in (True, False)
    resumed = ctl(local, "--json", "schedule", "resume", "ctl-report")
    assert resumed.exit_code == 0 and json.loads(resumed.output)["paused"] is False
    every = ctl(local, "schedule", "add", "ctl-every", "--task", "conformance.add", "--key", "k",
                "--kwargs", '{"a": 1, "b": 2}', "--every", "90s")
    assert every.exit_code == 0 and "every 90s" in every.output
    assert ctl(local, "schedule", "rm", "ctl-every").exit_code == 0
    removed = json.loads(ctl(local, "--json", "schedule", "rm", "ctl-report").output)
    assert removed == {"name": "ctl-report", "removed": True}


@pytest.mark.parametrize(("args", "code", "message"), [
    (("rm", "nope"), 3, "no schedule named 'nope'"),
    (("pause", "nope"), 3, "no schedule named 'nope'"),
    (("resume", "nope"), 3, "no schedule named 'nope'"),
    (("add", "x", "--task", "conformance.add", "--key", "k", "--cron", "61 * * * *"), 5,
     "bad cron expression"),
    (("add", "x", "--task", "conformance.add", "--key", "k"), 2, "--cron EXPR or --every"),
    (("add", "x", "--task", "conformance.add", "--key", "k", "--cron", "0 3 * * *", "--every",
      "1m"), 2, "--cron EXPR or --every"),
    (("add", "x", "--task", "conformance.add", "--key", "k", "--every", "soon"), 2,
     "not a duration"),
    (("add", "x", "--task", "conformance.add", "--key", "k", "--every", "1m", "--args", "[1,"),
     5, "arguments must be JSON"),
    (("add", "x", "--task", "no.such.task", "--key", "k", "--every", "1m"), 5,
     "no node serves a task named 'no.such.task'"),
    (("add", "x", "--task", "conformance.add", "--key", "k", "--cron", "0 3 * * *", "--tz",
      "Nowhere/Town"), 5, "unknown time zone"),
], ids=["rm-unknown", "pause-unknown", "resume-unknown", "bad-cron", "neither", "both",
        "bad-every", "bad-json", "unknown-task", "bad-tz"])
def test_taskctl_schedule_bad_input(local: LocalCluster, args: tuple[str, ...], code: int,
                                    message: str) -> None:
    done = ctl(local, "schedule", *args)
    assert done.exit_code == code, done.output
    assert message in done.output
    assert "x" not in [s["name"] for s in json.loads(ctl(local, "--json", "schedule", "ls").output)]


def test_a_schedule_ticks_once_per_second_across_a_leader_kill(
    zookeeper: ZooKeeperServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    """SIGKILL the leading coordinator: the other takes over when its ZooKeeper session
    expires. No tick fires twice; every second is either fired or counted as skipped."""
    path = tmp_path / "ticks"
    with LocalCluster(nodes=2, coordinators=2, tasks=["tests.tasks_conformance"],
                      zk=zookeeper.address, redis=redis_server.url,
                      coordinator_args=["--zk-session-timeout", "2"]) as local, \
            local.connect() as client:
        names = [f"coordinator-{i}" for i in range(2)]

        def leader() -> str | None:
            leading = [n for n in names if local.coordinators[names.index(n)].alive()
                       and metric_value(local, n, "ringpool_coordinator_leader") == 1]
            return leading[0] if len(leading) == 1 else None

        first = eventually(leader, WAIT_S, "a leader")
        client.schedule("failover", "tick:1", tasks.tick.s(str(path)), every=1)
        eventually(lambda: len(lines(path)) >= 3, WAIT_S, "ticks under the first leader")
        local.coordinators[names.index(first)].stop(sig=signal.SIGKILL)
        killed_at = len(lines(path))
        second = eventually(leader, WAIT_S, "the other coordinator to lead")
        assert second != first
        eventually(lambda: len(lines(path)) >= killed_at + 3, WAIT_S, "ticks under the second")

        async def pause(store: StateStore) -> tuple[int, int]:
            await store.schedules.pause("failover")
            stored = await store.schedules.get("failover")
            assert stored is not None
            return stored.fired, stored.skipped

        fired, skipped = with_store(local.redis, local.cluster, pause)
        eventually(lambda: len(lines(path)) == fired, WAIT_S, "every claimed tick to run")
    etas = sorted(float(line.split()[0]) for line in lines(path))
    assert len(set(etas)) == len(etas), "a tick ran twice"
    assert etas[-1] - etas[0] + 1 == fired + skipped, "a tick was lost beyond the catch-up policy"
    gaps = [b - a - 1 for a, b in itertools.pairwise(etas) if b - a > 1]
    assert sum(gaps) == skipped and len(gaps) <= 1  # only the outage skipped ticks


def test_the_schedule_page_listing_is_paused_at_inf(local: LocalCluster) -> None:
    """A paused schedule's next tick is stored as inf and read back as None."""
    rds = redis.Redis.from_url(local.redis)
    try:
        assert ctl(local, "schedule", "add", "inf", "--task", "conformance.add", "--key", "k",
                   "--every", "1h").exit_code == 0
        assert ctl(local, "schedule", "pause", "inf").exit_code == 0
        keys = Keys(local.cluster)
        assert rds.zscore(keys.schedules(keys.schedule_partition("inf")), "inf") == math.inf
        shown = json.loads(ctl(local, "--json", "schedule", "ls").output)
        assert next(s for s in shown if s["name"] == "inf")["next_at"] is None
    finally:
        rds.close()
        ctl(local, "schedule", "rm", "inf")


def test_every_accepts_a_timedelta(client: Cluster) -> None:
    stored = client.schedule("td", "k", tasks.add.s(1, 1), every=timedelta(minutes=5))
    try:
        assert stored.timing.every_s == 300.0 and stored.next_at is not None
        assert stored.next_at % 300 == 0
    finally:
        client.unschedule("td")
