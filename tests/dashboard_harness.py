"""What the dashboard tests share: the dashboard as a process, and headless Chromium.

The browser is Debian's ``chromium`` (``/usr/bin/chromium``, installed by ``make
install``) driven by Playwright; Playwright's own browser download is never used.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from ringpool.testing.local import LocalCluster, ManagedProcess, free_port
from tests.helpers import eventually

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
OPERATOR_TOKEN = "operator-token-for-tests"
VIEWER_TOKEN = "viewer-token-for-tests"


def dashboard_env(cluster: LocalCluster, **extra: str) -> dict[str, str]:
    env = {**os.environ, **cluster.env(),
           "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("sdk", "node", "coordinator", ""))}
    env.update({"RINGPOOL_OPERATOR_TOKEN": OPERATOR_TOKEN, "RINGPOOL_VIEWER_TOKEN": VIEWER_TOKEN,
                "RINGPOOL_POLL_INTERVAL": "0.5"})
    env.update(extra)
    return env


@contextmanager
def running_dashboard(cluster: LocalCluster, workdir: Path, args: Sequence[str] = (),
                      scheme: str = "http", **env: str) -> Iterator[str]:
    """``python -m ringpool.dashboard`` against ``cluster``; yields its base URL."""
    port = free_port()
    process = ManagedProcess(
        "dashboard", [sys.executable, "-m", "ringpool.dashboard",
                      "--listen", f"127.0.0.1:{port}", *args],
        workdir / f"dashboard-{port}.log", dashboard_env(cluster, **env)).start()
    url = f"{scheme}://127.0.0.1:{port}"
    try:
        eventually(lambda: _answers(process, url), 60, "the dashboard to serve")
        yield url
    finally:
        process.stop(timeout=15)


def _answers(process: ManagedProcess, url: str) -> bool:
    if not process.alive():
        raise AssertionError(f"the dashboard exited:\n{process.log_tail()}")
    # The test's own certificate authority is not the system's: do not verify it here.
    context = ssl._create_unverified_context() if url.startswith("https") else None
    with urllib.request.urlopen(f"{url}/healthz", timeout=2, context=context) as reply:
        return reply.status == 200


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            yield browser
        finally:
            browser.close()


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def signed_in(browser: Browser, url: str, token: str = OPERATOR_TOKEN, **options: object
              ) -> tuple[BrowserContext, Page]:
    """A fresh browser context signed in with ``token``, on the overview."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, **options)  # type: ignore[arg-type]
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.goto(f"{url}/")
    page.fill("input[name=token]", token)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(f"{url}/")
    return context, page


def run(args: Sequence[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m ringpool.dashboard ARGS`` to its end (help, version, refusals)."""
    return subprocess.run([sys.executable, "-m", "ringpool.dashboard", *args], capture_output=True,
                          text=True, timeout=60, env=env, check=False)
