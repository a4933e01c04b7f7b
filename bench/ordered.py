"""What the handoff leases of ordered keys cost: ordered and plain dispatch loops side by side.

``python -m bench.ordered [--tasks 20000] [--round-trips 2000] [--label after] [--json PATH]``

A ``LocalCluster(nodes=2, coordinators=0, tasks=["ringpool.demo"])`` of its own (a
fresh ZooKeeper and Redis). Each workload runs twice in the same cluster, with
``demo.add`` sent ``ordered=False`` and ``ordered=True``, so the ratio shows what the
ordering costs (before the leases: the node's per-key line only; with them: also the
take, renew and release calls):

- **loop**: ``--tasks`` tasks dispatched in a plain ``dispatch`` loop on 4 keys (the
  client batches by itself), then every result read: tasks/s.
- **round trip**: ``--round-trips`` sequential ``dispatch(...).result()`` on 4 keys:
  p50 and p99 ms (a key's next task comes within the lease's linger).
- **new key each**: 500 sequential round trips, each on a key never used before (the
  worst case: every ordered task takes a lease first and releases it after): p50, p99 ms.

The nodes' ``ringpool_redis_round_trip_seconds_count`` by op gives the lease calls each
ordered workload made. Two source trees compare through ``--label`` (``PYTHONPATH``
decides which one the client and the nodes run)::

    PYTHONPATH=/old/checkout/sdk:/old/checkout/node:/old/checkout/coordinator \\
        python -m bench.ordered --label before
    PYTHONPATH=sdk:node:coordinator python -m bench.ordered --label after
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from bench.zk_reads import source
from ringpool import Cluster, Task
from ringpool.testing.local import LocalCluster
from tests.helpers import samples

KEYS = [f"ordered:{n}" for n in range(4)]
LEASE_OPS = ("order-take", "order-renew", "order-release")


def lease_calls(local: LocalCluster) -> dict[str, float]:
    """Lease script calls the nodes made so far, by op."""
    totals = dict.fromkeys(LEASE_OPS, 0.0)
    for node_id in local.nodes:
        for sample in samples(local.metrics_ports[node_id]):
            op = sample.labels.get("op")
            if sample.name == "ringpool_redis_round_trip_seconds_count" and op in totals:
                totals[op] += sample.value
    return totals


def percentiles_ms(seconds: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(seconds, n=100)
    return {"p50_ms": round(cuts[49] * 1000, 3), "p99_ms": round(cuts[98] * 1000, 3)}


def loop(cluster: Cluster, tasks: int, ordered: bool) -> dict[str, float]:
    started = time.perf_counter()
    handles = [cluster.dispatch(KEYS[i % len(KEYS)], Task("demo.add", args=(i, 1),
                                                          ordered=ordered))
               for i in range(tasks)]
    for handle in handles:
        handle.result(timeout=120)
    return {"tasks_per_s": round(tasks / (time.perf_counter() - started))}


def round_trips(cluster: Cluster, count: int, ordered: bool, fresh_keys: bool) -> dict[str, float]:
    took = []
    for i in range(count):
        key = f"fresh:{ordered}:{i}" if fresh_keys else KEYS[i % len(KEYS)]
        started = time.perf_counter()
        cluster.dispatch(key, Task("demo.add", args=(i, 1), ordered=ordered)).result(timeout=30)
        took.append(time.perf_counter() - started)
    return percentiles_ms(took)


def run(tasks: int, count: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    with LocalCluster(nodes=2, coordinators=0, tasks=["ringpool.demo"]) as local, \
            local.connect() as cluster:
        round_trips(cluster, 200, True, False)  # warm up: connections, pools, scripts
        for name, work in (("loop", lambda o: loop(cluster, tasks, o)),
                           ("round trip", lambda o: round_trips(cluster, count, o, False)),
                           ("new key each", lambda o: round_trips(cluster, 500, o, True))):
            for ordered in (False, True):
                before = lease_calls(local)
                figures = work(ordered)
                after = lease_calls(local)
                figures["lease_calls"] = {op: after[op] - before[op] for op in LEASE_OPS}
                result[f"{name}, {'ordered' if ordered else 'plain'}"] = figures
    return result


def format_table(results: dict[str, Any]) -> str:
    lines = []
    for label, result in results.items():
        for workload, figures in result["workloads"].items():
            numbers = ", ".join(f"{k} {v:,}" for k, v in figures.items() if k != "lease_calls")
            calls = figures["lease_calls"]
            lines.append(f"{label:<7} {workload:<24} {numbers:<32} lease calls: take "
                         f"{calls['order-take']:.0f}, renew {calls['order-renew']:.0f}, "
                         f"release {calls['order-release']:.0f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ordered",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--round-trips", type=int, default=2_000)
    parser.add_argument("--label", default="after")
    parser.add_argument("--json", type=Path,
                        default=Path(__file__).parent / "results" / "ordered.json")
    args = parser.parse_args(argv)
    result = {"workloads": run(args.tasks, args.round_trips), "source": source()}
    merged = json.loads(args.json.read_text()) if args.json.exists() else {}
    merged[args.label] = result
    print(format_table(merged))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(merged, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
