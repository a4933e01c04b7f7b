"""Per-task cost of a tiny task, for the capacity model (``docs/capacity.md``).

``python -m bench.capacity [--tasks 20000] [--keys 1000] [--json PATH]``

One ZooKeeper, one ``redis-server`` (no AOF) and one node (with one coordinator) on
loopback, started here; one client in this process. After 2,000 warm-up tasks, the
Redis statistics are reset and ``--tasks`` ``demo.add`` tasks are dispatched over
``--keys`` keys (``dispatch_many``, 1,000 per call) and every result is read. Then,
divided by the number of tasks:

* **Redis commands** — ``INFO commandstats`` calls, by command (a script call counts
  once, whatever it does inside), and the Redis main thread's CPU time
  (``used_cpu_*_main_thread``): its inverse is the tasks/s one Redis shard carries at
  100 % of its one core.
* **Redis bytes** — ``used_memory`` growth (what a finished task keeps until its TTLs
  run out) and keys; network bytes in and out.
* **Node CPU** — user + system time of the node process (``/proc``): its inverse is
  the tasks/s one node carries at 100 % of one core (the node's Python code holds the
  GIL; gRPC's and Redis' I/O add a little outside it). Coordinator and client CPU too.
* **Throughput** — tasks / wall time, client, node, Redis and ZooKeeper sharing this
  machine's cores (a floor, not a node's capacity).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from bench.saving import RESULTS, save
from ringpool import Task
from ringpool.testing.local import LocalCluster, RedisServer, ZooKeeperServer

BATCH = 1_000
WARM_UP = 2_000


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_figures(client: redis.Redis) -> dict[str, Any]:
    info = client.info("all")
    return {
        "cpu_main_thread_s": info["used_cpu_sys_main_thread"] + info["used_cpu_user_main_thread"],
        "used_memory": info["used_memory"], "keys": client.dbsize(),
        "net_in": info["total_net_input_bytes"], "net_out": info["total_net_output_bytes"],
        "commands": {name.removeprefix("cmdstat_"): stats["calls"]
                     for name, stats in info.items() if name.startswith("cmdstat_")},
    }


def run_tasks(local: LocalCluster, count: int, keys: int) -> float:
    """Dispatch ``count`` tiny tasks and read every result; returns the wall seconds."""
    started = time.perf_counter()
    with local.connect() as cluster:
        handles = []
        for start in range(0, count, BATCH):
            handles += cluster.dispatch_many(
                [(f"user:{i % keys}", Task("demo.add", args=(i, 1)))
                 for i in range(start, min(start + BATCH, count))])
        for handle in handles:
            handle.result(timeout=120)
    return time.perf_counter() - started


def run(tasks: int, keys: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ringpool-capacity-") as tmp:
        workdir = Path(tmp)
        zookeeper = ZooKeeperServer(workdir).start()
        redis_server = RedisServer(workdir).start()
        try:
            with LocalCluster(nodes=1, coordinators=1, zk=zookeeper.address,
                              redis=redis_server.url, workdir=workdir) as local:
                run_tasks(local, WARM_UP, keys)
                rds = redis.Redis.from_url(local.redis)
                rds.config_resetstat()
                node_pid, coordinator_pid = local.nodes["node-0"].pid, local.coordinators[0].pid
                before = redis_figures(rds)
                node_cpu, coordinator_cpu = cpu_seconds(node_pid), cpu_seconds(coordinator_pid)
                client_cpu = time.process_time()
                wall = run_tasks(local, tasks, keys)
                client_cpu = time.process_time() - client_cpu
                node_cpu = cpu_seconds(node_pid) - node_cpu
                coordinator_cpu = cpu_seconds(coordinator_pid) - coordinator_cpu
                after = redis_figures(rds)
                rds.close()
        finally:
            redis_server.stop()
            zookeeper.stop()
    per_task = {
        "redis_commands": {name: (after["commands"][name] - before["commands"].get(name, 0))
                           / tasks for name in after["commands"]
                           if after["commands"][name] > before["commands"].get(name, 0)},
        "redis_cpu_us": (after["cpu_main_thread_s"] - before["cpu_main_thread_s"]) * 1e6 / tasks,
        "redis_bytes_kept": (after["used_memory"] - before["used_memory"]) / tasks,
        "redis_keys_kept": (after["keys"] - before["keys"]) / tasks,
        "redis_net_in_bytes": (after["net_in"] - before["net_in"]) / tasks,
        "redis_net_out_bytes": (after["net_out"] - before["net_out"]) / tasks,
        "node_cpu_us": node_cpu * 1e6 / tasks,
        "coordinator_cpu_us": coordinator_cpu * 1e6 / tasks,
        "client_cpu_us": client_cpu * 1e6 / tasks,
    }
    per_task["redis_commands_total"] = sum(per_task["redis_commands"].values())
    return {
        "benchmark": "capacity",
        "settings": {"tasks": tasks, "keys": keys, "task": "demo.add", "nodes": 1,
                     "batch": BATCH, "redis": "redis-server, no AOF, one client listening"},
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                    "cpus": os.cpu_count()},
        "per_task": per_task,
        "per_core": {"node_tasks_per_s": 1e6 / per_task["node_cpu_us"],
                     "redis_shard_tasks_per_s": 1e6 / per_task["redis_cpu_us"]},
        "throughput_tasks_per_s": tasks / wall,
    }


def format_table(result: dict[str, Any]) -> str:
    t, c = result["per_task"], result["per_core"]
    commands = ", ".join(f"{name} {n:.3f}" for name, n in sorted(t["redis_commands"].items()))
    return "\n".join([
        f"per task: Redis {t['redis_commands_total']:.3f} commands ({commands})",
        f"          Redis CPU {t['redis_cpu_us']:.1f} us, keeps {t['redis_bytes_kept']:.0f} bytes "
        f"in {t['redis_keys_kept']:.2f} keys, net in {t['redis_net_in_bytes']:.0f} B / "
        f"out {t['redis_net_out_bytes']:.0f} B",
        f"          node CPU {t['node_cpu_us']:.0f} us, coordinator {t['coordinator_cpu_us']:.1f} us, "
        f"client {t['client_cpu_us']:.0f} us",
        f"one core: node {c['node_tasks_per_s']:,.0f} tasks/s, Redis shard "
        f"{c['redis_shard_tasks_per_s']:,.0f} tasks/s; this machine end to end "
        f"{result['throughput_tasks_per_s']:,.0f} tasks/s",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.capacity",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--keys", type=int, default=1_000)
    parser.add_argument("--json", type=Path, default=RESULTS / "capacity.json")
    args = parser.parse_args(argv)
    result = run(args.tasks, args.keys)
    print(format_table(result))
    save(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
