"""What a finished task keeps in Redis, while its result is kept and after.

``python -m bench.task_memory [--tasks 20000] [--label after]`` starts a local cluster
(its own ZooKeeper and Redis, 2 nodes, a result TTL of 20 s), runs a warm-up, then
dispatches tiny tasks (``demo.add``, one key each) in batches of 500 through the real
client and nodes, reads every result, and reads Redis' ``used_memory`` and key count:
right after the results (the result kept), and once the result TTL has run out (only
the fingerprint left, its window still open); per task, without and with an
idempotency key. ``bench.capacity`` measures the rest of a task's Redis cost
(commands, CPU, network).

It uses only APIs that the code before the partitioned layout also has, so the same
script measures both: run it with that checkout's ``sdk``, ``node`` and ``coordinator``
first on ``PYTHONPATH`` and ``--label before``. Results merge into
``bench/results/task_memory.json`` under the label.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import redis

from bench.saving import RESULTS, save, saved
from ringpool import Task
from ringpool.testing.local import LocalCluster

OUT = RESULTS / "task_memory.json"
RESULT_TTL_S = 20
BATCH = 500


def snapshot(client: redis.Redis) -> dict[str, int]:
    return {"memory": int(client.info("memory")["used_memory"]), "keys": int(client.dbsize())}


def expire_all(client: redis.Redis) -> None:
    """Touch every key, so the ones past their TTL are gone now rather than later."""
    for key in client.scan_iter(count=1000):
        client.exists(key)


def run_tasks(local: LocalCluster, count: int, tag: str, idempotent: bool) -> None:
    """Dispatch ``count`` tiny tasks and read every result."""
    with local.connect() as client:
        for start in range(0, count, BATCH):
            tasks = [(f"{tag}:{i}", Task("demo.add", args=(i, 1),
                                         idempotency_key=f"{tag}-{i}" if idempotent else None))
                     for i in range(start, min(count, start + BATCH))]
            for handle in client.dispatch_many(tasks):
                handle.result(timeout=60)


def per_task(before: dict[str, int], after: dict[str, int], count: int) -> dict[str, float]:
    return {"bytes": round((after["memory"] - before["memory"]) / count, 1),
            "keys": round((after["keys"] - before["keys"]) / count, 3)}


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
        run_tasks(local, count, "run", idempotent)
        with_results = snapshot(client)
        time.sleep(RESULT_TTL_S + 1)  # the last result's TTL started as the run ended
        expire_all(client)
        expired = snapshot(client)
        client.close()
    return {"tasks": count, "while_result_kept": per_task(before, with_results, count),
            "after_result_expired": per_task(before, expired, count)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--label", default="after", help="key of this run in the JSON")
    parser.add_argument("--partitions", type=int, default=0,
                        help="the cluster's partition count (0: the default)")
    args = parser.parse_args(argv)
    run = {"command": " ".join([Path(sys.executable).name, "-m", "bench.task_memory",
                                *(argv if argv is not None else sys.argv[1:])]),
           "tiny": measure(args.tasks, False, args.partitions),
           "tiny_idempotent": measure(args.tasks, True, args.partitions)}
    runs = saved(OUT)
    runs[args.label] = run
    save(OUT, runs)
    print(json.dumps(run, indent=2))


if __name__ == "__main__":
    main()
