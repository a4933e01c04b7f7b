"""Ring lookups per second: ringpool's ``Ring`` / ``RouteCache`` vs ``uhashring``, same run.

``python -m bench.ring [--members 10] [--keys 100000] [--repeats 5] [--json PATH]``

What is measured, with the same members (``node-0`` … ``node-{N-1}``) and the same keys
(``user:0`` … ``user:{K-1}``) for every contender:

* ``ringpool uncached`` — ``Ring.owner(key)``: one mmh3 64-bit hash and a bisect over
  ``128 * N`` positions, every call.
* ``ringpool cached`` — ``RouteCache.owner(ring, key)`` with the cache already warm (the
  SDK's steady state: a version check and a dict hit).
* ``uhashring`` — ``HashRing(nodes=[...]).get_node(key)`` in its default configuration
  (160 virtual nodes per node, md5 positions).

Each contender runs ``--repeats`` passes over all keys, interleaved with the others; its
best pass counts (least disturbed by the rest of the machine). Ratios are to uhashring.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.saving import RESULTS, save
from ringpool.core.ring import Member, Ring, RouteCache


def _pass_seconds(lookup: Callable[[str], object], keys: list[str]) -> float:
    start = time.perf_counter()
    for key in keys:
        lookup(key)
    return time.perf_counter() - start


def _best_rates(
    contenders: dict[str, Callable[[str], object]], keys: list[str], repeats: int
) -> dict[str, float]:
    """Lookups/s of each contender's fastest pass; passes interleave so noise hits all alike."""
    best = dict.fromkeys(contenders, float("inf"))
    for _ in range(repeats):
        for name, lookup in contenders.items():
            best[name] = min(best[name], _pass_seconds(lookup, keys))
    return {name: len(keys) / seconds for name, seconds in best.items()}


def run(members: int = 10, keys: int = 100_000, repeats: int = 5) -> dict[str, Any]:
    """Measure all contenders in this process; returns rates, ratios and settings."""
    from uhashring import HashRing

    node_ids = [f"node-{i}" for i in range(members)]
    key_list = [f"user:{i}" for i in range(keys)]

    ring = Ring({n: Member(node_id=n, addr=f"127.0.0.1:{7000 + i}") for i, n in
                 enumerate(node_ids)}, version=1)
    cache = RouteCache(max_entries=max(keys, 1))
    for key in key_list:  # warm: the cached figure is the steady state
        cache.owner(ring, key)
    uhash = HashRing(nodes=list(node_ids))

    # Sanity: every contender answers with a member for every key.
    assert {ring.owner(k) for k in key_list[:1000]} <= set(node_ids)
    assert {uhash.get_node(k) for k in key_list[:1000]} <= set(node_ids)

    def cached(key: str, _owner: Callable[[Ring, str], str] = cache.owner) -> str:
        return _owner(ring, key)

    rates = _best_rates(
        {"ringpool_uncached": ring.owner, "ringpool_cached": cached,
         "uhashring": uhash.get_node},
        key_list, repeats,
    )
    base = rates["uhashring"]
    return {
        "benchmark": "ring",
        "settings": {
            "members": members, "keys": keys, "repeats": repeats,
            "ringpool_vnodes": ring.vnodes, "uhashring": "HashRing(nodes) default: 160 vnodes, md5",
        },
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine()},
        "lookups_per_s": rates,
        "ns_per_lookup": {k: 1e9 / v for k, v in rates.items()},
        "ratio_to_uhashring": {k: v / base for k, v in rates.items()},
        "target": "ringpool >= 3x uhashring (default configuration)",
    }


def format_table(result: dict[str, Any]) -> str:
    """A plain-text table of one ``run()`` result."""
    lines = [f"{'contender':<20} {'lookups/s':>14} {'ns/lookup':>10} {'vs uhashring':>13}"]
    for name, rate in result["lookups_per_s"].items():
        lines.append(
            f"{name:<20} {rate:>14,.0f} {result['ns_per_lookup'][name]:>10.0f} "
            f"{result['ratio_to_uhashring'][name]:>12.2f}x"
        )
    s = result["settings"]
    lines.append(f"({s['members']} members, {s['keys']:,} keys, best of {s['repeats']} passes)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ring", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="20,000 keys, 2 passes")
    parser.add_argument("--json", type=Path, default=RESULTS / "ring.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.keys, args.repeats = 20_000, 2
    result = run(args.members, args.keys, args.repeats)
    print(format_table(result))
    save(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
