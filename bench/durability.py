"""What each accept durability costs: accept latency and throughput per mode.

``python -m bench.durability [--calls 1000]`` starts a Redis primary with an
append-only file and one replica of it (its own temp dir, on disk), and for each mode
times ``StateStore.accept`` calls one after another, as one node's group commit
makes them, with batches of 1 and of 100 tiny tasks:

- ``memory``: the primary with ``appendfsync everysec``, no wait;
- ``aof``: the primary with ``appendfsync always`` (Redis < 7.2 has no ``WAITAOF``;
  on 7.2+ the store sends ``WAITAOF 1 0`` instead and ``everysec`` would do);
- ``replica``: ``appendfsync everysec`` and ``WAIT 1`` after each batch.

Output: p50/p99 ms per accept call and tasks/s, per mode and batch size, and the
ratio of each mode's throughput to ``memory``'s, in ``bench/results/durability.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from bench.saving import RESULTS, save
from ringpool import Task
from ringpool.core.envelope import build
from ringpool.store.durability import AcceptDurability
from ringpool.store.store import StateStore
from ringpool.testing.local import RedisServer, wait_until

OUT = RESULTS / "durability.json"
MODES = [(AcceptDurability.MEMORY, "everysec"), (AcceptDurability.AOF, "always"),
         (AcceptDurability.REPLICA, "everysec")]
BATCHES = (1, 100)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def time_accepts(url: str, cluster: str, durability: AcceptDurability, batch: int,
                       calls: int) -> dict[str, Any]:
    store = StateStore.from_url(url, cluster, durability=durability)
    try:
        await store.check_durability()
        seconds = []
        for call in range(calls + 20):  # the first 20 warm up
            envelopes = [build(f"k{call}:{i}", Task("demo.add", args=(i, 1)), 1)
                         for i in range(batch)]
            started = time.perf_counter()
            results = await store.accept("bench-node", 1, envelopes)
            took = time.perf_counter() - started
            assert all(r.code.value == "A" for r in results), results[:1]
            if call >= 20:
                seconds.append(took)
    finally:
        await store.close()
    total = sum(seconds)
    return {"p50_ms": round(statistics.median(seconds) * 1000, 3),
            "p99_ms": round(percentile(seconds, 0.99) * 1000, 3),
            "tasks_per_s": round(calls * batch / total)}


def run(calls: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ringpool-durability-", dir="/var/tmp") as path:
        out = measure(Path(path), calls)
    for batch in BATCHES:
        base = out["modes"]["memory"][f"batch_{batch}"]["tasks_per_s"]
        for mode in out["modes"].values():
            mode[f"batch_{batch}"]["throughput_vs_memory"] = round(
                mode[f"batch_{batch}"]["tasks_per_s"] / base, 2)
    return out


def measure(workdir: Path, calls: int) -> dict[str, Any]:
    """On disk (not tmpfs), so that an fsync costs what it costs."""
    primary = RedisServer(workdir, appendonly=True, name="primary").start()
    replica = RedisServer(workdir, name="replica", extra_args=[
        "--replicaof", "127.0.0.1", str(primary.port)]).start()
    try:
        control = redis.Redis.from_url(primary.url)
        follower = redis.Redis.from_url(replica.url)
        wait_until(lambda: follower.info("replication").get("master_link_status") == "up", 30,
                   "the replica to be in sync")
        follower.close()
        out: dict[str, Any] = {"redis": control.info("server")["redis_version"], "modes": {}}
        for durability, fsync in MODES:
            control.config_set("appendfsync", fsync)
            out["modes"][durability.value] = {"appendfsync": fsync, **{
                f"batch_{batch}": asyncio.run(time_accepts(
                    primary.url, f"dur{durability.value}{batch}", durability, batch,
                    calls if batch == 1 else max(100, calls // 5)))
                for batch in BATCHES}}
        control.close()
    finally:
        replica.stop()
        primary.stop()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="accept calls of 1 task per mode")
    args = parser.parse_args(argv)
    result = {"command": " ".join([Path(sys.executable).name, "-m", "bench.durability",
                                   *(argv if argv is not None else sys.argv[1:])]),
              **run(args.calls)}
    save(OUT, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
