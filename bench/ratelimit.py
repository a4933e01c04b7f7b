"""How closely a cluster-wide rate limit holds: target rate vs achieved, over 2 nodes.

``python -m bench.ratelimit [--rates 10,100,500,1000] [--seconds 30]``

Starts a local cluster of 2 nodes. For each target rate it sets the live limit of one
task (``taskctl config set rate_limits.bench.rate_limited=RATE``, here through the
config module), waits until both nodes apply it, and dispatches a backlog of that task
over many keys (so both nodes hold waiting starts and share one bucket): the target
times (``--seconds`` + 5 s). Each run of the task returns when it started and on
which node. The achieved rate is the number of starts in a ``--seconds`` window that
begins 2 s after the first start (after the initial burst), divided by the window; the
burst is the number of starts in the first 100 ms. Also counted: the token script
calls the nodes made (``ringpool_redis_round_trip_seconds_count{op="tokens"}``).
Writes ``bench/results/ratelimit.json``.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench.saving import RESULTS, save
from ringpool import current_task, task
from ringpool.core.config import read_config, update_config
from ringpool.core.membership import connect_zookeeper
from ringpool.testing.local import LocalCluster

WARM_S = 2.0
NAME = "bench.rate_limited"


@task(NAME, timeout=600.0, max_retries=0)
def rate_limited() -> tuple[float, str]:
    """When this run started, and where."""
    ctx = current_task()
    return time.time(), ctx.node_id if ctx else ""


def metric(local: LocalCluster, node_id: str, name: str, **labels: str) -> float:
    url = f"http://127.0.0.1:{local.metrics_ports[node_id]}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def set_limit(local: LocalCluster, rate: float) -> None:
    zk = connect_zookeeper(local.zk)
    try:
        stored = update_config(zk, local.cluster,
                               lambda c: c.with_values({f"rate_limits.{NAME}": f"{rate}/s"}))
        assert read_config(zk, local.cluster).config.rate_limits[NAME] == rate
    finally:
        zk.stop()
        zk.close()
    deadline = time.monotonic() + 30
    while any(metric(local, n, "ringpool_config_version") < stored.version for n in local.nodes):
        if time.monotonic() > deadline:
            raise TimeoutError("the nodes did not apply the config")
        time.sleep(0.05)


def measure(local: LocalCluster, rate: float, seconds: float) -> dict[str, Any]:
    set_limit(local, rate)
    calls_before = sum(metric(local, n, "ringpool_redis_round_trip_seconds_count", op="tokens")
                       for n in local.nodes)
    count = int(rate * (seconds + WARM_S + 3))
    with local.connect(max_outstanding=count + 1) as cluster:
        while len(cluster.ring) < len(local.nodes):
            time.sleep(0.05)
        handles = cluster.dispatch_many(
            [(f"key:{i}", rate_limited.s()) for i in range(count)])
        runs = [h.result(timeout=seconds * 4 + 60) for h in handles]
    calls = sum(metric(local, n, "ringpool_redis_round_trip_seconds_count", op="tokens")
                for n in local.nodes) - calls_before
    starts = sorted(started for started, _ in runs)
    first = starts[0]
    window = (first + WARM_S, first + WARM_S + seconds)
    in_window = sum(window[0] <= s < window[1] for s in starts)
    achieved = in_window / seconds
    per_node: dict[str, int] = {}
    for started, node in runs:
        if window[0] <= started < window[1]:
            per_node[node] = per_node.get(node, 0) + 1
    result = {
        "target_per_s": rate, "achieved_per_s": round(achieved, 2),
        "error_pct": round((achieved - rate) / rate * 100, 2),
        "window_s": seconds, "tasks": count,
        "burst_first_100ms": sum(s < first + 0.1 for s in starts),
        "per_node_in_window": per_node,
        "token_calls_per_s": round(calls / (starts[-1] - first), 1) if starts[-1] > first else None,
        "overall_per_s": round((len(starts) - 1) / (starts[-1] - first), 2),
    }
    print(json.dumps(result), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ratelimit")
    parser.add_argument("--rates", default="10,100,500,1000",
                        help="target rates, starts per second, comma-separated")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured window per rate")
    parser.add_argument("--out", type=Path, default=RESULTS / "ratelimit.json")
    args = parser.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    with LocalCluster(nodes=2, coordinators=0, tasks=["bench.ratelimit"]) as local:
        runs = [measure(local, rate, args.seconds) for rate in rates]
    save(args.out, {"nodes": 2, "runs": runs})
    print(f"{'target/s':>9} {'achieved/s':>11} {'error':>8} {'burst':>6} {'calls/s':>8}")
    for run in runs:
        print(f"{run['target_per_s']:>9g} {run['achieved_per_s']:>11.2f} "
              f"{run['error_pct']:>7.2f}% {run['burst_first_100ms']:>6} "
              f"{run['token_calls_per_s']:>8}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
