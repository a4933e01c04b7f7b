"""The capacity model: measured results in, projections out, as Markdown.

``python -m bench.capacity_model [--nodes 100] [--rate 1000000] [--clients 50] [--write]``

Reads ``bench/results/capacity.json`` (``bench.capacity``), ``zk_reads.json``
(``bench.zk_reads``) and ``ring_sim.json`` (``bench.ring_sim``) and renders the
generated part of ``docs/capacity.md`` (between its ``capacity-model`` markers);
``--write`` puts it there. Re-run the benchmarks, then this, and the page is current.
Projections are arithmetic on the measured figures, and say so.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from bench.saving import RESULTS

PAGE = Path(__file__).resolve().parents[1] / "docs" / "capacity.md"
START, END = "<!-- capacity-model:start -->", "<!-- capacity-model:end -->"
HEADROOM = 0.7  # plan a core (Redis' one thread, a node's GIL) to 70 % busy
COORDINATORS, DASHBOARDS = 2, 1
SHIPPED_REDIS_BYTES = 768 * 2**20  # k8s/base/redis.yaml: --maxmemory 768mb
DEFAULT_TTL_S = 24 * 3600  # fingerprint and result TTLs' defaults
IDLE_REREAD_S = 5.0  # Membership re-reads the members this often without a change


def load(name: str) -> dict[str, Any]:
    return dict(json.loads((RESULTS / name).read_text()))


def size(n: float, unit: str = "B") -> str:
    for prefix in ("", "K", "M", "G", "T", "P"):
        if abs(n) < 1000 or prefix == "P":
            return f"{n:,.3g} {prefix}{unit}"
        n /= 1000
    raise AssertionError("unreachable")


def ring_table(sim: dict[str, Any]) -> list[str]:
    settings = sim["settings"]
    lines = [
        f"### The ring (`bench/results/ring_sim.json`: {settings['keys']:,} sample keys; "
        f"moved: mean of {settings['trials']} joins and {settings['trials']} leaves, "
        "from the rings' arcs)",
        "",
        "| members | vnodes | moved on join (ideal) | moved on leave (ideal) | share max/mean "
        "| share min/mean | rebuild | memory | lookup |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sim["rows"]:
        join, leave, balance = r["moved_on_join"], r["moved_on_leave"], r["balance"]
        vnodes = f"**{r['vnodes']}**" if r["vnodes"] == settings["default_vnodes"] else r["vnodes"]
        lines.append(
            f"| {r['members']:,} | {vnodes} | {join['mean']:.3%} ({join['ideal']:.3%}) | "
            f"{leave['mean']:.3%} ({leave['ideal']:.3%}) | "
            f"{balance['share_max_over_mean']:.2f} | {balance['share_min_over_mean']:.2f} | "
            f"{r['rebuild_s'] * 1000:.0f} ms | {r['memory_bytes'] / 2**20:.1f} MiB | "
            f"{r['lookup_ns']:,.0f} ns |")
    only = all(r["moved_only_to_or_from_the_changed_member"] for r in sim["rows"])
    lines += ["", "Keys moved only to the member that joined or from the one that left, in "
              f"every trial: {'yes' if only else '**no**'}."]
    return lines


def render(nodes: int, rate: float, clients: int) -> str:
    cap, zk, sim = load("capacity.json"), load("zk_reads.json"), load("ring_sim.json")
    t = cap["per_task"]
    node_us, client_us, redis_us = t["node_cpu_us"], t["client_cpu_us"], t["redis_cpu_us"]
    kept = t["redis_bytes_kept"]
    scripts = t["redis_commands"].get("evalsha", 0.0) + t["redis_commands"].get("eval", 0.0)
    inside = t["redis_commands_total"] - scripts
    shard_rate = 1e6 / redis_us
    node_rate = 1e6 / node_us
    after, before = zk["after"], zk.get("before")
    writes = after["writes"]
    rows = {r["members"]: r for r in after["reads"]}
    old_rows = {r["members"]: r for r in before["reads"]} if before else {}
    rings = {(r["members"], r["vnodes"]): r for r in sim["rows"]}
    watchers = nodes + clients + COORDINATORS + DASHBOARDS

    lines = [
        "### Measured (per tiny task, one node; `bench/results/capacity.json`)",
        "",
        "| what | per task |",
        "|---|---|",
        f"| Redis round trips (script calls; batched) | {scripts:.4f} (one per "
        f"{1 / scripts:,.0f} tasks) |" if scripts else "| Redis round trips | 0 |",
        f"| Redis commands run (inside the scripts, and result reads) | {inside:.2f} |",
        f"| Redis main-thread CPU | {redis_us:.1f} µs |",
        f"| Redis memory kept until the TTLs end (24 h by default) | {kept:,.0f} B in "
        f"{t['redis_keys_kept']:.2f} keys |",
        f"| Redis network in / out | {t['redis_net_in_bytes']:,.0f} B / "
        f"{t['redis_net_out_bytes']:,.0f} B |",
        f"| node CPU (the whole process) | {node_us:.0f} µs |",
        f"| client CPU | {client_us:.0f} µs |",
        f"| end to end on this 2-core machine (client, node, Redis, ZooKeeper together) | "
        f"{cap['throughput_tasks_per_s']:,.0f} tasks/s |",
        "",
        "### Measured (per membership change; `bench/results/zk_reads.json`)",
        "",
        "| what | value |",
        "|---|---|",
        f"| ZooKeeper writes: a node joins / drains / crashes | {writes['join']} / "
        f"{writes['drain']} / {writes['crash']} |",
    ]
    for members, row in sorted(rows.items()):
        old = old_rows.get(members)
        was = (f" (before: {old['reads_per_join']:.0f} / {old['reads_per_leave']:.0f} / "
               f"{old['idle_reads_per_s']:.2f})" if old else "")
        lines.append(f"| ZooKeeper reads per watching process at {members} members: join / "
                     f"leave / idle per s | {row['reads_per_join']:.0f} / "
                     f"{row['reads_per_leave']:.0f} / {row['idle_reads_per_s']:.2f}{was} |")
    lines.append(f"| ZooKeeper member reads/s one Python client gets (a floor of the "
                 f"server's) | {after['server_reads_per_s_one_client']:,.0f} |")

    lines += ["", *ring_table(sim)]

    node_cores = rate / nodes * node_us / 1e6
    redis_cores = rate * redis_us / 1e6
    shards = math.ceil(redis_cores / HEADROOM)
    day = rate * kept * DEFAULT_TTL_S
    hour = rate * kept * 3600
    ring100 = rings.get((100, 128))
    rebuild = f"{ring100['rebuild_s'] * watchers:.1f} CPU-seconds" if ring100 else "n/a"
    join_reads = watchers * rows[max(rows)]["reads_per_join"]
    old_join = (f" (before: {watchers * (nodes + 2):,} — N+2 each)" if before else "")
    lines += [
        "",
        f"### Projected: {nodes} nodes, {rate:,.0f} tiny tasks/s "
        f"({watchers} processes watch the ring: {nodes} nodes, {clients} client processes, "
        f"{COORDINATORS} coordinators, {DASHBOARDS} dashboard)",
        "",
        "Arithmetic on the figures above, not measured at this scale.",
        "",
        "| resource | needs | with |",
        "|---|---|---|",
        f"| node CPU | {node_cores:.2f} core per node ({rate / nodes:,.0f} tasks/s each) | "
        f"one node core carries {node_rate:,.0f} tasks/s at 100 %, "
        f"{node_rate * HEADROOM:,.0f} at 70 % |",
        f"| client CPU | {rate * client_us / 1e6:,.0f} cores over the client processes | |",
        f"| Redis CPU | {redis_cores:,.1f} cores | one shard carries {shard_rate:,.0f} tasks/s "
        f"at 100 %: **{shards} shards** at 70 % |",
        f"| Redis memory (finished tasks, 24 h TTLs) | {size(day)} | {size(hour)} per hour "
        f"of retention |",
        f"| Redis network in | {size(rate * t['redis_net_in_bytes'])}/s | over the shards |",
        f"| ZooKeeper, per node join | {writes['join']} writes, {join_reads:,.0f} reads"
        f"{old_join} | |",
        f"| ZooKeeper, rolling restart of {nodes} nodes | "
        f"{nodes * (writes['join'] + writes['drain']):,} writes, "
        f"{nodes * watchers * (rows[max(rows)]['reads_per_join'] + rows[max(rows)]['reads_per_leave']):,.0f}"
        f" reads | ring rebuilds: {rebuild} cluster-wide per change |",
        f"| ZooKeeper, idle | {watchers / IDLE_REREAD_S:,.0f} listings/s"
        + (f" (before: {watchers * (nodes + 1) / IDLE_REREAD_S:,.0f} reads/s)" if before else "")
        + " | |",
        "",
        f"The shipped single Redis ({SHIPPED_REDIS_BYTES // 2**20} MiB, one shard) holds "
        f"24 h of finished tasks at {SHIPPED_REDIS_BYTES / (kept * DEFAULT_TTL_S):,.1f} "
        f"tasks/s; at {rate:,.0f} tasks/s it is full in "
        f"{SHIPPED_REDIS_BYTES / (rate * kept):,.2f} s. Its CPU carries "
        f"{shard_rate * HEADROOM:,.0f} tasks/s at 70 %.",
    ]
    return "\n".join(lines)


def write(text: str) -> None:
    page = PAGE.read_text()
    head, rest = page.split(START, 1)
    _, tail = rest.split(END, 1)
    PAGE.write_text(f"{head}{START}\n{text}\n{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.capacity_model",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--rate", type=float, default=1_000_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--write", action="store_true", help=f"update {PAGE.name}")
    args = parser.parse_args(argv)
    text = render(args.nodes, args.rate, args.clients)
    print(text)
    if args.write:
        write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
