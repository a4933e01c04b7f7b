"""How late delayed tasks start: the firing lag of ``dispatch(countdown=...)``.

``python -m bench.delay [--tasks N] [--spread SECONDS] [--runs R]``

Starts a local cluster (3 nodes, a coordinator), dispatches N tasks with countdowns
spread evenly over SPREAD seconds (so they fall due at N/SPREAD a second), waits for
every result, and reads each task's record: the lag is when its run started on its
key's owner minus its eta (the leader's claim, the dispatch through the ring, the
node's accept and the start of the run). Also prints the coordinator's own view:
``ringpool_delay_lag_seconds`` (how late the oldest due task of each claimed batch
was). Results in ``bench/results/delay.json``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bench.saving import RESULTS, save
from ringpool import Cluster, Task
from ringpool.store.store import StateStore, TaskRecord
from ringpool.testing.local import LocalCluster


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def read_records(local: LocalCluster, ids: list[str]) -> list[TaskRecord | None]:
    import asyncio

    async def read() -> list[TaskRecord | None]:
        store = StateStore.from_url(local.redis, local.cluster)
        try:
            return await store.records(ids)
        finally:
            await store.close()

    return asyncio.run(read())


def claim_lag(local: LocalCluster) -> dict[str, float]:
    """The coordinator's delay-lag histogram: its count and mean."""
    url = f"http://127.0.0.1:{local.metrics_ports['coordinator-0']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name.startswith("ringpool_delay_lag_seconds") and "le" not in s.labels}
    count = samples.get("ringpool_delay_lag_seconds_count", 0.0)
    total = samples.get("ringpool_delay_lag_seconds_sum", 0.0)
    return {"claims": count, "mean_ms": 1000 * total / count if count else float("nan")}


def run(local: LocalCluster, client: Cluster, tasks: int, spread_s: float) -> dict[str, float]:
    start = time.time() + 1.0
    handles = [client.dispatch(f"key:{i}", Task("demo.add", args=(i, 1)),
                               countdown=(start - time.time()) + spread_s * i / tasks)
               for i in range(tasks)]
    client.flush(timeout=60)
    for handle in handles:
        handle.result(timeout=spread_s + 60)
    records = read_records(local, [h.task_id for h in handles])
    lags = [1000 * (r.started_at - r.eta) for r in records
            if r is not None and r.started_at is not None and r.eta is not None]
    assert len(lags) == tasks, f"{tasks - len(lags)} records without a start or an eta"
    return {"tasks": tasks, "rate_per_s": tasks / spread_s,
            "p50_ms": statistics.median(lags), "p90_ms": percentile(lags, 0.90),
            "p99_ms": percentile(lags, 0.99), "max_ms": max(lags), "min_ms": min(lags)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.delay")
    parser.add_argument("--tasks", type=int, nargs="+", default=[200, 2000])
    parser.add_argument("--spread", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "delay.json")
    args = parser.parse_args(argv)
    results: list[dict[str, float]] = []
    with LocalCluster(nodes=3, coordinators=1, tasks=["ringpool.demo"]) as local, \
            local.connect() as client:
        while len(client.ring) < 3:
            time.sleep(0.05)
        for _ in range(args.runs):
            for tasks in args.tasks:
                result = run(local, client, tasks, args.spread)
                results.append(result)
                print(f"{tasks} tasks over {args.spread:g}s ({result['rate_per_s']:.0f}/s due): "
                      f"start - eta p50 {result['p50_ms']:.1f} ms, p90 {result['p90_ms']:.1f} ms, "
                      f"p99 {result['p99_ms']:.1f} ms, max {result['max_ms']:.1f} ms", flush=True)
        coordinator = claim_lag(local)
    print(f"coordinator: {coordinator['claims']:.0f} batches claimed, the oldest of each "
          f"{coordinator['mean_ms']:.1f} ms late on average")
    save(args.out, {"runs": results, "coordinator": coordinator, "spread_s": args.spread})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
