"""A schedule ticking every second across a leader kill, counted tick by tick.

``python -m bench.periodic_failover [--before S] [--after S] [--signal KILL|TERM]``

Starts a local cluster (2 nodes, 2 coordinators with the default ZooKeeper session
timeout of 10 s), schedules ``bench.tick`` with ``every=1``, lets it tick BEFORE
seconds, kills the leading coordinator (SIGKILL: its lock goes when its session
expires; SIGTERM: it steps down at once), lets the other lead for AFTER seconds,
pauses the schedule and waits for every claimed tick to run. Then it counts, from the
runs' own log: ticks that ran twice (must be 0), seconds in the span with no run,
and whether each such gap is one the schedule counted as skipped (the catch-up
policy: ticks missed while no coordinator led are coalesced into one run of the
latest). Also: how late each tick started (start - its due second), and the outage.
Results in ``bench/results/periodic_failover.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.delay import percentile
from bench.saving import RESULTS, save, saved
from ringpool import Task
from ringpool.store.store import StateStore
from ringpool.testing.local import LocalCluster


def leader(local: LocalCluster) -> int | None:
    """The index of the coordinator holding the lock: the first contender's identifier."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    leading = []
    for index, process in enumerate(local.coordinators):
        if not process.alive():
            continue
        url = f"http://127.0.0.1:{local.metrics_ports[f'coordinator-{index}']}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        if any(s.name == "ringpool_coordinator_leader" and s.value == 1
               for f in text_string_to_metric_families(text) for s in f.samples):
            leading.append(index)
    return leading[0] if len(leading) == 1 else None


def wait_for(check, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value is not None and value is not False:
            return value
        time.sleep(0.05)
    raise TimeoutError(what)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.periodic_failover")
    parser.add_argument("--before", type=float, default=15.0)
    parser.add_argument("--after", type=float, default=30.0)
    parser.add_argument("--signal", choices=["KILL", "TERM"], default="KILL")
    parser.add_argument("--out", type=Path, default=RESULTS / "periodic_failover.json")
    args = parser.parse_args(argv)
    log = Path(tempfile.mkdtemp(prefix="ringpool-ticks-")) / "ticks"
    with LocalCluster(nodes=2, coordinators=2, tasks=["bench.schedule_tasks"]) as local, \
            local.connect() as client:
        first = wait_for(lambda: leader(local), 30, "a leader")
        client.schedule("every-second", "tick", Task("bench.tick", args=(str(log),)), every=1)
        time.sleep(args.before)
        killed_at = time.time()
        local.coordinators[first].stop(sig=getattr(signal, f"SIG{args.signal}"))
        second = wait_for(lambda: leader(local), 60, "the other coordinator to lead")
        led_at = time.time()
        time.sleep(args.after)

        async def pause() -> tuple[int, int]:
            store = StateStore.from_url(local.redis, local.cluster)
            try:
                await store.schedules.pause("every-second")
                stored = await store.schedules.get("every-second")
                assert stored is not None
                return stored.fired, stored.skipped
            finally:
                await store.close()

        fired, skipped = asyncio.run(pause())
        wait_for(lambda: len(log.read_text().splitlines()) >= fired, 30, "every tick to run")
    runs = [line.split() for line in log.read_text().splitlines()]
    etas = [float(eta) for eta, _, _ in runs]
    per_tick = Counter(etas)
    twice = sorted(eta for eta, n in per_tick.items() if n > 1)
    span = range(int(min(etas)), int(max(etas)) + 1)
    missing = [second for second in span if float(second) not in per_tick]
    # The catch-up run (the first after a gap) is late by design: its tick was missed.
    catch_ups = {float(s + 1) for s in missing if float(s + 1) in per_tick}
    lags = [1000 * (float(started) - float(eta)) for eta, _, started in runs
            if float(eta) not in catch_ups]
    late = [round(1000 * (float(started) - float(eta))) for eta, _, started in runs
            if float(eta) in catch_ups]
    result = {
        "signal": args.signal, "first_leader": first, "second_leader": second,
        "no_leader_s": round(led_at - killed_at, 2), "ticks_run": len(runs),
        "ticks_fired": fired, "ticks_twice": len(twice), "seconds_in_span": len(span),
        "seconds_without_a_run": len(missing), "skipped_by_policy": skipped,
        "missing_beyond_policy": len(missing) - skipped,
        "start_lag_ms": {"p50": round(statistics.median(lags), 1),
                         "p99": round(percentile(lags, 0.99), 1), "max": round(max(lags), 1)},
        "catch_up_run_late_ms": late,
    }
    print(json.dumps(result, indent=2))
    by_signal = saved(args.out)
    by_signal[args.signal] = result
    save(args.out, by_signal)
    return 0 if not twice and len(missing) == skipped else 1


if __name__ == "__main__":
    raise SystemExit(main())
