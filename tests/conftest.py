"""Shared fixtures: one real ZooKeeper and one real Redis per test session.

Each test gets a fresh cluster name, so tests never see each other's state.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from ringpool.core.membership import connect_zookeeper
from ringpool.testing.local import LocalCluster, RedisServer, ZooKeeperServer


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="ringpool-tests-") as path:
        yield Path(path)


@pytest.fixture(scope="session")
def zookeeper(workdir: Path) -> Iterator[ZooKeeperServer]:
    server = ZooKeeperServer(workdir).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir, appendonly=True).start()
    yield server
    server.stop()


@pytest.fixture
def zk_hosts(zookeeper: ZooKeeperServer) -> str:
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
