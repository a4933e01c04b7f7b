"""``python -m bench`` (= ``make bench``): every benchmark, one Redis, nothing left running.

1. ``bench.ring`` — ring lookups/s vs uhashring (in this process).
2. ``bench.pool`` — the node pool vs ThreadPoolExecutor, when that module exists
   (run as ``python -m bench.pool``, its output passed through).
3. ``bench.floor`` — the hops of a W2 round trip with none of ringpool's logic
   (what any implementation on them pays), just before the peers.
4. The peers — ringpool, Celery, Dramatiq, arq, RQ: one ``redis-server`` (and one
   ZooKeeper for ringpool) started here; each system gets its own flushed Redis
   DB, starts its 2 worker processes, warms up, runs W1-W4 ``--repeats`` times,
   and is torn down (process groups) before the next starts.
5. ``bench.report`` — the table of medians and ratios to ringpool, JSON and PNG
   in ``bench/results/``.

Options: ``--quick`` (small counts, 1 repeat), ``--only ringpool,celery``,
``--workloads w1,w2``, ``--repeats N``, ``--skip-ring``, ``--skip-pool``, ``--skip-floor``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

from bench.peers import SYSTEMS, WORKLOADS, Sizes, load_peer
from bench.saving import RESULTS

REDIS_DBS = {name: index for index, name in enumerate(SYSTEMS)}


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through every ``finally``: workers get stopped


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "cpu": model or platform.processor(), "cores": os.cpu_count()}


def run_ring(quick: bool) -> dict[str, Any]:
    from bench import ring

    argv = ["--quick"] if quick else []
    ring.main(argv)
    return dict(json.loads((RESULTS / "ring.json").read_text()))


def run_pool(quick: bool, timeout: float = 90.0) -> dict[str, Any]:
    """``python -m bench.pool`` when it exists; its output is shown, not parsed."""
    if not (Path(__file__).parent / "pool.py").exists():
        return {"skipped": "bench/pool.py does not exist yet"}
    # One repeat keeps it inside its slot (about 40 s here); `python -m bench.pool` alone takes 3.
    argv = [sys.executable, "-m", "bench.pool", *(["--quick"] if quick else ["--repeats", "1"])]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(argv, cwd=Path(__file__).resolve().parents[1],
                            start_new_session=True, env=env)
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
        return {"error": f"bench.pool ran past {timeout:.0f}s and was killed"}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return {"exit_code": code}


def run_peers(systems: list[str], sizes: Sizes, repeats: int, workloads: list[str],
              workdir: Path, budget_s: float) -> dict[str, Any]:
    """Each system gets ``budget_s / len(systems)``: it stops repeating (after at least
    one repeat) when another repeat as long as its last would overrun that share."""
    from ringpool.testing.local import RedisServer, ZooKeeperServer

    redis_server = RedisServer(workdir)
    zookeeper: ZooKeeperServer | None = None
    out: dict[str, Any] = {}
    try:
        redis_server.start()
        if "ringpool" in systems:
            zookeeper = ZooKeeperServer(workdir).start()
        import redis as redis_client

        for name in systems:
            url = f"redis://127.0.0.1:{redis_server.port}/{REDIS_DBS[name]}"
            redis_client.Redis.from_url(url).flushdb()
            print(f"\n== {name} ({url})", flush=True)
            began = time.monotonic()
            try:
                peer = load_peer(name, url, workdir, zookeeper.address if zookeeper else None)
            except Exception as exc:
                out[name] = {"error": f"unavailable: {type(exc).__name__}: {exc}"[:500]}
                print(f"   {out[name]['error']}", flush=True)
                continue
            record: dict[str, Any] = {"settings": peer.settings, "repeats": []}
            out[name] = record
            try:
                peer.start()
                peer.warm_up()
                share = budget_s / len(systems)
                for index in range(repeats):
                    repeat_began = time.monotonic()
                    result = peer.run_once(sizes, workloads)
                    record["repeats"].append(result)
                    print(f"   repeat {index + 1}: {_brief(result)}", flush=True)
                    now = time.monotonic()
                    if index + 1 < repeats and now + (now - repeat_began) - began > share:
                        record["repeats_cut"] = (
                            f"{index + 1} of {repeats} repeats: the next would overrun "
                            f"this system's {share:.0f}s share of the time budget")
                        print(f"   {record['repeats_cut']}", flush=True)
                        break
            except Exception as exc:
                record["error"] = f"{type(exc).__name__}: {exc}"[:2000]
                print(f"   failed: {record['error']}", flush=True)
                traceback.print_exc()
            finally:
                peer.stop()
                record["wall_s"] = time.monotonic() - began
    finally:
        if zookeeper:
            zookeeper.stop()
        redis_server.stop()
    return out


def _brief(result: dict[str, Any]) -> str:
    parts = []
    for workload, data in result.items():
        mark = " (partial)" if data.get("partial") else ""
        if "error" in data:
            parts.append(f"{workload}: {data['error'][:80]}")
        elif workload == "w2":
            parts.append(f"w2 p50 {data['p50_ms']:.2f} ms p99 {data['p99_ms']:.2f} ms{mark}")
        elif workload == "w4":
            parts.append(f"w4 wrong {data['wrong_counts']}/{data['completed']}{mark}")
        else:
            parts.append(f"{workload} {data['tasks_per_s']:,.0f}/s{mark}")
    return " | ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="small counts, 1 repeat")
    parser.add_argument("--only", default=",".join(SYSTEMS), help="systems, comma-separated")
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help=f"comma-separated, from {', '.join(WORKLOADS)}")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--skip-ring", action="store_true")
    parser.add_argument("--skip-pool", action="store_true")
    parser.add_argument("--skip-floor", action="store_true")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds for all peers together (default 600, quick 300)")
    parser.add_argument("--keep-workdir", action="store_true", help="keep worker logs")
    args = parser.parse_args(argv)
    systems = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown:
        parser.error(f"unknown system(s) {unknown}; choose from {', '.join(SYSTEMS)}")
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    if set(workloads) - set(WORKLOADS):
        parser.error(f"unknown workload(s) {sorted(set(workloads) - set(WORKLOADS))}")
    sizes = Sizes.quick() if args.quick else Sizes()
    repeats = args.repeats or (1 if args.quick else 3)

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    RESULTS.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="ringpool-bench-"))
    started = time.monotonic()
    run: dict[str, Any] = {
        "machine": machine(), "sizes": sizes.as_dict(), "repeats": repeats,
        "quick": args.quick, "workloads": workloads, "started_at": time.time(),
    }
    try:
        if not args.skip_ring:
            print("== bench.ring", flush=True)
            run["ring"] = run_ring(args.quick)
        if not args.skip_pool:
            print("\n== bench.pool", flush=True)
            run["pool"] = run_pool(args.quick)
        if not args.skip_floor and "w2" in workloads:
            from bench import floor

            print("\n== bench.floor", flush=True)
            try:
                run["floor"] = floor.run(sizes.w2_trips)
                print(floor.describe(run["floor"]), flush=True)
            except Exception as exc:
                run["floor"] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
                print(f"   failed: {run['floor']['error']}", flush=True)
        budget = args.budget or (300.0 if args.quick else 600.0)
        run["budget_s"] = budget
        run["systems"] = run_peers(systems, sizes, repeats, workloads, workdir, budget)
    finally:
        run["wall_s"] = time.monotonic() - started
        if args.keep_workdir:
            print(f"worker logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    from bench import report

    print()
    print(report.write(run, RESULTS))
    print(f"\ntotal {run['wall_s']:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
