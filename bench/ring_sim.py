"""Ring simulation at 100 and 1,000 members: keys moved on join and leave, balance,
rebuild time and memory, with ringpool's own ``Ring`` (no servers).

``python -m bench.ring_sim [--members 100,1000] [--vnodes 64,128,256] [--keys 200000]
[--trials 5] [--json PATH]``

For each member count N and virtual-node count V (128 is ringpool's default):

* **moved on join / leave** — the key-space fraction that changes owner when one member
  joins N (ideal ``1/(N+1)``) or one of N leaves (ideal ``1/N``), exact (from the
  rings' arcs), mean and max over ``--trials`` different members; and, over ``--keys``
  sample keys, the fraction whose owner changed and whether every one of them moved to
  (join) or from (leave) that member only — consistent hashing's promise.
* **balance** — max/mean and min/mean of the members' key-space shares (exact) and of
  their sample-key counts.
* **rebuild** — seconds to build the ring from its members (best of 5): what every
  process spends on each ring change.
* **memory** — bytes the ring keeps (``tracemalloc``, members included): what each
  client, node and coordinator holds per cluster.
* **lookup** — ns per ``Ring.owner`` (uncached) over the sample keys (best of 3 passes).
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from bench.saving import RESULTS, save
from ringpool.core.ring import Member, Ring


def members(count: int, start: int = 0) -> dict[str, Member]:
    return {f"node-{i}": Member(node_id=f"node-{i}", addr=f"10.0.{i // 250}.{i % 250}:7700")
            for i in range(start, start + count)}


def build_seconds(group: dict[str, Member], vnodes: int, repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        Ring(group, version=1, vnodes=vnodes)
        best = min(best, time.perf_counter() - started)
    return best


def ring_bytes(group: dict[str, Member], vnodes: int) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        ring = Ring(dict(group), version=1, vnodes=vnodes)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    del ring
    return held


def owners(ring: Ring, keys: list[str]) -> list[str]:
    return [ring.owner(key) for key in keys]


def ratio(values: list[float]) -> tuple[float, float]:
    """(max/mean, min/mean)."""
    mean = statistics.fmean(values)
    return max(values) / mean, min(values) / mean


def simulate(count: int, vnodes: int, keys: list[str], trials: int) -> dict[str, Any]:
    group = members(count)
    ring = Ring(group, version=1, vnodes=vnodes)
    base = owners(ring, keys)
    shares = ring.shares()
    per_node = dict.fromkeys(group, 0)
    for owner in base:
        per_node[owner] += 1

    joins, leaves, join_keys, leave_keys, only = [], [], [], [], True
    for trial in range(trials):
        newcomer = members(1, start=count + trial)
        bigger = Ring({**group, **newcomer}, version=2, vnodes=vnodes)
        (new_id,) = newcomer
        joins.append(bigger.shares()[new_id])
        after = owners(bigger, keys)
        moved = [(a, b) for a, b in zip(base, after, strict=True) if a != b]
        join_keys.append(len(moved) / len(keys))
        only &= all(b == new_id for _, b in moved)

        leaver = f"node-{trial * (count // trials)}"
        smaller = Ring({k: v for k, v in group.items() if k != leaver}, version=2, vnodes=vnodes)
        leaves.append(shares[leaver])
        after = owners(smaller, keys)
        moved = [(a, b) for a, b in zip(base, after, strict=True) if a != b]
        leave_keys.append(len(moved) / len(keys))
        only &= all(a == leaver for a, _ in moved)

    lookup_s = float("inf")
    for _ in range(3):  # the best pass: the one least disturbed by the rest of the machine
        started = time.perf_counter()
        owners(ring, keys)
        lookup_s = min(lookup_s, time.perf_counter() - started)
    share_max, share_min = ratio(list(shares.values()))
    keys_max, keys_min = ratio([float(n) for n in per_node.values()])
    return {
        "members": count, "vnodes": vnodes, "points": len(ring.points()),
        "moved_on_join": {"ideal": 1 / (count + 1), "mean": statistics.fmean(joins),
                          "max": max(joins), "sample_keys_mean": statistics.fmean(join_keys)},
        "moved_on_leave": {"ideal": 1 / count, "mean": statistics.fmean(leaves),
                           "max": max(leaves), "sample_keys_mean": statistics.fmean(leave_keys)},
        "moved_only_to_or_from_the_changed_member": only,
        "balance": {"share_max_over_mean": share_max, "share_min_over_mean": share_min,
                    "keys_max_over_mean": keys_max, "keys_min_over_mean": keys_min},
        "rebuild_s": build_seconds(group, vnodes),
        "memory_bytes": ring_bytes(group, vnodes),
        "lookup_ns": lookup_s * 1e9 / len(keys),
    }


def run(member_counts: list[int], vnode_counts: list[int], key_count: int,
        trials: int) -> dict[str, Any]:
    keys = [f"user:{i}" for i in range(key_count)]
    rows = [simulate(n, v, keys, trials) for n in member_counts for v in vnode_counts]
    return {
        "benchmark": "ring_sim",
        "settings": {"members": member_counts, "vnodes": vnode_counts, "keys": key_count,
                     "trials": trials, "default_vnodes": 128},
        "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
        "rows": rows,
    }


def format_table(result: dict[str, Any]) -> str:
    lines = [f"{'members':>7} {'vnodes':>6} {'join moved (ideal)':>19} {'leave moved (ideal)':>20} "
             f"{'max/mean':>8} {'min/mean':>8} {'rebuild ms':>10} {'memory':>9} {'lookup':>8}"]
    for r in result["rows"]:
        join, leave, bal = r["moved_on_join"], r["moved_on_leave"], r["balance"]
        lines.append(
            f"{r['members']:>7} {r['vnodes']:>6} "
            f"{join['mean'] * 100:>8.3f}% ({join['ideal'] * 100:.3f}%) "
            f"{leave['mean'] * 100:>9.3f}% ({leave['ideal'] * 100:.3f}%) "
            f"{bal['share_max_over_mean']:>8.2f} {bal['share_min_over_mean']:>8.2f} "
            f"{r['rebuild_s'] * 1000:>10.1f} {r['memory_bytes'] / 2**20:>6.1f} MiB "
            f"{r['lookup_ns']:>5.0f} ns")
    s = result["settings"]
    only = all(r["moved_only_to_or_from_the_changed_member"] for r in result["rows"])
    lines.append(f"(moved: mean of {s['trials']} joins and leaves, exact arcs; balance: key-space "
                 f"shares; {s['keys']:,} sample keys agree; keys moved only to or from the "
                 f"member that changed: {only})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ring_sim",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--members", default="100,1000")
    parser.add_argument("--vnodes", default="64,128,256")
    parser.add_argument("--keys", type=int, default=200_000)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--json", type=Path, default=RESULTS / "ring_sim.json")
    args = parser.parse_args(argv)
    result = run([int(n) for n in args.members.split(",")],
                 [int(v) for v in args.vnodes.split(",")], args.keys, args.trials)
    print(format_table(result))
    save(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
