"""The pytest plugin as an application gets it: pytest run in a subprocess on an app's
own tests, on a machine with java, ZooKeeper and redis-server out of reach."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHOP = ROOT / "examples" / "shop"
SERVERS = ("java", "redis-server", "zkServer.sh")


def _env(without_servers: bool) -> dict[str, str]:
    """This checkout's packages first on the path (the node and coordinator a real cluster
    starts too); with ``without_servers``, a PATH holding none of the servers' binaries and
    no ZooKeeper jar."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RINGPOOL_", "PYTEST_"))}
    env["PYTHONPATH"] = os.pathsep.join(str(ROOT / p) for p in ("sdk", "node", "coordinator"))
    if without_servers:
        env["PATH"] = os.pathsep.join(
            folder for folder in env.get("PATH", "").split(os.pathsep)
            if not any((Path(folder) / binary).exists() for binary in SERVERS))
        env["RINGPOOL_ZOOKEEPER_CLASSPATH"] = "/nonexistent/zookeeper.jar"
        for binary in SERVERS:
            assert shutil.which(binary, path=env["PATH"]) is None, binary
    return env


def _pytest(cwd: Path, without_servers: bool, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           *args], cwd=cwd, env=_env(without_servers), capture_output=True,
                          text=True, timeout=300)
    return done, time.perf_counter() - started


def _summary(output: str) -> dict[str, int]:
    line = output.strip().splitlines()[-1]
    return {word: int(count) for count, word in re.findall(r"(\d+) (\w+)", line)}


def test_the_example_apps_tests_pass_without_java_zookeeper_or_redis() -> None:
    done, wall_s = _pytest(SHOP, True)
    assert done.returncode == 0, done.stdout + done.stderr
    counts = _summary(done.stdout)
    assert counts.get("passed", 0) >= 9 and set(counts) == {"passed"}, done.stdout
    took = re.search(r"in ([\d.]+)s", done.stdout.strip().splitlines()[-1])
    assert took is not None
    print(f"\n[example tests] {counts['passed']} passed in {took.group(1)} s (pytest's count); "
          f"{wall_s:.2f} s with interpreter start-up, without java, ZooKeeper or redis-server")


def test_the_readme_example_passes_as_written(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Testing your tasks", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(toml|python)\n(.*?)```", section, re.S)
    assert [kind for kind, _ in blocks] == ["toml", "python", "python"]
    (tmp_path / "pyproject.toml").write_text(blocks[0][1])
    for _, code in blocks[1:]:
        path = tmp_path / code.splitlines()[0].removeprefix("# ")
        path.parent.mkdir(exist_ok=True)
        path.write_text(code)
    done, _ = _pytest(tmp_path, True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _summary(done.stdout) == {"passed": 2}, done.stdout


LOCAL_TEST = """
    from ringpool import Task

    def test_a_real_cluster_runs_a_task(ringpool_local):
        with ringpool_local.connect() as cluster:
            assert cluster.dispatch("k", Task("demo.add", args=(1, 2))).result(timeout=60) == 3
"""


@pytest.mark.parametrize("without_servers", [True, False], ids=["servers-missing", "servers-there"])
def test_ringpool_local_runs_a_real_cluster_or_says_what_is_missing(
    tmp_path: Path, without_servers: bool
) -> None:
    (tmp_path / "test_local.py").write_text(textwrap.dedent(LOCAL_TEST))
    done, wall_s = _pytest(tmp_path, without_servers)
    assert done.returncode == 0, done.stdout + done.stderr
    if without_servers:
        assert _summary(done.stdout) == {"skipped": 1}, done.stdout
        reason = next(line for line in done.stdout.splitlines() if line.startswith("SKIPPED"))
        assert "ringpool_local needs java" in reason and "redis-server" in reason
        assert "apt-get install" in reason
    else:
        assert _summary(done.stdout) == {"passed": 1}, done.stdout
        print(f"\n[ringpool_local] a session with a real local cluster took {wall_s:.1f} s")


def test_the_plugin_is_registered_and_imports_nothing_of_ringpool() -> None:
    (entry,) = [e for e in metadata.entry_points(group="pytest11") if e.name == "ringpool"]
    assert entry.value == "pytest_ringpool"
    # pytest loads plugins before a run's `pythonpath` applies: ringpool must wait for it.
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, pytest_ringpool; print(sorted(m for m in sys.modules "
                               "if m.split('.')[0] == 'ringpool'))"],
        env=_env(False), capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "[]"
