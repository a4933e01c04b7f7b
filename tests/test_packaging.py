"""The built wheels, installed into fresh virtualenvs outside the repository, as a user gets them.

The client install holds the client library alone; the full install runs a one-node
cluster from its console scripts with a task module written to a temp dir.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ringpool.testing.local import ManagedProcess, RedisServer, ZooKeeperServer, free_port
from tests.helpers import eventually

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("sdk", "node", "coordinator")
SERVER_ONLY = {"grpcio-health-checking", "grpcio-reflection", "opentelemetry-sdk"}
OPERATOR_ONLY = {"click", "rich", "starlette", "uvicorn", "jinja2"}


def _clean_env() -> dict[str, str]:
    """The environment without this checkout's import paths or settings."""
    return {k: v for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("RINGPOOL_")}


def _run(argv: list[str], cwd: Path, timeout: float = 600.0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, cwd=cwd, env=_clean_env(), capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheels")
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
          "--wheel-dir", str(out), *(str(ROOT / f) for f in FOLDERS)], cwd=out)
    return out


def _venv(where: Path, wheels: Path, *requirements: str) -> Path:
    _run([sys.executable, "-m", "venv", str(where)], cwd=where.parent)
    python = where / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
          "--find-links", str(wheels), *requirements], cwd=where.parent)
    return python


def _installed(python: Path) -> set[str]:
    listed = _run([str(python), "-m", "pip", "list", "--format=json",
                   "--disable-pip-version-check"], cwd=python.parent)
    return {item["name"].lower() for item in json.loads(listed.stdout)}


def test_client_install_is_the_client_alone(wheels: Path, tmp_path: Path) -> None:
    python = _venv(tmp_path / "client", wheels, "ringpool")
    installed = _installed(python)
    print("client-only install:", sorted(installed))
    assert "ringpool" in installed
    assert not installed & (SERVER_ONLY | OPERATOR_ONLY | {"ringpool-node", "ringpool-coordinator"})
    check = ("import ringpool, ringpool.client.cluster, ringpool.core.ring, ringpool.store.store\n"
             "print(ringpool.__version__)")
    assert _run([str(python), "-c", check], cwd=tmp_path).stdout.strip() == "0.2.0"
    plugin = ("from importlib import metadata, util\n"
              "(entry,) = [e for e in metadata.entry_points(group='pytest11') if e.name == 'ringpool']\n"
              "print(entry.value, util.find_spec(entry.value) is not None)")
    assert _run([str(python), "-c", plugin], cwd=tmp_path).stdout.strip() == "pytest_ringpool True"
    for missing in ("ringpool_node", "ringpool_coordinator"):
        probe = subprocess.run([str(python), "-c", f"import {missing}"], cwd=tmp_path,
                               env=_clean_env(), capture_output=True)
        assert probe.returncode != 0


@pytest.fixture(scope="module")
def full_install(wheels: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("full")
    return _venv(where / "venv", wheels, "ringpool[cli,dashboard]", "ringpool-node",
                 "ringpool-coordinator")


def test_full_install_has_one_namespace(full_install: Path, tmp_path: Path) -> None:
    installed = _installed(full_install)
    print("node install:", sorted(installed))
    _run([str(full_install), "-c", "import ringpool, ringpool_node, ringpool_coordinator"],
         cwd=tmp_path)
    for generic in ("sdk", "node", "coordinator", "examples", "tests"):
        probe = subprocess.run([str(full_install), "-c", f"import {generic}"], cwd=tmp_path,
                               env=_clean_env(), capture_output=True, text=True)
        assert probe.returncode != 0, f"`import {generic}` works in an installed environment"
    bin_dir = full_install.parent
    for script in ("ringpool-node", "ringpool-coordinator", "taskctl", "ringpool-dashboard"):
        version = _run([str(bin_dir / script), "--version"], cwd=tmp_path).stdout
        assert "0.2.0" in version, f"{script} --version said {version!r}"
    # The dashboard's templates and static files ship in the wheel.
    shipped = ("from importlib.resources import files; d = files('ringpool.dashboard'); "
               "assert d.joinpath('templates/base.html').is_file(); "
               "assert d.joinpath('static/app.js').is_file(); "
               "import ringpool.dashboard.server")
    _run([str(full_install), "-c", shipped], cwd=tmp_path)


def test_installed_scripts_run_a_task_module_from_a_temp_dir(
    full_install: Path, tmp_path: Path, zookeeper: ZooKeeperServer, redis_server: RedisServer,
    cluster_name: str,
) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "shop_tasks.py").write_text(textwrap.dedent("""
        from ringpool import task

        @task("shop.total", timeout=5.0)
        def total(prices: list[float], discount: float = 0.0) -> float:
            return round(sum(prices) * (1 - discount), 2)
    """))
    bin_dir = full_install.parent
    env = {**_clean_env(), "PYTHONPATH": str(app), "RINGPOOL_ZK": zookeeper.address,
           "RINGPOOL_REDIS": redis_server.url, "RINGPOOL_CLUSTER": cluster_name}
    node = ManagedProcess(
        "installed-node",
        [str(bin_dir / "ringpool-node"), "--node-id", "n1", "--listen",
         f"127.0.0.1:{free_port()}", "--tasks", "shop_tasks", "--metrics-port", "0"],
        tmp_path / "node.log", env,
    ).start()
    try:
        client = textwrap.dedent("""
            from ringpool import Cluster, Task
            with Cluster.connect() as cluster:
                handle = cluster.dispatch("cart:7", Task("shop.total", args=([10, 20.5],),
                                                          kwargs={"discount": 0.1}))
                print(handle.result(timeout=30))
        """)

        def answered() -> str:
            assert node.alive(), node.log_tail()
            done = subprocess.run([str(full_install), "-c", client], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            return done.stdout.strip()

        assert eventually(answered, timeout=60, what="the installed node to answer") == "27.45"
    finally:
        assert node.stop(timeout=30) == 0, node.log_tail()
