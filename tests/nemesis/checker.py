"""The checker: what the history and the final state say about every accepted task.

Each check, precisely (a task is *accepted* once its handle's ``accepted()`` returned):

- **lost**: an accepted task with no record in Redis when the run has settled.
- **stuck**: an accepted task not final (SUCCEEDED or FAILED) when the run has
  settled; **late**: final, but later than its budget after it was accepted (its
  own worst case, attempts x (timeout + longest backoff), plus ``FAULT_ALLOWANCE_S``).
- **double completion**: a record whose ``completions`` (final transitions the
  store applied) is above 1. Running twice is allowed, execution being
  at-least-once; recording a second outcome is not.
- **outcome conflict**: a task whose record, DLQ, retry set and in-flight hashes
  disagree: SUCCEEDED yet in the DLQ, FAILED yet not in it, final yet still due
  for a retry or still in some node's in-flight hash, or SUCCEEDED with no
  execution in the history.
- **ordered overlap**: two executions of tasks sent ``ordered=True`` with the same
  key running at the same time. A run cut short by its process's death ends at
  the death. An overlap across two processes is *explained* when the earlier
  run's node was paused or cut off from Redis, or ZooKeeper was down, while it
  ran (the cluster rightly took that node for dead and ran the key elsewhere:
  at-least-once); when the later run started on a node so faulted before it was
  back in the ring (a paused node resuming what it held); when the earlier run's
  node was draining and had handed its tasks back at the drain timeout; or when
  the later run started after the earlier one had outlived its timeout (a hung
  run is abandoned, not killed). Overlaps in one process (the node's own per-key order)
  and unexplained ones, such as a node that joins the ring running a key while
  its previous owner still runs it, fail the check.
- **memory**: every node process's resident set stayed under the limit.

Informational, not failures: tasks one of whose attempts ran more than once (a
retry is a new attempt; a rerun after a crash, a pause or a cut is the same one),
and tasks whose
outcome is not the one their kind asks for (a ``nemesis.work`` in the DLQ as
poison, say), each with its reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from ringpool.core.protocol import TaskState
from ringpool.store.store import TaskRecord
from tests.nemesis.faults import FaultRun, Life
from tests.nemesis.history import Accepted, Run
from tests.nemesis.schedule import FaultKind
from tests.nemesis.tasks import TASKS

FAULT_ALLOWANCE_S = 90.0  # what faults may add to a task's own worst case
EXPECTED = {"work": TaskState.SUCCEEDED, "fail": TaskState.FAILED, "hang": TaskState.FAILED}
#: Faults that make the cluster rightly take a node for dead while it still runs tasks.
PRESUMED_DEAD = frozenset({FaultKind.PAUSE, FaultKind.CUT, FaultKind.ZOOKEEPER})
FAILING_CHECKS = ("lost", "stuck", "late", "double completion", "outcome conflict",
                  "ordered overlap", "memory")


def budget_s(kind: str) -> float:
    """How long after its acceptance a task of ``kind`` must be final."""
    definition = TASKS[kind]
    attempts = definition.retry.max_retries + 1
    return attempts * (definition.timeout + definition.retry.cap_s) + FAULT_ALLOWANCE_S


@dataclass
class Observed:
    """Everything the checker reads, gathered once the run has settled."""

    accepted: dict[str, Accepted]
    refusals: dict[str, int]
    runs: list[Run]
    records: dict[str, TaskRecord | None]
    dlq: set[str]
    retrying: set[str]
    inflight: dict[str, str]  # task id -> the node whose in-flight hash holds it
    lives: list[Life]
    rss_peaks: dict[str, int]  # node id -> bytes
    rss_limit: int
    faults: list[FaultRun]
    unprompted: list[tuple[float, str]]  # (when, what): processes that exited on their own
    drain_timeout_s: float
    started: float  # when the workload started: time 0 of the schedule
    read_at: float  # when the final state was read


@dataclass(frozen=True)
class Finding:
    check: str
    task_id: str  # or a node id, for memory
    at: float  # unix time the finding is about
    detail: str


@dataclass
class Report:
    observed: Observed
    findings: list[Finding] = field(default_factory=list)
    info: list[Finding] = field(default_factory=list)

    def count(self, check: str) -> int:
        return sum(1 for f in self.findings if f.check == check)

    @property
    def clean(self) -> bool:
        return not self.findings

    def fault_before(self, at: float) -> str:
        """The last fault that began at or before ``at``, as '#n kind target (+s)'."""
        earlier = [(i, f) for i, f in enumerate(self.observed.faults, 1) if f.began <= at]
        if not earlier:
            return "none"
        index, run = earlier[-1]
        return f"#{index} {run.describe} (+{run.began - self.observed.started:.1f}s)"


def check(observed: Observed) -> Report:
    report = Report(observed)
    runs_of: dict[str, list[Run]] = {}
    for run in observed.runs:
        runs_of.setdefault(run.task_id, []).append(run)
    for task_id, task in observed.accepted.items():
        _check_task(report, task, observed.records.get(task_id), runs_of.get(task_id, []))
    _check_ordered(report)
    for node, peak in sorted(observed.rss_peaks.items()):
        if peak > observed.rss_limit:
            report.findings.append(Finding("memory", node, observed.read_at,
                                           f"peak RSS {peak / 2**20:.0f} MiB over the limit "
                                           f"{observed.rss_limit / 2**20:.0f} MiB"))
    return report


def _check_task(report: Report, task: Accepted, record: TaskRecord | None, runs: list[Run]) -> None:
    observed, add = report.observed, report.findings.append
    if record is None:
        add(Finding("lost", task.task_id, task.at, f"{task.kind} on {task.key!r}: no record"))
        return
    if not record.state.terminal:
        where = (f"in flight on {observed.inflight[task.task_id]}" if task.task_id in observed.inflight
                 else "due in the retry set" if task.task_id in observed.retrying else "held nowhere")
        add(Finding("stuck", task.task_id, task.at,
                    f"{task.kind} still {record.state} after {observed.read_at - task.at:.0f}s, "
                    f"{where}; node {record.node}, attempt {record.attempt}"))
        return
    took = (record.finished_at or observed.read_at) - task.at
    if took > budget_s(task.kind):
        add(Finding("late", task.task_id, task.at,
                    f"{task.kind} {record.state} {took:.0f}s after it was accepted "
                    f"(budget {budget_s(task.kind):.0f}s)"))
    if record.completions > 1:
        add(Finding("double completion", task.task_id, record.finished_at or task.at,
                    f"{record.completions} completions recorded; {len(runs)} runs"))
    conflict = _conflict(observed, task.task_id, record, runs)
    if conflict:
        add(Finding("outcome conflict", task.task_id, record.finished_at or task.at, conflict))
    if rerun_attempts(runs):
        report.info.append(Finding(
            "attempt ran twice", task.task_id, runs[1].start,
            f"attempts {[r.attempt for r in runs]} on {', '.join(r.node for r in runs)}"))
    if record.state is not EXPECTED[task.kind]:
        report.info.append(Finding(
            "unexpected outcome", task.task_id, record.finished_at or task.at,
            f"{task.kind} {record.state} ({record.dead_reason or 'no reason'}: "
            f"{record.error_type} {record.error_message[:80]})"))


def rerun_attempts(runs: list[Run]) -> bool:
    """Whether one attempt ran more than once: a rerun (at-least-once), not a retry."""
    return len({run.attempt for run in runs}) < len(runs)


def _conflict(observed: Observed, task_id: str, record: TaskRecord, runs: list[Run]) -> str:
    in_dlq = task_id in observed.dlq
    if record.state is TaskState.SUCCEEDED and in_dlq:
        return "SUCCEEDED and in the DLQ"
    if record.state is TaskState.FAILED and not in_dlq:
        return "FAILED but not in the DLQ"
    if task_id in observed.retrying:
        return f"{record.state} and still due in the retry set"
    if task_id in observed.inflight:
        return f"{record.state} and still in flight on {observed.inflight[task_id]}"
    if record.state is TaskState.SUCCEEDED and not runs:
        return "SUCCEEDED without any execution in the history"
    return ""


def run_end(run: Run, lives: dict[int, Life], read_at: float) -> float:
    """When ``run`` stopped: its recorded end, its process's death, or not yet."""
    if run.end is not None:
        return run.end
    life = lives.get(run.pid)
    return life.ended if life is not None and life.ended is not None else read_at


