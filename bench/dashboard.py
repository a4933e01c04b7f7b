"""Dashboard page loads with a big DLQ and many nodes: p50 and p95 per page, in Chromium.

``python -m bench.dashboard [--dlq 100000] [--nodes 50] [--loads 40] [--json PATH]``

What runs: ZooKeeper and Redis, a local cluster of 2 real nodes, and ``--nodes`` - 2
more members registered in ZooKeeper whose addresses refuse connections (the poller
asks every member each poll, concurrently and with a deadline; pages never wait on a
node). Seeded through the state store: ``--dlq`` dead letters (five task names, one
of them 1% of the entries; four error types; one key each), 2,000 tasks waiting in
the retry set and 5,000 in flight on one member. Then ``ringpool-dashboard`` (polling
every 2 s) and Debian's chromium through Playwright: each page is loaded ``--loads``
times after two warm-up loads, and a load is timed from navigation to the page's
``load`` event (HTML, CSS and JS fetched; the overview also opens its event stream).
Figures move from run to run on a loaded 2-core machine; compare pages in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from kazoo.client import KazooClient

from bench.saving import RESULTS, save
from ringpool import Task
from ringpool.core.envelope import build
from ringpool.core.membership import connect_zookeeper
from ringpool.core.naming import Names
from ringpool.store.store import StateStore, Transition
from ringpool.testing.local import LocalCluster, ManagedProcess, free_port
from ringpool.v1 import node_pb2 as pb

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TOKEN = "bench-operator-token"
NAMES = ("billing.charge", "email.send", "report.build", "sync.pull")
RARE = "report.rare"  # 1% of the dead letters: a filter that matches little
ERRORS = ("ConnectionError", "TimeoutError", "ValueError", "GateClosed")
BATCH = 1000


def envelopes(start: int, count: int) -> list[tuple[pb.TaskEnvelope, str]]:
    out = []
    for i in range(start, start + count):
        name = RARE if i % 100 == 0 else NAMES[i % len(NAMES)]
        out.append((build(f"user:{i}", Task(name, args=(i, "payload" * 8)), 1),
                    ERRORS[i % len(ERRORS)]))
    return out


async def seed(redis: str, cluster: str, dlq: int) -> dict[str, str]:
    """Dead letters, retries and in-flight tasks written as nodes write them."""
    store = StateStore.from_url(redis, cluster)
    node = "member-seed"
    try:
        for start in range(0, dlq, BATCH):
            batch = envelopes(start, min(BATCH, dlq - start))
            await store.accept(node, 1, [e for e, _ in batch])
            await store.transition(node, 1, [
                Transition.dead(e.task_id, time.time(), "retries exhausted", error,
                                f"{error} while running {e.name}", "Traceback ...\n" * 20)
                for e, error in batch])
        retrying = [e for e, _ in envelopes(dlq, 2000)]
        await store.accept(node, 1, retrying)
        await store.transition(node, 1, [
            Transition.retry(e.task_id, time.time(), time.time() + 3600, "TimeoutError",
                             "slow upstream", "Traceback ...") for e in retrying])
        inflight = [e for e, _ in envelopes(dlq + 2000, 5000)]
        for start in range(0, len(inflight), BATCH):
            await store.accept(node, 1, inflight[start:start + BATCH])
        first = await store.dlq_list(limit=50)
        return {"task_id": first.items[0].record.task_id, "cursor": first.next or ""}
    finally:
        await store.close()


def register_members(zk: KazooClient, cluster: str, count: int) -> None:
    """``count`` members at addresses nobody listens on (ephemeral: gone with ``zk``)."""
    names = Names(cluster)
    for i in range(count):
        dead_port = free_port()  # bound and closed again: connections are refused
        zk.create(names.member(f"member-{i:02}"), json.dumps(
            {"addr": f"127.0.0.1:{dead_port}", "weight": 1.0, "started_at": time.time()}
        ).encode(), ephemeral=True, makepath=True)


def pages(seeded: dict[str, str]) -> dict[str, str]:
    return {
        "overview": "/",
        "overview, key lookup": "/?key=user:42",
        "tasks in flight": "/tasks",
        "tasks retrying": "/tasks?state=retrying",
        "task": f"/tasks/{seeded['task_id']}",
        "DLQ newest": "/dlq",
        "DLQ next page": f"/dlq?cursor={seeded['cursor']}",
        "DLQ 200 a page": "/dlq?limit=200",
        f"DLQ task={RARE} (1%)": f"/dlq?name={RARE}",
        "DLQ error=Timeout* key=user:1*": "/dlq?error=Timeout*&key=user:1*",
        "DLQ last hour": "/dlq?since=1h",
        "config": "/config",
    }


def measure(url: str, paths: dict[str, str], loads: int) -> dict[str, dict[str, float]]:
    from playwright.sync_api import sync_playwright

    results: dict[str, dict[str, float]] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"{url}/login")
        page.fill("input[name=token]", TOKEN)
        page.click("form[action='/login'] button[type=submit]")
        page.wait_for_url(f"{url}/")
        for label, path in paths.items():
            times = []
            for attempt in range(loads + 2):
                started = time.perf_counter()
                reply = page.goto(f"{url}{path}", wait_until="load")
                took = time.perf_counter() - started
                assert reply is not None and reply.status == 200, (path, reply and reply.status)
                if attempt >= 2:
                    times.append(took * 1000)
            times.sort()
            results[label] = {
                "p50_ms": round(statistics.median(times), 1),
                "p95_ms": round(times[max(0, int(len(times) * 0.95) - 1)], 1),
                "max_ms": round(times[-1], 1),
            }
            print(f"{label:<34} p50 {results[label]['p50_ms']:7.1f} ms   "
                  f"p95 {results[label]['p95_ms']:7.1f} ms", flush=True)
        browser.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dlq", type=int, default=100_000)
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--loads", type=int, default=40)
    parser.add_argument("--json", type=Path, default=RESULTS / "dashboard.json")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="ringpool-bench-dashboard-"))
    cluster = LocalCluster(nodes=2, coordinators=1, workdir=workdir,
                           cluster=f"bench{uuid.uuid4().hex[:6]}")
    cluster.start()
    zk = connect_zookeeper(cluster.zk)
    dashboard: ManagedProcess | None = None
    try:
        started = time.perf_counter()
        seeded = asyncio.run(seed(cluster.redis, cluster.cluster, args.dlq))
        register_members(zk, cluster.cluster, args.nodes - 2)
        print(f"seeded {args.dlq} dead letters, 2000 retries, 5000 in flight and "
              f"{args.nodes} members in {time.perf_counter() - started:.1f}s", flush=True)
        port = free_port()
        env = {**os.environ, **cluster.env(), "RINGPOOL_OPERATOR_TOKEN": TOKEN,
               "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("sdk", "node", "coordinator"))}
        dashboard = ManagedProcess(
            "dashboard", [sys.executable, "-m", "ringpool.dashboard",
                          "--listen", f"127.0.0.1:{port}"],
            workdir / "dashboard.log", env).start()
        url = f"http://127.0.0.1:{port}"
        _wait_for(url, dashboard)
        time.sleep(5)  # a few polls: sparklines and node states filled in
        results = measure(url, pages(seeded), args.loads)
    finally:
        if dashboard is not None:
            dashboard.stop()
        zk.stop()
        zk.close()
        cluster.stop()
    report: dict[str, Any] = {
        "dlq_entries": args.dlq, "members": args.nodes, "loads_per_page": args.loads,
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                    "cores": os.cpu_count()},
        "pages": results,
    }
    save(args.json, report)


def _wait_for(url: str, process: ManagedProcess, timeout_s: float = 60.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        if not process.alive():
            raise SystemExit(f"the dashboard exited:\n{process.log_tail()}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"the dashboard did not serve:\n{process.log_tail()}") from None
            time.sleep(0.2)


if __name__ == "__main__":
    main()
