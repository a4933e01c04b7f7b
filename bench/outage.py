"""A client's memory while its only owner is down: dispatch until the bound stops it.

``python -m bench.outage [--payload BYTES] [--dispatch-timeout SECONDS]``

Starts a 1-node local cluster, pauses the node (SIGSTOP) and calls
``cluster.dispatch()`` in a loop. Tasks pile up unanswered until
``max_outstanding`` (or ``max_outstanding_bytes``) is reached; the next dispatch
waits ``dispatch_timeout_s`` and raises ClusterUnavailable. Prints the client's
RSS on the way and at the bound, then resumes the node and times the flush.
"""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path

from ringpool import Cluster, ClusterUnavailable, Task
from ringpool.testing.local import LocalCluster


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.outage")
    parser.add_argument("--payload", type=int, default=100, help="bytes of argument per task")
    parser.add_argument("--dispatch-timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    payload = "x" * args.payload
    with LocalCluster(nodes=1, coordinators=0, tasks=["ringpool.demo"]) as local, \
            Cluster.connect(zk=local.zk, redis=local.redis, cluster=local.cluster,
                            dispatch_timeout_s=args.dispatch_timeout) as cluster:
        while not cluster.ring.members:
            time.sleep(0.05)
        for i in range(200):  # warm: links open, allocator settled
            cluster.dispatch(f"warm:{i}", Task("demo.where", args=(payload,))).result(timeout=30)
        base = rss_mib()
        node = local.nodes["node-0"]
        node.send_signal(signal.SIGSTOP)
        sent = 0
        started = time.monotonic()
        try:
            while True:
                cluster.dispatch(f"k:{sent % 1000}", Task("demo.where", args=(payload,)))
                sent += 1
                if sent % 5000 == 0:
                    print(f"{sent} dispatched, RSS +{rss_mib() - base:.0f} MiB", flush=True)
        except ClusterUnavailable as exc:
            print(f"dispatch {sent + 1} raised after {time.monotonic() - started:.1f}s: {exc}")
        window = cluster._async.router.window
        print(f"at the bound: {window.tasks} tasks, {window.bytes / 2**20:.1f} MiB counted; "
              f"RSS {rss_mib():.0f} MiB (+{rss_mib() - base:.0f} over {base:.0f})")
        node.send_signal(signal.SIGCONT)
        started = time.monotonic()
        cluster.flush(timeout=120)
        print(f"node resumed: all {sent} accepted {time.monotonic() - started:.1f}s later")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