def _check_ordered(report: Report) -> None:
    observed = report.observed
    lives = {life.pid: life for life in observed.lives}
    by_key: dict[str, list[Run]] = {}
    for run in observed.runs:
        task = observed.accepted.get(run.task_id)
        if task is not None and task.ordered:
            by_key.setdefault(run.key, []).append(run)
    for key, runs in by_key.items():
        latest: Run | None = None  # the run that ends last among those started so far
        for run in runs:  # in start order
            if latest is not None and run.start < run_end(latest, lives, observed.read_at):
                _overlap(report, key, latest, run, run_end(latest, lives, observed.read_at))
            if latest is None or run_end(run, lives, observed.read_at) > run_end(
                    latest, lives, observed.read_at):
                latest = run


def _overlap(report: Report, key: str, earlier: Run, later: Run, earlier_end: float) -> None:
    kind = report.observed.accepted[earlier.task_id].kind
    where = (f"both on {later.node} (pid {later.pid})" if earlier.pid == later.pid
             else f"{earlier.node} (pid {earlier.pid}) then {later.node} (pid {later.pid})")
    earlier_one = ("its own attempt" if earlier.task_id == later.task_id
                   else f"{kind} {earlier.task_id} attempt")
    detail = (f"key {key!r}: {earlier_one} {earlier.attempt} still ran "
              f"{earlier_end - later.start:.2f}s after attempt {later.attempt} started, {where}")
    reason = _explained(report, earlier, later, earlier_end) if earlier.pid != later.pid else ""
    if reason:
        report.info.append(Finding("explained ordered overlap", later.task_id, later.start,
                                   f"{detail}; {reason}"))
        return
    report.findings.append(Finding("ordered overlap", later.task_id, later.start, detail))


