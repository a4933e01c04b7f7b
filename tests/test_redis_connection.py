"""One --redis URL, whatever stands behind it: a single Redis, any node of a Redis Cluster
(detected), or a Sentinel-watched primary that fails over."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from ringpool import Task
from ringpool.errors import ConfigError
from ringpool.store.connection import SENTINEL_PORT, SentinelUrl
from ringpool.store.store import StateStore
from ringpool.testing.local import (
    LocalCluster,
    RedisClusterServers,
    RedisSentinelServers,
    RedisServer,
    ZooKeeperServer,
)
from tests.helpers import eventually


def test_sentinel_urls_name_the_sentinels_the_service_and_the_secrets() -> None:
    url = SentinelUrl.parse("redis+sentinel://user:s%40cret@a:26380,b,[::1]:26381/jobs/2"
                            "?sentinel_password=sp")
    assert url == SentinelUrl([("a", 26380), ("b", SENTINEL_PORT), ("::1", 26381)], "jobs", 2,
                              "user", "s@cret", "sp", tls=False)
    assert SentinelUrl.parse("rediss+sentinel://:pw@h/svc") == SentinelUrl(
        [("h", SENTINEL_PORT)], "svc", 0, None, "pw", "pw", tls=True)
    assert SentinelUrl.parse("redis://h:6379/0") is None


@pytest.mark.parametrize("url", [
    "redis+sentinel://h:26379",  # no service
    "redis+sentinel:///svc",  # no sentinel
    "redis+sentinel://h:port/svc",
    "redis+sentinel://h/svc/db",
    "redis+sentinel://h/svc/0/extra",
])
def test_a_malformed_sentinel_url_is_refused(url: str) -> None:
    with pytest.raises(ConfigError):
        SentinelUrl.parse(url)


def clustered(url: str, cluster: str) -> bool:
    async def probe() -> bool:
        store = StateStore.from_url(url, cluster)
        try:
            await store.ping()
            return store.clustered
        finally:
            await store.close()

    return asyncio.run(probe())


def test_a_redis_cluster_is_detected_from_any_of_its_nodes(
    redis_cluster: RedisClusterServers, redis_server: RedisServer, cluster_name: str
) -> None:
    assert all(clustered(server.url, cluster_name) for server in redis_cluster.servers)
    assert not clustered(redis_server.url, cluster_name)


@pytest.fixture
def sentinel(workdir: Path) -> Iterator[RedisSentinelServers]:
    servers = RedisSentinelServers(workdir / f"sentinel-{id(workdir)}", appendonly=True).start()
    yield servers
    servers.stop()


def test_through_sentinel_tasks_run_before_and_after_the_primary_fails_over(
    zookeeper: ZooKeeperServer, sentinel: RedisSentinelServers
) -> None:
    with LocalCluster(nodes=1, coordinators=0, zk=zookeeper.address, redis=sentinel.url
                      ) as local, local.connect() as client:
        assert client.dispatch("k1", Task("demo.add", args=(1, 2))).result(timeout=30) == 3
        sentinel.primary.stop(sig=signal.SIGKILL)
        eventually(lambda: sentinel.primary_port() == sentinel.replica.port, 60,
                   "the Sentinel to promote the replica")
        # The node and the client ask the Sentinel again and go on with the new primary.
        assert client.dispatch("k2", Task("demo.add", args=(2, 2))).result(timeout=60) == 4
