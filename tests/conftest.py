"""Shared fixtures: one real ZooKeeper and one real Redis per test session, and a Redis
Cluster (3 primaries, 3 replicas) started when a test first needs it.

Each test gets a fresh cluster name, so tests never see each other's state.
``zookeeper`` is a standalone server, or with ``--zookeeper ensemble`` a 3-server
ensemble (``zookeeper_ensemble``, which ``tests/test_ensemble.py`` always uses). A
module whose Redis comes from ``any_redis`` runs against both a single Redis and the
Redis Cluster; on the cluster, only its tests marked ``redis_cluster`` run unless
pytest is given ``--redis-cluster all`` (``none``: not at all).
"""

from __future__ import annotations

import multiprocessing.util
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from ringpool import Cluster
from ringpool.core.membership import connect_zookeeper
from ringpool.testing.local import (
    LocalCluster,
    RedisClusterServers,
    RedisServer,
    ZooKeeperEnsemble,
    ZooKeeperServer,
)
from tests.helpers import connected

REDIS_KINDS = ["redis", "redis-cluster"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--zookeeper", choices=("standalone", "ensemble"), default="standalone",
        help="run the suite against one ZooKeeper server or a 3-server ensemble")
    parser.addoption("--redis-cluster", choices=("subset", "all", "none"), default="subset",
                     help="which tests of modules on any_redis also run on a Redis Cluster: "
                          "those marked redis_cluster (subset), all of them, or none")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "redis_cluster: in a module on any_redis, also run "
                                       "this test against the Redis Cluster")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mode = config.getoption("--redis-cluster")
    kept, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_cluster = callspec is not None and callspec.params.get("any_redis") == "redis-cluster"
        wanted = mode == "all" or (mode == "subset" and item.get_closest_marker("redis_cluster"))
        (dropped if on_cluster and not wanted else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="ringpool-tests-") as path:
        yield Path(path)


@pytest.fixture(scope="session", autouse=True)
def temp_dirs_go_with_the_session(workdir: Path) -> Iterator[None]:
    """Temp dirs made during the run (each LocalCluster's logs) live under the session's
    work dir, which goes at the end: runs leave nothing behind in /tmp."""
    # multiprocessing removes its own temp dir at interpreter exit, after this session's
    # work dir is gone: it makes that dir in the usual place, before the switch.
    multiprocessing.util.get_temp_dir()
    before = tempfile.tempdir
    tempfile.tempdir = str(workdir)
    yield
    tempfile.tempdir = before


@pytest.fixture(scope="session")
def zookeeper(
    request: pytest.FixtureRequest, workdir: Path
) -> Iterator[ZooKeeperServer | ZooKeeperEnsemble]:
    if request.config.getoption("--zookeeper") == "ensemble":
        yield request.getfixturevalue("zookeeper_ensemble")
        return
    server = ZooKeeperServer(workdir).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def zookeeper_ensemble(workdir: Path) -> Iterator[ZooKeeperEnsemble]:
    """Three servers in one quorum, small heaps (tests that stop servers start them again)."""
    ensemble = ZooKeeperEnsemble(workdir / "ensemble").start()
    yield ensemble
    ensemble.stop()


@pytest.fixture(scope="session")
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir, appendonly=True).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(workdir: Path) -> Iterator[RedisClusterServers]:
    servers = RedisClusterServers(workdir / "redis-cluster", appendonly=True).start()
    yield servers
    servers.stop()


@pytest.fixture(scope="module", params=REDIS_KINDS)
def any_redis(request: pytest.FixtureRequest) -> str:
    """The URL of the session's Redis, then of the session's Redis Cluster."""
    if request.param == "redis":
        return str(request.getfixturevalue("redis_server").url)
    return str(request.getfixturevalue("redis_cluster").url)


@pytest.fixture
def zk_hosts(zookeeper: ZooKeeperServer | ZooKeeperEnsemble) -> str:
    return zookeeper.address


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def cluster_name() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def zk_client(zk_hosts: str):  # type: ignore[no-untyped-def]
    client = connect_zookeeper(zk_hosts)
    yield client
    client.stop()
    client.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def features_cluster(zookeeper: ZooKeeperServer, redis_server: RedisServer
                     ) -> Iterator[LocalCluster]:
    """One cluster for the feature tests (progress, groups, rate limits, result expiry,
    inspection): nodes node-0 and node-1 in the default group, gpu-0 in group ``gpu``,
    a coordinator, the tasks of ``tests.tasks_features``. Tests tell their tasks apart
    by key or task name."""
    with LocalCluster(nodes=2, coordinators=1, tasks=["tests.tasks_features"],
                      groups={"gpu": 1}, zk=zookeeper.address, redis=redis_server.url) as local:
        yield local


@pytest.fixture(scope="module")
def features_client(features_cluster: LocalCluster) -> Iterator[Cluster]:
    """A client of ``features_cluster`` that sees its three nodes (one per test module)."""
    with connected(features_cluster, 3) as cluster:
        yield cluster
