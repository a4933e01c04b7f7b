"""ringpool's pytest plugin (entry point ``pytest11``, name ``ringpool``): fixtures to test
tasks with.

``ringpool_cluster``  a fresh ``InMemoryCluster`` per test: the ``Cluster`` API with no
                      servers (eager by default, see ``ringpool.testing``).
``ringpool_local``    one real ``LocalCluster`` per session (ZooKeeper, Redis, three nodes
                      and a coordinator as subprocesses); skipped, naming what is missing,
                      on a machine without java, ZooKeeper's jar or redis-server.

Settings, in the ini file (``[tool.pytest.ini_options]`` of ``pyproject.toml``)::

    ringpool_tasks = ["shop.tasks"]   # task modules both clusters load, like --tasks
    ringpool_mode = "queued"          # the in-memory cluster's mode (default: eager)

and per test or module, any ``InMemoryCluster`` option::

    @pytest.mark.ringpool(mode="queued", nodes=["n1", "n2"])

Nothing of ringpool is imported until a fixture is used: pytest loads plugins before
a run's own import paths (``pythonpath``) apply, and ringpool must come from those.
Disable the plugin with ``-p no:ringpool``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ringpool.testing.local import LocalCluster
    from ringpool.testing.memory import InMemoryCluster


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("ringpool_tasks", "task modules ringpool's test clusters load (like --tasks)",
                  type="linelist", default=[])
    parser.addini("ringpool_mode", "mode of the ringpool_cluster fixture: eager or queued",
                  default="eager")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "ringpool(**options): InMemoryCluster options for the ringpool_cluster fixture "
                   "(mode=, nodes=, tasks=, ...)")


@pytest.fixture
def ringpool_cluster(request: pytest.FixtureRequest) -> Iterator[InMemoryCluster]:
    """An ``InMemoryCluster`` with the ini's task modules and mode, or the marker's."""
    from ringpool.testing.memory import InMemoryCluster

    options: dict[str, Any] = {"tasks": request.config.getini("ringpool_tasks"),
                               "mode": request.config.getini("ringpool_mode")}
    marker = request.node.get_closest_marker("ringpool")
    if marker is not None:
        options.update(marker.kwargs)
    with InMemoryCluster(**options) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def ringpool_local(request: pytest.FixtureRequest,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A real local cluster running the ini's task modules (default: ``ringpool.demo``);
    ``with ringpool_local.connect() as cluster:`` gives a client."""
    from ringpool.testing.local import INSTALL_HINT, LocalCluster, missing_servers

    missing = missing_servers()
    if missing:
        pytest.skip(f"ringpool_local needs {', '.join(missing)}; install with: {INSTALL_HINT}")
    tasks = request.config.getini("ringpool_tasks") or ["ringpool.demo"]
    with LocalCluster(tasks=tasks, workdir=tmp_path_factory.mktemp("ringpool-local")) as cluster:
        yield cluster
