"""What one task costs Redis: bytes kept, commands, bytes on the wire, Redis CPU.

``python -m bench.redis_capacity [--tasks 20000] [--label after]`` starts a local
cluster (its own ZooKeeper and Redis, 2 nodes), runs a warm-up, then dispatches tiny
tasks (``demo.add``, one key each) in batches of 500 through the real client and
nodes, reads every result, and reads Redis' INFO before and after:

- bytes per finished task while its result is kept, and once the result TTL has run
  out (the fingerprint window still open): ``used_memory`` deltas over the tasks;
- Redis commands per task (``INFO commandstats``), bytes in and out per task;
- Redis CPU per task (``used_cpu_user + used_cpu_sys``), and the tasks/s one Redis
  shard (one core) would carry at that cost;

for tasks without and with an idempotency key. It uses only APIs that the code before
the partitioned layout also has, so the same script measures both: run it with that
checkout's ``sdk``, ``node`` and ``coordinator`` first on ``PYTHONPATH`` and
``--label before``. Results merge into ``bench/results/redis_capacity.json`` under the
label.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import redis

from ringpool import Task
from ringpool.testing.local import LocalCluster

RESULTS = Path(__file__).resolve().parent / "results" / "redis_capacity.json"
RESULT_TTL_S = 20
BATCH = 500


def snapshot(client: redis.Redis) -> dict[str, Any]:
    info = client.info("all")
    commands = {name.removeprefix("cmdstat_"): int(stats["calls"])
                for name, stats in info.items() if name.startswith("cmdstat_")}
    return {"memory": int(info["used_memory"]), "keys": int(client.dbsize()),
            "in": int(info["total_net_input_bytes"]), "out": int(info["total_net_output_bytes"]),
            "cpu": float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
            "commands": commands}


def expire_all(client: redis.Redis) -> None:
    """Touch every key, so the ones past their TTL are gone now rather than later."""
    for key in client.scan_iter(count=1000):
        client.exists(key)


def run_tasks(local: LocalCluster, count: int, tag: str, idempotent: bool) -> float:
    """Dispatch ``count`` tiny tasks and read every result; seconds taken."""
    started = time.perf_counter()
    with local.connect() as client:
        for start in range(0, count, BATCH):
            tasks = [(f"{tag}:{i}", Task("demo.add", args=(i, 1),
                                         idempotency_key=f"{tag}-{i}" if idempotent else None))
                     for i in range(start, min(count, start + BATCH))]
            for handle in client.dispatch_many(tasks):
                handle.result(timeout=60)
    return time.perf_counter() - started


def per_task(before: dict[str, Any], after: dict[str, Any], count: int) -> dict[str, Any]:
    commands = {name: round((calls - before["commands"].get(name, 0)) / count, 3)
                for name, calls in after["commands"].items()
                if calls - before["commands"].get(name, 0) > 0}
    cpu_us = (after["cpu"] - before["cpu"]) / count * 1e6
    return {
        "bytes": round((after["memory"] - before["memory"]) / count, 1),
        "keys": round((after["keys"] - before["keys"]) / count, 3),
        "commands": dict(sorted(commands.items(), key=lambda c: -c[1])),
        "commands_total": round(sum(commands.values()), 3),
        "net_in_bytes": round((after["in"] - before["in"]) / count, 1),
        "net_out_bytes": round((after["out"] - before["out"]) / count, 1),
        "redis_cpu_us": round(cpu_us, 2),
        "tasks_per_s_per_shard_core": round(1e6 / cpu_us) if cpu_us > 0 else None,
    }


def measure(count: int, idempotent: bool, partitions: int) -> dict[str, Any]:
    node_args = ["--result-ttl", str(RESULT_TTL_S)]
    if partitions:  # (the code before partitions has no such flag)
        node_args += ["--partitions", str(partitions)]
    with LocalCluster(nodes=2, coordinators=0, tasks=["ringpool.demo"],
                      node_args=node_args) as local:
        client = redis.Redis.from_url(local.redis)
        run_tasks(local, 2000, "warm", idempotent)  # scripts loaded, dicts grown, pools warm
        time.sleep(RESULT_TTL_S + 1)
        expire_all(client)
        before = snapshot(client)
        took = run_tasks(local, count, "run", idempotent)
        with_results = snapshot(client)
        time.sleep(RESULT_TTL_S + 1)  # the last result's TTL started as the run ended
        expire_all(client)
        expired = snapshot(client)
        client.close()
    kept = per_task(before, with_results, count)
    return {
        "tasks": count, "seconds": round(took, 2), "tasks_per_s": round(count / took),
        "while_result_kept": kept,
        "after_result_expired": {"bytes": round((expired["memory"] - before["memory"]) / count, 1),
                                 "keys": round((expired["keys"] - before["keys"]) / count, 3)},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--label", default="after", help="key of this run in the JSON")
    parser.add_argument("--partitions", type=int, default=0,
                        help="the cluster's partition count (0: the default)")
    args = parser.parse_args(argv)
    run = {"command": " ".join([Path(sys.executable).name, "-m", "bench.redis_capacity",
                                *(argv if argv is not None else sys.argv[1:])]),
           "tiny": measure(args.tasks, False, args.partitions),
           "tiny_idempotent": measure(args.tasks, True, args.partitions)}
    saved = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    saved[args.label] = run
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(saved, indent=2) + "\n")
    print(json.dumps(run, indent=2))


if __name__ == "__main__":
    main()