def _explained(report: Report, earlier: Run, later: Run, earlier_end: float) -> str:
    """Why the cluster rightly ran ``later`` elsewhere while ``earlier`` ran, if it did."""
    for fault in reversed(report.observed.faults):  # the latest explanation first
        kind, target = fault.fault.kind, fault.fault.target
        everywhere = kind is FaultKind.ZOOKEEPER
        if kind in PRESUMED_DEAD and (everywhere or target == earlier.node) \
                and fault.began <= earlier_end and fault.ready >= earlier.start:
            return f"the earlier run's node was taken for dead: {fault.describe}"
        if kind in PRESUMED_DEAD and (everywhere or target == later.node) \
                and fault.began <= later.start <= fault.ready:
            return f"the later run's node ran it before it was back in the ring: {fault.describe}"
        if kind is FaultKind.TERM and target == earlier.node \
                and earlier.start < fault.began + report.observed.drain_timeout_s <= later.start:
            return f"the earlier run's node handed it back, draining past its timeout: {fault.describe}"
    timeout = TASKS[report.observed.accepted[earlier.task_id].kind].timeout
    if later.start >= earlier.start + timeout:
        return f"the earlier run had outlived its {timeout:g}s timeout (abandoned)"
    return ""


# -- the printout ----------------------------------------------------------------------


