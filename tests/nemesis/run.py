"""One nemesis run: start a cluster, run the workload under the fault schedule, check.

The cluster is real: ZooKeeper, Redis (AOF, ``appendfsync always``), ``nodes``
nodes (the last one reaches Redis through the cuttable proxy) and two
coordinators, all on loopback under ``workdir``, with the history in a Redis of
its own. After the last fault everything is healed, the workload stops, and the
run settles until every accepted task is final or the longest budget has passed;
then the checker reads the history and the final state.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from ringpool.store.listing import Page
from ringpool.store.store import StateStore, TaskRecord
from ringpool.testing.local import LocalCluster, RedisServer
from tests.nemesis.checker import Observed, Report, budget_s, check, render
from tests.nemesis.faults import FaultRun, Nemesis
from tests.nemesis.history import History
from tests.nemesis.memory import RssSampler
from tests.nemesis.proxy import CuttableProxy
from tests.nemesis.schedule import Fault, Profile, plan
from tests.nemesis.tasks import HISTORY_ENV, TASKS
from tests.nemesis.workload import Mix, Workload

TASK_MODULE = "tests.nemesis.tasks"
READ_CHUNK = 1000


@dataclass(frozen=True)
class Options:
    seed: int
    minutes: float = 10.0
    nodes: int = 4
    coordinators: int = 2
    session_timeout_s: float = 6.0
    drain_timeout_s: float = 8.0
    gap_s: tuple[float, float] = (3.0, 8.0)
    rss_limit_mib: int = 256
    mix: Mix = field(default_factory=Mix)

    def profile(self) -> Profile:
        nodes = tuple(f"node-{i}" for i in range(self.nodes))
        return Profile(duration_s=self.minutes * 60, nodes=nodes, cut_node=nodes[-1],
                       session_timeout_s=self.session_timeout_s, gap_s=self.gap_s)


def run_nemesis(options: Options, workdir: Path, log: Callable[[str], None] = print) -> Report:
    """Run ``options``' schedule against a fresh cluster under ``workdir``; the checker's report.

    The printout is also written to ``workdir/report.md``.
    """
    profile = options.profile()
    faults = plan(options.seed, profile)
    log(f"nemesis: seed {options.seed}, {options.minutes:g} min, {len(faults)} faults planned, "
        f"logs under {workdir}")
    history_server = RedisServer(workdir / "history", appendonly=True).start()
    history = History(history_server.url)
    session = ["--zk-session-timeout", f"{options.session_timeout_s:g}"]
    local = LocalCluster(
        nodes=options.nodes - 1, coordinators=options.coordinators, tasks=[TASK_MODULE],
        workdir=workdir, appendonly=True, env={HISTORY_ENV: history_server.url},
        node_args=[*session, "--drain-timeout", f"{options.drain_timeout_s:g}"],
        coordinator_args=session,
    )
    assert isinstance(local.redis_server, RedisServer)
    proxy = CuttableProxy("127.0.0.1", local.redis_server.port).start()
    nemesis = Nemesis(local, proxy, {profile.cut_node: ["--redis", f"redis://127.0.0.1:{proxy.port}/0"]},
                      options.coordinators, options.drain_timeout_s, log)
    sampler = RssSampler(nemesis.running_pids)
    try:
        local.start()
        nemesis.adopt()
        nemesis.start_node(profile.cut_node)
        local.wait_for_members(set(profile.nodes))
        with local.connect() as cluster:
            sampler.start()
            workload = Workload(cluster, history, options.seed, options.mix).start()
            started = time.time()
            runs = _run_schedule(nemesis, faults, started, profile.duration_s, log)
            workload.stop()
            log(f"workload stopped: {workload.accepted} accepted, {workload.refused} refused")
            nemesis.heal_all()
            if missing := nemesis.wait_ready():
                log(f"after healing everything: {missing}")
            accepted = history.accepted_tasks()
            settled_in = _settle(local, list(accepted), max(budget_s(kind) for kind in TASKS))
            log(f"settled in {settled_in:.1f}s")
            sampler.stop()
            observed = _observe(local, history, nemesis, sampler, options, runs, started)
    finally:
        sampler.stop()
        nemesis.heal_all()
        nemesis.close()
        local.stop()
        proxy.close()
        history.close()
        history_server.stop()
    report = check(observed)
    text = render(report, f"nemesis run: seed {options.seed}, {options.minutes:g} min, "
                          f"{options.nodes} nodes, {options.coordinators} coordinators, "
                          f"session timeout {options.session_timeout_s:g}s, "
                          f"{options.mix.rate_per_s:g} tasks/s")
    (workdir / "report.md").write_text(text + "\n")
    log(text)
    return report


def _run_schedule(nemesis: Nemesis, faults: list[Fault], started: float, duration_s: float,
                  log: Callable[[str], None]) -> list[FaultRun]:
    runs = []
    for fault in faults:
        time.sleep(max(0.0, started + fault.at_s - time.time()))
        log(f"+{time.time() - started:6.1f}s {fault.kind} {fault.target}, held {fault.hold_s}s")
        try:
            done = nemesis.run(fault)
        except Exception as exc:  # a harness failure: noted on the fault, and healed
            done = FaultRun(fault, began=time.time(), healed=time.time(), ready=time.time(),
                            notes=[f"the nemesis failed: {exc!r}"])
            nemesis.heal_all()
        runs.append(done)
        if done.notes:
            log(f"          {'; '.join(done.notes)}")
    time.sleep(max(0.0, started + duration_s - time.time()))
    return runs


def _settle(local: LocalCluster, task_ids: list[str], timeout: float) -> float:
    """Seconds until every task is final (or ``timeout``, whichever comes first)."""
    async def wait() -> float:
        store = StateStore.from_url(local.redis, local.cluster)
        began = time.monotonic()
        pending = task_ids
        try:
            while pending and time.monotonic() - began < timeout:
                states = []
                for i in range(0, len(pending), READ_CHUNK):
                    states += await store.states(pending[i:i + READ_CHUNK])
                pending = [t for t, s in zip(pending, states, strict=True) if not s.terminal]
                if pending:
                    await asyncio.sleep(1.0)
        finally:
            await store.close()
        return time.monotonic() - began

    return asyncio.run(wait())


def _observe(local: LocalCluster, history: History, nemesis: Nemesis, sampler: RssSampler,
             options: Options, faults: list[FaultRun], started: float) -> Observed:
    accepted = history.accepted_tasks()

    async def every_id(list_page: Callable[..., Awaitable[Page]]) -> set[str]:
        ids: set[str] = set()
        cursor: str | None = None
        while True:
            page = await list_page(cursor=cursor, limit=READ_CHUNK)
            ids.update(item.record.task_id for item in page.items)
            if page.next is None:
                return ids
            cursor = page.next

    async def read() -> tuple[dict[str, TaskRecord | None], dict[str, str], set[str], set[str]]:
        store = StateStore.from_url(local.redis, local.cluster)
        try:
            ids = list(accepted)
            found: list[TaskRecord | None] = []
            for i in range(0, len(ids), READ_CHUNK):
                found += await store.records(ids[i:i + READ_CHUNK])
            inflight = {task_id: node for node in await store.inflight_nodes()
                        for task_id in await store.inflight(node)}
            return (dict(zip(ids, found, strict=True)), inflight,
                    await every_id(store.dlq_list), await every_id(store.retries_list))
        finally:
            await store.close()

    read_at = time.time()
    records, inflight, dlq, retrying = asyncio.run(read())
    return Observed(
        accepted=accepted, refusals=history.refusals(), runs=history.runs(), records=records,
        dlq=dlq, retrying=retrying, inflight=inflight, lives=list(nemesis.lives.values()),
        rss_peaks=sampler.peaks(), rss_limit=options.rss_limit_mib * 2**20, faults=faults,
        unprompted=nemesis.unprompted, drain_timeout_s=options.drain_timeout_s,
        started=started, read_at=read_at,
    )

