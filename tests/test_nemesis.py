"""The nemesis: a short seeded run in the suite, and the checker's, schedule's and proxy's own tests.

The long form is ``make chaos`` (``python -m tests.nemesis``, 10 minutes by default).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ringpool.core.protocol import TaskState
from ringpool.store.store import TaskRecord
from ringpool.testing.local import RedisServer
from tests.nemesis.checker import Observed, Report, budget_s, check, render
from tests.nemesis.faults import FaultRun, Life
from tests.nemesis.history import Accepted, Run
from tests.nemesis.proxy import CuttableProxy
from tests.nemesis.run import Options, run_nemesis
from tests.nemesis.schedule import Fault, FaultKind, Profile, plan
from tests.nemesis.workload import Mix

SHORT = Options(seed=16, minutes=2.0, gap_s=(2.0, 4.0), mix=Mix(rate_per_s=15.0))


# -- the short run ---------------------------------------------------------------------


@pytest.mark.timeout(600)
def test_short_nemesis_run_holds_every_check(tmp_path: Path) -> None:
    report = run_nemesis(SHORT, tmp_path)
    kinds = {run.fault.kind for run in report.observed.faults}
    assert kinds == set(FaultKind), "the short schedule hits every kind of fault"
    assert len(report.observed.accepted) > 1000
    assert report.clean, render(report, f"seed {SHORT.seed}")


# -- the schedule ----------------------------------------------------------------------

PROFILE = Profile(duration_s=600, nodes=("node-0", "node-1", "node-2", "node-3"), cut_node="node-3")


def test_a_seed_gives_the_same_schedule_every_time() -> None:
    assert plan(7, PROFILE) == plan(7, PROFILE)
    assert plan(7, PROFILE) != plan(8, PROFILE)


def test_ten_minutes_hold_over_twenty_faults_of_every_kind_in_order() -> None:
    faults = plan(7, PROFILE)
    assert len(faults) >= 20
    assert {f.kind for f in faults[:len(FaultKind)]} == set(FaultKind)  # the bag: each once first
    for earlier, later in itertools.pairwise(faults):
        assert later.at_s >= earlier.at_s + earlier.hold_s  # one fault at a time
    assert all(f.at_s + f.hold_s <= PROFILE.duration_s for f in faults)
    for fault in faults:
        if fault.kind is FaultKind.CUT:
            assert fault.target == "node-3"
        if fault.kind in (FaultKind.KILL, FaultKind.ZOOKEEPER):  # past a session timeout
            assert fault.hold_s > PROFILE.session_timeout_s


def test_the_short_schedule_hits_every_kind_of_fault() -> None:
    assert {f.kind for f in plan(SHORT.seed, SHORT.profile())} == set(FaultKind)


# -- the checker, on histories made up to break each check -----------------------------

T0 = 1_000_000.0


def record(task_id: str, state: TaskState, completions: int = 1, finished: float = T0 + 1,
           **fields: object) -> TaskRecord:
    return TaskRecord(task_id, state, completions=completions, finished_at=finished,
                      **fields)  # type: ignore[arg-type]


def observed(accepted: list[Accepted], records: dict[str, TaskRecord | None],
             runs: Sequence[Run] = (), **changes: object) -> Observed:
    base = Observed(
        accepted={a.task_id: a for a in accepted}, refusals={}, runs=list(runs), records=records,
        dlq={i for i, r in records.items() if r and r.state is TaskState.FAILED}, retrying=set(),
        inflight={}, lives=[], rss_peaks={"node-0": 80 * 2**20}, rss_limit=512 * 2**20,
        faults=[], unprompted=[], drain_timeout_s=8.0, started=T0, read_at=T0 + 500,
    )
    for name, value in changes.items():
        setattr(base, name, value)
    return base


def work(task_id: str, key: str = "", ordered: bool = False, kind: str = "work") -> Accepted:
    return Accepted(task_id, key or f"u:{task_id}", kind, ordered, T0)


def run(task_id: str, start: float, end: float | None, pid: int = 1, node: str = "node-0",
        key: str = "") -> Run:
    return Run(f"r-{task_id}-{start}", task_id, node, pid, key or f"u:{task_id}", 1, T0 + start,
               None if end is None else T0 + end, "ok")


def failing(report: Report) -> dict[str, int]:
    return {f.check: report.count(f.check) for f in report.findings}


def test_a_history_where_every_task_ended_once_is_clean() -> None:
    report = check(observed(
        [work("a"), work("b", kind="fail")],
        {"a": record("a", TaskState.SUCCEEDED), "b": record("b", TaskState.FAILED)},
        [run("a", 0.1, 0.2), run("b", 0.1, 0.2)],
    ))
    assert report.clean and not report.info
    assert "Verdict: CLEAN" in render(report, "t")


def test_a_task_without_a_record_is_lost() -> None:
    report = check(observed([work("a")], {"a": None}))
    assert failing(report) == {"lost": 1}
    assert "NOT CLEAN: lost 1" in render(report, "t")


def test_a_task_not_final_is_stuck_and_says_where_it_is_held() -> None:
    report = check(observed([work("a")], {"a": record("a", TaskState.RUNNING, 0)},
                            inflight={"a": "node-2"}))
    assert failing(report) == {"stuck": 1}
    assert "in flight on node-2" in report.findings[0].detail


def test_a_task_final_past_its_budget_is_late() -> None:
    late = T0 + budget_s("work") + 1
    report = check(observed([work("a")], {"a": record("a", TaskState.SUCCEEDED, finished=late)},
                            [run("a", 0.1, 0.2)]))
    assert failing(report) == {"late": 1}


def test_two_completions_of_one_task_are_a_double_completion() -> None:
    report = check(observed([work("a")], {"a": record("a", TaskState.SUCCEEDED, completions=2)},
                            [run("a", 0.1, 0.2), run("a", 0.3, 0.4, pid=2)]))
    assert failing(report) == {"double completion": 1}
    assert [f.check for f in report.info] == ["attempt ran twice"]  # allowed: at-least-once


@pytest.mark.parametrize(("state", "where", "says"), [
    (TaskState.SUCCEEDED, {"dlq": {"a"}}, "SUCCEEDED and in the DLQ"),
    (TaskState.FAILED, {"dlq": set()}, "FAILED but not in the DLQ"),
    (TaskState.SUCCEEDED, {"retrying": {"a"}}, "still due in the retry set"),
    (TaskState.SUCCEEDED, {"inflight": {"a": "node-1"}}, "still in flight on node-1"),
])
def test_a_final_task_the_queues_still_hold_is_an_outcome_conflict(
    state: TaskState, where: dict[str, object], says: str
) -> None:
    runs = [run("a", 0.1, 0.2)]
    report = check(observed([work("a", kind="fail" if state is TaskState.FAILED else "work")],
                            {"a": record("a", state)}, runs, **where))
    assert failing(report) == {"outcome conflict": 1}
    assert says in report.findings[0].detail


def test_a_success_with_no_execution_in_the_history_is_an_outcome_conflict() -> None:
    report = check(observed([work("a")], {"a": record("a", TaskState.SUCCEEDED)}))
    assert failing(report) == {"outcome conflict": 1}


def test_an_outcome_the_kind_does_not_ask_for_is_reported_not_failed() -> None:
    report = check(observed([work("a")], {"a": record("a", TaskState.FAILED, dead_reason="poison")},
                            [run("a", 0.1, 0.2)]))
    assert report.clean
    assert [f.check for f in report.info] == ["unexpected outcome"]
    assert "poison" in report.info[0].detail


def test_ordered_runs_of_one_key_overlapping_in_one_process_fail() -> None:
    tasks = [work("a", "ord:1", True), work("b", "ord:1", True)]
    report = check(observed(tasks, {t.task_id: record(t.task_id, TaskState.SUCCEEDED) for t in tasks},
                            [run("a", 1.0, 3.0, key="ord:1"), run("b", 2.0, 2.5, key="ord:1")]))
    assert failing(report) == {"ordered overlap": 1}
    assert "both on node-0 (pid 1)" in report.findings[0].detail


def test_ordered_runs_one_after_another_or_of_other_keys_pass() -> None:
    tasks = [work("a", "ord:1", True), work("b", "ord:1", True), work("c", "ord:2", True),
             work("d", "u:1"), work("e", "u:1")]
    report = check(observed(tasks, {t.task_id: record(t.task_id, TaskState.SUCCEEDED) for t in tasks},
                            [run("a", 1.0, 2.0, key="ord:1"), run("b", 2.0, 3.0, key="ord:1"),
                             run("c", 1.5, 2.5, key="ord:2"),
                             run("d", 1.0, 3.0, key="u:1"), run("e", 1.5, 2.0, key="u:1")]))
    assert report.clean


def test_a_run_cut_short_by_its_process_death_ends_at_the_death() -> None:
    tasks = [work("a", "ord:1", True), work("b", "ord:1", True)]
    records = {t.task_id: record(t.task_id, TaskState.SUCCEEDED) for t in tasks}
    runs = [run("a", 1.0, None, pid=7, key="ord:1"), run("b", 3.0, 3.5, pid=8, node="node-1",
                                                          key="ord:1")]
    died = [Life("node-0", 7, T0, ended=T0 + 2.0, how="kill -9")]
    assert check(observed(tasks, records, runs, lives=died)).clean
    still_running = [Life("node-0", 7, T0)]
    assert failing(check(observed(tasks, records, runs, lives=still_running))) == {
        "ordered overlap": 1}


def test_an_overlap_while_the_earlier_owner_was_paused_is_explained() -> None:
    tasks = [work("a", "ord:1", True), work("b", "ord:1", True)]
    records = {t.task_id: record(t.task_id, TaskState.SUCCEEDED) for t in tasks}
    runs = [run("a", 1.0, 12.0, pid=7, key="ord:1"),
            run("b", 4.0, 4.5, pid=8, node="node-1", key="ord:1")]
    pause = FaultRun(Fault(1.5, FaultKind.PAUSE, "node-0", 10.0), began=T0 + 1.5,
                     healed=T0 + 11.5, ready=T0 + 12.0)
    report = check(observed(tasks, records, runs, faults=[pause]))
    assert report.clean
    assert [f.check for f in report.info] == ["explained ordered overlap"]
    elsewhere = FaultRun(Fault(1.5, FaultKind.PAUSE, "node-2", 10.0), began=T0 + 1.5,
                         healed=T0 + 11.5, ready=T0 + 12.0)
    assert failing(check(observed(tasks, records, runs, faults=[elsewhere]))) == {
        "ordered overlap": 1}


def test_a_paused_node_resuming_what_it_held_is_explained_a_rejoined_owner_is_not() -> None:
    tasks = [work("a", "ord:1", True), work("b", "ord:1", True)]
    records = {t.task_id: record(t.task_id, TaskState.SUCCEEDED) for t in tasks}
    pause = FaultRun(Fault(0.5, FaultKind.PAUSE, "node-0", 1.5), began=T0 + 0.5,
                     healed=T0 + 2.0, ready=T0 + 2.5)
    zombie = [run("a", 1.0, 3.0, pid=8, node="node-1", key="ord:1"),
              run("b", 2.1, 2.4, pid=7, key="ord:1")]
    assert check(observed(tasks, records, zombie, faults=[pause])).clean
    # Back in the ring, node-0 owns the key again while node-1 still runs it: a handover.
    rejoined = [run("a", 1.0, 3.0, pid=8, node="node-1", key="ord:1"),
                run("b", 2.6, 2.9, pid=7, key="ord:1")]
    assert failing(check(observed(tasks, records, rejoined, faults=[pause]))) == {
        "ordered overlap": 1}


def test_a_drain_hands_a_key_over_only_at_its_timeout() -> None:
    tasks = [work("a", "ord:1", True), work("b", "ord:1", True)]
    records = {t.task_id: record(t.task_id, TaskState.SUCCEEDED) for t in tasks}
    term = FaultRun(Fault(1.0, FaultKind.TERM, "node-0", 2.0), began=T0 + 1.0,
                    healed=T0 + 12.0, ready=T0 + 13.0)  # drain timeout: 8 s
    # The new owner starting the key while the draining node still runs it: a handover.
    handover = [run("a", 0.5, 4.9, pid=7, key="ord:1"),
                run("b", 2.0, 2.1, pid=8, node="node-1", key="ord:1")]
    assert failing(check(observed(tasks, records, handover, faults=[term]))) == {
        "ordered overlap": 1}
    # Past the drain timeout the draining node has handed its tasks back.
    long_drain = [run("a", 0.5, 12.0, pid=7, key="ord:1"),
                  run("b", 9.5, 9.6, pid=8, node="node-1", key="ord:1")]
    assert check(observed(tasks, records, long_drain, faults=[term])).clean


def test_a_run_past_its_timeout_overlaps_only_other_processes_unpunished() -> None:
    # A hung run is abandoned at its timeout, not killed: another node may run the key.
    tasks = [work("a", "ord:1", True, kind="hang"), work("b", "ord:1", True)]
    records = {"a": record("a", TaskState.FAILED), "b": record("b", TaskState.SUCCEEDED)}
    elsewhere = [run("a", 1.0, 4.0, pid=7, key="ord:1"),
                 run("b", 2.5, 3.0, pid=8, node="node-1", key="ord:1")]
    report = check(observed(tasks, records, elsewhere))
    assert report.clean and "abandoned" in report.info[-1].detail
    # On its own node the next run of the key must wait for the abandoned one.
    here = [run("a", 1.0, 4.0, pid=7, key="ord:1"), run("b", 2.5, 3.0, pid=7, key="ord:1")]
    assert failing(check(observed(tasks, records, here))) == {"ordered overlap": 1}


def test_a_node_over_the_memory_limit_fails() -> None:
    report = check(observed([], {}, rss_peaks={"node-0": 600 * 2**20}))
    assert failing(report) == {"memory": 1}


# -- the proxy -------------------------------------------------------------------------


def test_the_proxy_forwards_black_holes_when_cut_and_forwards_again(
    redis_server: RedisServer,
) -> None:
    proxy = CuttableProxy("127.0.0.1", redis_server.port).start()
    try:
        def client() -> redis.Redis:
            return redis.Redis(port=proxy.port, socket_timeout=0.5, socket_connect_timeout=0.5,
                               retry=Retry(NoBackoff(), 0))

        through = client()
        assert through.ping()
        proxy.cut()
        with pytest.raises(redis.exceptions.RedisError):
            through.ping()  # the open connection was dropped; reconnecting hears nothing
        with pytest.raises(redis.exceptions.TimeoutError):
            client().ping()  # a new connection is taken, and never answered
        proxy.restore()
        assert client().ping()
    finally:
        proxy.close()
