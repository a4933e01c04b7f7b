"""The README's dashboard screenshots, taken by headless Chromium from a live local cluster.

``python -m bench.dashboard_screenshots [--out bench/results/dashboard]``

Starts a local cluster (3 nodes, a coordinator), sends it steady traffic and a few
tasks that fail into the DLQ or wait for a retry, serves ``ringpool-dashboard`` and
saves a PNG of each page: overview (with a key looked up), tasks, a task, the dead
letters, a purge confirmation, the schedules and the config.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import uuid
from pathlib import Path

from ringpool import Cluster, Task
from ringpool.testing.local import LocalCluster, ManagedProcess, free_port

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TOKEN = "screenshot-operator-token"


def traffic(client: Cluster, stop: threading.Event) -> None:
    """A steady stream of short tasks, so the sparklines have something to show."""
    i = 0
    while not stop.is_set():
        handles = client.dispatch_many([(f"user:{i + j}", Task("demo.sleep", args=(0.005,)))
                                        for j in range(40)])
        for handle in handles:
            handle.result(timeout=30)
        i += 40
        stop.wait(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "dashboard")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    from playwright.sync_api import sync_playwright

    cluster = LocalCluster(nodes=3, coordinators=1, cluster=f"shop{uuid.uuid4().hex[:4]}")
    cluster.start()
    stop = threading.Event()
    dashboard: ManagedProcess | None = None
    try:
        client = Cluster.connect(zk=cluster.zk, redis=cluster.redis, cluster=cluster.cluster)
        for i in range(12):
            client.dispatch(f"order:{i}", Task("demo.fail", args=(f"card declined for order {i}",)))
        for i in range(4):
            client.dispatch(f"invoice:{i}", Task("demo.permanent", args=("no such customer",)))
        done = client.dispatch("user:42", Task("demo.add", args=(40, 2)))
        done.result(timeout=10)
        slow = client.dispatch("report:monthly", Task("demo.sleep", args=(120,)))
        client.schedule("nightly-report", "reports", Task("demo.add", args=(1, 2)),
                        cron="30 2 * * *", tz="Europe/Berlin")
        client.schedule("heartbeat", "health", Task("demo.add", args=(0, 0)), every=10)
        client.schedule("weekly-digest", "digest", Task("demo.add", args=(7, 7)),
                        cron="0 8 * * 1")
        for i in range(3):
            client.dispatch(f"reminder:{i}", Task("demo.add", args=(i, i)), countdown=600 * (i + 1))
        sender = threading.Thread(target=traffic, args=(client, stop), daemon=True)
        sender.start()

        port = free_port()
        env = {**os.environ, **cluster.env(), "RINGPOOL_OPERATOR_TOKEN": TOKEN,
               "RINGPOOL_POLL_INTERVAL": "1",
               "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("sdk", "node", "coordinator"))}
        dashboard = ManagedProcess("dashboard", [sys.executable, "-m", "ringpool.dashboard",
                                                 "--listen", f"127.0.0.1:{port}"],
                                   cluster.workdir / "dashboard.log", env).start()
        url = f"http://127.0.0.1:{port}"
        time.sleep(3)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(f"{url}/login")
            page.screenshot(path=args.out / "login.png")
            page.fill("input[name=token]", TOKEN)
            page.click("form[action='/login'] button[type=submit]")
            page.wait_for_url(f"{url}/")
            time.sleep(20)  # sparklines fill in
            page.fill("#route input[name=key]", "user:42")
            page.click("#route button")
            page.wait_for_selector("svg.ring path.arc.owner")
            page.screenshot(path=args.out / "overview.png", full_page=True)
            page.goto(f"{url}/tasks?state=running")
            page.screenshot(path=args.out / "tasks.png", full_page=True)
            page.goto(f"{url}/tasks/{slow.task_id}")
            page.goto(f"{url}/dlq")
            page.screenshot(path=args.out / "dlq.png", full_page=True)
            first = page.locator("table.grid tbody a").first.inner_text()
            page.goto(f"{url}/tasks/{first}")
            page.screenshot(path=args.out / "task.png", full_page=True)
            page.goto(f"{url}/dlq?name=demo.fail")
            page.check("[data-select-all]")
            page.click("button:has-text('Purge selected')")
            page.screenshot(path=args.out / "purge-confirm.png")
            page.goto(f"{url}/schedules")
            page.click("tr[data-schedule='weekly-digest'] button:has-text('Pause')")
            page.screenshot(path=args.out / "schedules.png", full_page=True)
            page.goto(f"{url}/config")
            page.screenshot(path=args.out / "config.png", full_page=True)
            browser.close()
        client.close()
    finally:
        stop.set()
        if dashboard is not None:
            dashboard.stop()
        cluster.stop()
    print(f"screenshots in {args.out}")


if __name__ == "__main__":
    main()