def table(headers: Sequence[object], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (it reads as plain text too)."""
    def line(cells: Sequence[object]) -> str:
        return "| " + " | ".join(str(c) for c in cells) + " |"

    return "\n".join([line(headers), line(["---"] * len(headers)), *(line(r) for r in rows)])


def render(report: Report, title: str, max_listed: int = 15) -> str:
    """The printout: the schedule, the tables, every failure and up to ``max_listed`` of
    each kind of note."""
    observed = report.observed
    t0 = observed.started
    parts = [title, "", "Fault schedule:", table(
        ["#", "at (s)", "fault", "target", "held (s)", "healed → ready (s)", "notes"],
        [[i, f"{run.began - t0:.1f}", run.fault.kind, run.fault.target, run.fault.hold_s,
          f"{run.ready - run.healed:.1f}", "; ".join(run.notes)]
         for i, run in enumerate(observed.faults, 1)])]
    by_kind = Counter(run.fault.kind for run in observed.faults)
    parts += ["", f"Faults by kind ({len(observed.faults)} in all):",
              table(["fault", "count"], [[kind, by_kind[kind]] for kind in FaultKind])]
    parts += ["", "Tasks:", _task_table(report)]
    refused = ", ".join(f"{k} {v}" for k, v in sorted(observed.refusals.items())) or "none"
    parts += ["", f"Refused at dispatch (never accepted, not checked): {refused}"]
    if observed.accepted:
        took = sorted(observed.accepted.values(), key=lambda t: t.took_s)
        slowest = took[-1]
        parts.append(f"Dispatch until accepted: {_spread([t.took_s for t in took])} (the slowest "
                     f"sent at +{slowest.at - slowest.took_s - t0:.1f}s; fault before: "
                     f"{report.fault_before(slowest.at - slowest.took_s)})")
        outcomes = [r.finished_at - t.at for t in observed.accepted.values()
                    if (r := observed.records.get(t.task_id)) and r.finished_at is not None]
        if outcomes:
            parts.append(f"Accepted until final: {_spread(sorted(outcomes))}")
    peak = max(observed.rss_peaks.values(), default=0)
    info = Counter(f.check for f in report.info)
    parts += ["", "Checks:", table(["check", "count", "holds"], [
        *[[name, report.count(name), "yes" if not report.count(name) else "**NO**"]
          for name in FAILING_CHECKS if name != "memory"],
        ["max node RSS (MiB)", f"{peak / 2**20:.0f} (limit {observed.rss_limit / 2**20:.0f})",
         "yes" if not report.count("memory") else "**NO**"],
        ["ordered overlaps explained: a node taken for dead, an abandoned run (info)",
         info["explained ordered overlap"], "-"],
        ["tasks with an attempt run twice (info: at-least-once)", info["attempt ran twice"], "-"],
        ["unexpected outcomes (info)", info["unexpected outcome"], "-"],
    ])]
    for name in (*FAILING_CHECKS, "unexpected outcome", "explained ordered overlap"):
        listed = sorted((f for f in (*report.findings, *report.info) if f.check == name),
                        key=lambda f: f.at)
        if listed:
            parts += ["", f"{name} ({len(listed)}):"]
            shown = listed if name in FAILING_CHECKS else listed[:max_listed]  # failures: all
            parts += [f"  {f.task_id} at +{f.at - t0:.1f}s: {f.detail}; fault before: "
                      f"{report.fault_before(f.at)}" for f in shown]
            if len(listed) > len(shown):
                parts.append(f"  ... and {len(listed) - len(shown)} more")
    if observed.unprompted:
        parts += ["", "Processes that exited with no fault on them:"]
        parts += [f"  +{when - t0:.1f}s {what}" for when, what in observed.unprompted]
    verdict = "CLEAN" if report.clean else "NOT CLEAN: " + ", ".join(
        f"{name} {report.count(name)}" for name in FAILING_CHECKS if report.count(name))
    parts += ["", f"Verdict: {verdict}"]
    return "\n".join(parts)


def _spread(sorted_s: list[float]) -> str:
    """p50, p99 and max of sorted durations in seconds."""
    return (f"p50 {sorted_s[len(sorted_s) // 2]:.3f} s, p99 {sorted_s[len(sorted_s) * 99 // 100]:.3f} s, "
            f"max {sorted_s[-1]:.1f} s")


def _task_table(report: Report) -> str:
    observed = report.observed
    runs: dict[str, list[Run]] = {}
    for run in observed.runs:
        runs.setdefault(run.task_id, []).append(run)
    rows: list[list[object]] = []
    totals = [0] * 7
    for kind in TASKS:
        tasks = [t for t in observed.accepted.values() if t.kind == kind]
        states = Counter(r.state for t in tasks if (r := observed.records.get(t.task_id)))
        counts = [len(tasks), sum(t.ordered for t in tasks),
                  states[TaskState.SUCCEEDED], states[TaskState.FAILED],
                  len(tasks) - states[TaskState.SUCCEEDED] - states[TaskState.FAILED],
                  sum(len(runs.get(t.task_id, [])) for t in tasks),
                  sum(1 for t in tasks if rerun_attempts(runs.get(t.task_id, [])))]
        totals = [a + b for a, b in zip(totals, counts, strict=True)]
        rows.append([kind, *counts])
    return table(["task", "accepted", "ordered", "succeeded", "in DLQ", "not final", "runs",
                  "an attempt ran twice"], [*rows, ["all", *totals]])
