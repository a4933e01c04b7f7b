"""``python -m bench.pool``: the node pool against ``concurrent.futures``, in one run.

1. No-op tasks from an asyncio loop, the node's way of calling the pool:
   ``Pools.submit`` vs ``loop.run_in_executor(ThreadPoolExecutor)`` with the same
   worker count. Throughput with everything submitted at once, and submit→done
   latency (p50/p99) with a fixed number of tasks in flight.
2. The io tier alone from a plain thread: ``ThreadTier.submit`` vs
   ``ThreadPoolExecutor.submit`` with a done callback.
3. A bursty io workload (10 ms sleeps; bursts, then idle gaps): fixed pools of
   several sizes vs the adaptive pool: p95 latency and thread-seconds.

Prints a table with ratios and writes ``bench/results/pool.json``. ``--quick``
runs smaller counts. Each figure is the median of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.saving import RESULTS, save
from ringpool.pool import AutoscalerSettings, FixedPolicy, Job, Pools, PoolSettings
from ringpool.pool.job import Ticket
from ringpool.pool.threads import ThreadTier
from ringpool.task import RetryPolicy, TaskContext, TaskDefinition

OUT = RESULTS / "pool.json"


def noop() -> None:
    return None


def make_job(fn: Callable[[], Any]) -> Job:
    task_id = uuid.uuid4().hex
    definition = TaskDefinition("bench.noop", fn, "io", 60.0, RetryPolicy())
    ctx = TaskContext(task_id, "k", definition.name, 1, time.time() + 60)
    return Job(task_id, "k", definition, [], {}, 60.0, ctx)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- 1. through the event loop ----------------------------------------------------------

Submit = Callable[[Job], "asyncio.Future[Any]"]


async def loop_throughput(submit: Submit, n: int) -> float:
    jobs = [make_job(noop) for _ in range(n)]
    began = time.perf_counter()
    await asyncio.gather(*(submit(job) for job in jobs))
    return n / (time.perf_counter() - began)


async def loop_latency(submit: Submit, n: int, in_flight: int) -> list[float]:
    """Closed loop: ``in_flight`` tasks outstanding; each completion submits the next."""
    latencies: list[float] = []
    finished = asyncio.get_running_loop().create_future()
    launched = 0

    def launch() -> None:
        nonlocal launched
        launched += 1
        began = time.perf_counter()
        submit(make_job(noop)).add_done_callback(lambda _: landed(began))

    def landed(began: float) -> None:
        latencies.append(time.perf_counter() - began)
        if launched < n:
            launch()
        elif len(latencies) == n:
            finished.set_result(None)

    for _ in range(in_flight):
        launch()
    await finished
    return latencies


async def through_loop(workers: int, n: int) -> dict[str, float]:
    pools = Pools(PoolSettings(min_workers=workers, max_workers=workers, max_queue=n),
                  policy=FixedPolicy(workers))
    executor = ThreadPoolExecutor(workers)
    loop = asyncio.get_running_loop()

    def tpe_submit(job: Job) -> asyncio.Future[Any]:
        return loop.run_in_executor(executor, job.definition.fn)

    result: dict[str, float] = {}
    for name, submit in (("ringpool", pools.submit), ("tpe", tpe_submit)):
        await loop_throughput(submit, n // 10)  # warm: threads started
        result[f"{name}_tasks_per_s"] = await loop_throughput(submit, n)
        latencies = await loop_latency(submit, n // 4, in_flight=workers)
        result[f"{name}_p50_ms"] = percentile(latencies, 0.50) * 1000
        result[f"{name}_p99_ms"] = percentile(latencies, 0.99) * 1000
    await pools.release(10.0)
    executor.shutdown()
    return result


# -- 2. the io tier alone ---------------------------------------------------------------

def tier_alone(workers: int, n: int) -> dict[str, float]:
    result: dict[str, float] = {}
    jobs = [make_job(noop) for _ in range(n)]

    tier = ThreadTier(workers, workers, n, 60.0)
    done = threading.Event()
    count = [0]

    def landed(ticket: Ticket, outcome: Any) -> None:
        count[0] += 1  # one increment per task: a lost update would hang, not pass
        if count[0] == n:
            done.set()

    began = time.perf_counter()
    for job in jobs:
        tier.submit(Ticket(job, landed))
    done.wait(120)
    result["ringpool_tier_tasks_per_s"] = n / (time.perf_counter() - began)
    tier.release(10.0)

    executor = ThreadPoolExecutor(workers)
    finished = threading.Event()
    tally = [0]
    lock = threading.Lock()

    def tpe_landed(_: Any) -> None:
        with lock:
            tally[0] += 1
            if tally[0] == n:
                finished.set()

    began = time.perf_counter()
    for job in jobs:
        executor.submit(job.definition.fn).add_done_callback(tpe_landed)
    finished.wait(120)
    result["tpe_tier_tasks_per_s"] = n / (time.perf_counter() - began)
    executor.shutdown()
    return result


# -- 3. bursty io -----------------------------------------------------------------------

def sleep_10ms() -> None:
    time.sleep(0.010)


async def bursty(pools: Pools, bursts: int, burst_size: int, gap_s: float) -> dict[str, float]:
    """Bursts of ``burst_size`` 10 ms tasks spread over ~10 ms, each followed by an idle gap."""
    latencies: list[float] = []
    loop = asyncio.get_running_loop()

    async def burst() -> None:
        futures = []
        for chunk in range(10):
            for _ in range(burst_size // 10):
                began = time.perf_counter()
                future = pools.submit(make_job(sleep_10ms))
                future.add_done_callback(
                    lambda _, b=began: latencies.append(time.perf_counter() - b))
                futures.append(future)
            if chunk < 9:
                await asyncio.sleep(0.001)
        await asyncio.gather(*futures)

    await burst()  # warm: a fixed pool reaches its size, as it would in service
    latencies.clear()
    start_s = pools.stats()["io"]["thread_seconds"]
    began = loop.time()
    for _ in range(bursts):
        await burst()
        await asyncio.sleep(gap_s)
    elapsed = loop.time() - began
    thread_s = pools.stats()["io"]["thread_seconds"] - start_s
    await pools.release(10.0)
    return {
        "p95_ms": percentile(latencies, 0.95) * 1000,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "thread_seconds": thread_s,
        "mean_threads": thread_s / elapsed,
    }


async def bursty_all(
    sizes: list[int], peak: int, bursts: int, burst_size: int, gap_s: float
) -> dict[str, dict[str, float]]:
    runs: dict[str, dict[str, float]] = {}
    for size in sizes:
        pools = Pools(PoolSettings(min_workers=size, max_workers=size, max_queue=10_000),
                      policy=FixedPolicy(size))
        runs[f"fixed-{size}"] = await bursty(pools, bursts, burst_size, gap_s)
    adaptive = Pools(PoolSettings(
        min_workers=2, max_workers=peak, max_queue=10_000, idle_timeout_s=gap_s / 2,
        autoscaler=AutoscalerSettings(tick_s=0.05),
    ))
    runs["adaptive"] = await bursty(adaptive, bursts, burst_size, gap_s)
    return runs


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    n = 20_000 if args.quick else 40_000
    bursts = 4 if args.quick else 6
    peak, burst_size, gap_s = 64, 200, 0.6
    sizes = [8, 16, 32, peak]

    loop_runs = [asyncio.run(through_loop(args.workers, n)) for _ in range(repeats)]
    tier_runs = [tier_alone(args.workers, n) for _ in range(repeats)]
    burst_runs = [asyncio.run(bursty_all(sizes, peak, bursts, burst_size, gap_s))
                  for _ in range(repeats)]
    via_loop, tier = median_of(loop_runs), median_of(tier_runs)
    burst = {name: median_of([run[name] for run in burst_runs]) for name in burst_runs[0]}

    best_fixed = min((name for name in burst if name.startswith("fixed")),
                     key=lambda name: burst[name]["p95_ms"])
    peak_fixed = f"fixed-{peak}"
    summary = {
        "loop_throughput_ratio": via_loop["ringpool_tasks_per_s"] / via_loop["tpe_tasks_per_s"],
        "loop_p99_ratio": via_loop["ringpool_p99_ms"] / via_loop["tpe_p99_ms"],
        "tier_throughput_ratio": tier["ringpool_tier_tasks_per_s"] / tier["tpe_tier_tasks_per_s"],
        "best_fixed": best_fixed,
        "adaptive_p95_vs_best_fixed": burst["adaptive"]["p95_ms"] / burst[best_fixed]["p95_ms"],
        "adaptive_thread_s_saved_vs_peak":
            1 - burst["adaptive"]["thread_seconds"] / burst[peak_fixed]["thread_seconds"],
    }

    print(f"workers={args.workers} tasks={n} repeats={repeats} (median)  "
          f"python {platform.python_version()} cpus={os.cpu_count()}")
    print(f"{'no-op, via event loop':34} {'ringpool':>12} {'TPE':>12} {'ratio':>7}")
    print(f"{'  throughput (tasks/s)':34} {via_loop['ringpool_tasks_per_s']:12,.0f} "
          f"{via_loop['tpe_tasks_per_s']:12,.0f} {summary['loop_throughput_ratio']:7.2f}x")
    for q in ("p50", "p99"):
        ours, theirs = via_loop[f"ringpool_{q}_ms"], via_loop[f"tpe_{q}_ms"]
        print(f"{f'  {q} submit->done (ms)':34} {ours:12.3f} {theirs:12.3f} {ours / theirs:7.2f}x")
    print(f"{'no-op, tier alone (tasks/s)':34} {tier['ringpool_tier_tasks_per_s']:12,.0f} "
          f"{tier['tpe_tier_tasks_per_s']:12,.0f} {summary['tier_throughput_ratio']:7.2f}x")
    print(f"\nbursty io: {bursts} bursts x {burst_size} tasks of 10 ms, {gap_s}s idle gaps")
    print(f"{'pool':12} {'p50 ms':>8} {'p95 ms':>8} {'thread-s':>9} {'mean thr':>9} "
          f"{'p95/best':>9} {'thr-s/peak':>10}")
    for name, run in burst.items():
        print(f"{name:12} {run['p50_ms']:8.1f} {run['p95_ms']:8.1f} {run['thread_seconds']:9.2f} "
              f"{run['mean_threads']:9.1f} {run['p95_ms'] / burst[best_fixed]['p95_ms']:9.2f} "
              f"{run['thread_seconds'] / burst[peak_fixed]['thread_seconds']:10.2f}")
    print(f"\nadaptive p95 = {summary['adaptive_p95_vs_best_fixed']:.2f}x best fixed "
          f"({best_fixed}); thread-seconds {summary['adaptive_thread_s_saved_vs_peak']:.0%} "
          f"fewer than {peak_fixed}")

    save(OUT, {
        "config": {"workers": args.workers, "tasks": n, "repeats": repeats, "bursts": bursts,
                   "burst_size": burst_size, "gap_s": gap_s, "peak": peak,
                   "python": platform.python_version(), "cpus": os.cpu_count()},
        "via_loop": via_loop, "tier": tier, "bursty": burst, "summary": summary,
        "raw": {"via_loop": loop_runs, "tier": tier_runs, "bursty": burst_runs},
    })


if __name__ == "__main__":
    main()
