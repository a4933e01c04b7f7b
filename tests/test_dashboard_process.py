"""``ringpool-dashboard`` as a process: flags and variables, refusals, HTTPS with a Secure
cookie, and ``taskctl dashboard``."""

from __future__ import annotations

import os
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ringpool.testing.local import (
    LocalCluster,
    ManagedProcess,
    RedisServer,
    ZooKeeperServer,
    free_port,
)
from tests.dashboard_harness import ROOT, chromium, dashboard_env, run, running_dashboard, signed_in
from tests.helpers import eventually
from tests.tlscerts import make_pki

FLAGS = ("--zk", "--redis", "--cluster", "--token", "--listen", "--operator-token",
         "--viewer-token", "--session-secret", "--server-tls-cert", "--server-tls-key",
         "--poll-interval", "--tls-ca", "--zk-operator-auth")


@pytest.fixture(scope="module")
def local(zookeeper: ZooKeeperServer, redis_server: RedisServer) -> Iterator[LocalCluster]:
    cluster = LocalCluster(nodes=1, coordinators=0, zk=zookeeper.address, redis=redis_server.url,
                           cluster=f"dashp{uuid.uuid4().hex[:8]}")
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def test_help_names_every_flag_and_its_variable_and_version_answers() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "sdk")}
    text = run(["-h"], env).stdout
    for flag in FLAGS:
        assert flag in text, flag
        assert f"RINGPOOL_{flag[2:].replace('-', '_').upper()}" in text, flag
    version = run(["--version"], env)
    assert version.returncode == 0 and version.stdout.startswith("ringpool ")


@pytest.mark.parametrize(("args", "message"), [
    (["--operator-token", "same-token-1", "--viewer-token", "same-token-1"], "must differ"),
    (["--operator-token", "short"], "at least 8 characters"),
    (["--listen", "nowhere"], "--listen must be HOST:PORT"),
    (["--server-tls-cert", "cert.pem"], "go together"),
    (["--poll-interval", "0"], "--poll-interval"),
])
def test_bad_settings_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "sdk")}
    done = run(["--zk", "127.0.0.1:1", "--redis", "redis://127.0.0.1:1/0", *args], env)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


def test_unreachable_redis_is_one_line_and_exit_2(local: LocalCluster) -> None:
    env = dashboard_env(local, RINGPOOL_REDIS="redis://127.0.0.1:1/0")
    done = run([], env)
    assert done.returncode == 2
    assert "ringpool-dashboard: cannot reach Redis" in done.stderr
    assert "Traceback" not in done.stderr


def test_https_serves_with_a_secure_session_cookie(local: LocalCluster, workdir: Path,
                                                   tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    tls = ("--server-tls-cert", str(pki.server_cert), "--server-tls-key", str(pki.server_key))
    with running_dashboard(local, workdir, tls, scheme="https") as url, chromium() as browser:
        context, page = signed_in(browser, url, ignore_https_errors=True)
        cookie = next(c for c in context.cookies() if c["name"] == "ringpool_dashboard")
        assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert page.locator("#nodes tr[data-node='node-0']").count() == 1
        context.close()


def test_taskctl_dashboard_serves_the_same_app(local: LocalCluster, workdir: Path) -> None:
    port = free_port()
    process = ManagedProcess(
        "taskctl-dashboard",
        [sys.executable, "-m", "ringpool.cli.taskctl", "dashboard", "--listen",
         f"127.0.0.1:{port}"],
        workdir / f"taskctl-dashboard-{port}.log", dashboard_env(local)).start()
    try:
        def login_page() -> bool:
            assert process.alive(), process.log_tail()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=2) as reply:
                return b"Sign in" in reply.read()

        eventually(login_page, 60, "taskctl dashboard to serve")
    finally:
        assert process.stop(timeout=15) == 0
