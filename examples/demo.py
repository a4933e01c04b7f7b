"""``make demo``: a local 3-node cluster runs 20,000 keyed tasks and reports how it went.

Starts real ZooKeeper and Redis on loopback, a coordinator and three nodes, then
dispatches ``demo.add`` over 1,000 keys through the SDK, one ``dispatch`` call per
task in a loop, waits for every result, and prints per-node counts (as each node
reports them), throughput and dispatch-to-result latency. Everything is torn down at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from ringpool import AsyncCluster, AsyncTaskHandle
from ringpool.client.links import call_metadata, open_channel
from ringpool.demo import add
from ringpool.testing.local import LocalCluster
from ringpool.v1 import node_pb2 as pb
from ringpool.v1 import node_pb2_grpc as pb_grpc

console = Console()


async def node_counts(cluster: AsyncCluster) -> dict[str, int]:
    """Tasks each node says it has completed."""
    counts = {}
    for node_id, member in cluster.ring.members.items():
        channel = open_channel(member.addr, cluster.settings)
        try:
            status = await pb_grpc.NodeStub(channel).Status(
                pb.StatusRequest(), metadata=call_metadata(cluster.settings), timeout=5
            )
            counts[node_id] = status.counters["succeeded"]
        finally:
            await channel.close()
    return counts


async def run(local: LocalCluster, tasks: int, keys: int) -> bool:
    async with AsyncCluster.connect(zk=local.zk, redis=local.redis, cluster=local.cluster) as cluster:
        before = await node_counts(cluster)
        latencies: list[float] = []
        wrong = 0
        with Progress(
            "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=console,
        ) as progress:
            bar = progress.add_task("tasks done", total=tasks)

            async def settle(handle: AsyncTaskHandle, expected: int, sent_at: float) -> None:
                nonlocal wrong
                if await handle.result(timeout=60) != expected:
                    wrong += 1
                latencies.append(time.perf_counter() - sent_at)
                progress.advance(bar)

            started = time.perf_counter()
            waiting = []
            # The way applications call it: one dispatch per task, in a loop. The client
            # pipelines them to each key's owner; every result is awaited.
            for i in range(tasks):
                sent_at = time.perf_counter()
                handle = await cluster.dispatch(f"user:{i % keys}", add.s(i, 1))
                waiting.append(asyncio.create_task(settle(handle, i + 1, sent_at)))
            await asyncio.gather(*waiting)
            elapsed = time.perf_counter() - started
        after = await node_counts(cluster)

    table = Table(title=f"{tasks:,} tasks over {keys:,} keys on {len(after)} nodes")
    table.add_column("node")
    table.add_column("tasks run", justify="right")
    for node_id in sorted(after):
        table.add_row(node_id, f"{after[node_id] - before.get(node_id, 0):,}")
    console.print(table)
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    console.print(f"throughput: [bold]{tasks / elapsed:,.0f} tasks/s[/] end to end "
                  f"({elapsed:.2f} s, durable accept on, every result awaited)")
    console.print(f"dispatch -> result latency: p50 {p50:.1f} ms, p99 {p99:.1f} ms "
                  "(a loop of single dispatch calls, all sent before the results are read)")
    complete = len(latencies) == tasks and wrong == 0
    console.print(
        f"results: {len(latencies):,}/{tasks:,} back, {wrong} wrong -> "
        + ("[bold green]all correct[/]" if complete else "[bold red]MISSING OR WRONG[/]")
    )
    return complete


def main() -> None:
    # ZooKeeper clients log every closed connection; the demo only wants real trouble.
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("kazoo").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--keys", type=int, default=1_000)
    parser.add_argument("--nodes", type=int, default=3)
    options = parser.parse_args()
    with console.status("starting ZooKeeper, Redis, a coordinator and "
                        f"{options.nodes} nodes on loopback..."):
        local = LocalCluster(nodes=options.nodes, coordinators=1, tasks=["ringpool.demo"]).start()
    try:
        console.print(f"cluster [bold]{local.cluster}[/] up: zk={local.zk} redis={local.redis} "
                      f"(logs in {local.workdir})")
        ok = asyncio.run(run(local, options.tasks, options.keys))
    finally:
        with console.status("tearing down..."):
            local.stop()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
