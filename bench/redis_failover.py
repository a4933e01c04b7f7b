"""Accepted tasks lost when a Redis Cluster primary is killed, per accept durability.

``python -m bench.redis_failover [--before 1500 --after 1500]`` runs the failover drill
of ``tests/failover.py`` once per durability (``memory``, ``aof``, ``replica``), each on
a new Redis Cluster of 3 primaries and 3 replicas (append-only files synced on every
write): 2 nodes and a coordinator take tasks as fast as one client sends them, one
primary is killed with SIGKILL after ``--before`` accepted tasks, its replica takes
over, the killed server returns as a replica, and the client sends ``--after`` more.
A task is lost when its dispatch returned and no result will ever come.
Output: the table, and ``bench/results/redis_failover.json``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.saving import RESULTS, save
from ringpool.testing.local import RedisClusterServers, RedisServer, ZooKeeperServer
from tests.failover import failover_drill

OUT = RESULTS / "redis_failover.json"
MODES = ("memory", "aof", "replica")


def run(before: int, after: int) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="ringpool-failover-", dir="/var/tmp") as path:
        workdir = Path(path)
        zookeeper = ZooKeeperServer(workdir).start()
        probe = RedisServer(workdir, name="probe").start()
        try:
            for mode in MODES:
                servers = RedisClusterServers(workdir / mode, appendonly=True).start()
                try:
                    counts = failover_drill(zookeeper.address, servers, probe.url, mode,
                                            before, after)
                finally:
                    servers.stop()
                print(counts.line(), flush=True)
                rows.append(counts.__dict__)
        finally:
            probe.stop()
            zookeeper.stop()
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=int, default=1500)
    parser.add_argument("--after", type=int, default=1500)
    args = parser.parse_args(argv)
    result = {"command": " ".join([Path(sys.executable).name, "-m", "bench.redis_failover",
                                   *(argv if argv is not None else sys.argv[1:])]),
              "runs": run(args.before, args.after)}
    save(OUT, result)
    print(f"{'durability':<10} {'accepted':>8} {'refused':>7} {'lost':>5} {'never ran':>9}")
    for row in result["runs"]:
        print(f"{row['durability']:<10} {row['accepted']:>8} {row['refused']:>7} "
              f"{row['lost']:>5} {row['never_ran']:>9}")


if __name__ == "__main__":
    main()
