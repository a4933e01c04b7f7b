"""ZooKeeper digest ACLs and Redis AUTH, against the real servers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError

from ringpool import Cluster, Task
from ringpool.core.config import ClusterConfig, read_config, update_config, write_config
from ringpool.core.membership import connect_zookeeper
from ringpool.core.naming import Names
from ringpool.errors import ConfigError
from ringpool.testing.local import LocalCluster, RedisServer, ZooKeeperServer

MEMBER = "ringpool-member:member-secret"
OPERATOR = "ringpool-operator:operator-secret"


@pytest.fixture(scope="module")
def acl_cluster(
    zookeeper: ZooKeeperServer, redis_server: RedisServer, workdir: Path
) -> Iterator[LocalCluster]:
    cluster = f"acl{uuid.uuid4().hex[:8]}"
    # An earlier unauthenticated client left the cluster's paths open: the node tightens them.
    plain = connect_zookeeper(zookeeper.address)
    plain.ensure_path(Names(cluster).members)
    plain.stop()
    plain.close()
    local = LocalCluster(
        nodes=1, coordinators=1, cluster=cluster, zk=zookeeper.address, redis=redis_server.url,
        workdir=workdir / f"acl-{uuid.uuid4().hex[:6]}", env={"RINGPOOL_ZK_AUTH": MEMBER},
    )
    local.workdir.mkdir(parents=True, exist_ok=True)
    with local:
        yield local


@pytest.fixture
def names(acl_cluster: LocalCluster) -> Names:
    return Names(acl_cluster.cluster)


def test_unauthenticated_client_cannot_touch_the_ring(
    acl_cluster: LocalCluster, names: Names, zk_client: KazooClient
) -> None:
    member = names.member("node-0")
    assert zk_client.exists(member)  # everyone can read the ring
    with pytest.raises(NoAuthError):
        zk_client.create(names.member("intruder"), b'{"addr": "10.0.0.66:7700"}', ephemeral=True)
    with pytest.raises(NoAuthError):
        zk_client.set(member, b'{"addr": "10.0.0.66:7700"}')
    with pytest.raises(NoAuthError):
        zk_client.delete(member)
    with pytest.raises(NoAuthError):
        zk_client.create(f"{names.draining}/node-0", b"", ephemeral=True)  # would stop recovery
    with pytest.raises(NoAuthError):
        zk_client.create(f"{names.election}/intruder", b"", ephemeral=True, sequence=True)
    assert zk_client.get_children(names.members) == ["node-0"]


def test_clients_without_credentials_still_route(acl_cluster: LocalCluster) -> None:
    with Cluster.connect(zk=acl_cluster.zk, redis=acl_cluster.redis,
                         cluster=acl_cluster.cluster) as cluster:
        assert cluster.dispatch("user:1", Task("demo.add", args=(4, 5))).result(timeout=10) == 9
    with Cluster.connect(zk=acl_cluster.zk, redis=acl_cluster.redis, cluster=acl_cluster.cluster,
                         zk_auth=MEMBER) as cluster:
        assert cluster.dispatch("user:2", Task("demo.add", args=(1, 1))).result(timeout=10) == 2


def test_only_the_operator_writes_the_config(
    acl_cluster: LocalCluster, zk_client: KazooClient
) -> None:
    cluster = acl_cluster.cluster
    operator = connect_zookeeper(acl_cluster.zk, operator_auth=OPERATOR)
    member = connect_zookeeper(acl_cluster.zk, auth=MEMBER)
    try:
        update_config(operator, cluster, lambda c: c.with_values({"pool.max_workers": 48}))
        stored = read_config(zk_client, cluster)  # everyone reads it
        assert stored.config.pool.max_workers == 48
        for intruder in (zk_client, member):
            with pytest.raises(ConfigError, match="zk-operator-auth"):
                write_config(intruder, cluster, ClusterConfig(), stored.version)
            with pytest.raises(NoAuthError):
                intruder.delete(Names(cluster).config)
        assert read_config(zk_client, cluster).config.pool.max_workers == 48
        update_config(operator, cluster, lambda c: c.with_values({"pool.max_workers": 64}))
        assert read_config(zk_client, cluster).config.pool.max_workers == 64
    finally:
        for client in (operator, member):
            client.stop()
            client.close()


def test_open_config_is_tightened_by_the_operator(
    zk_hosts: str, cluster_name: str, zk_client: KazooClient
) -> None:
    """A config written before ACLs were on gets the operator's ACL on the next write."""
    update_config(zk_client, cluster_name, lambda c: c.with_values({"pool.max_workers": 8}))
    operator = connect_zookeeper(zk_hosts, operator_auth=OPERATOR)
    try:
        update_config(operator, cluster_name, lambda c: c.with_values({"pool.max_workers": 9}))
    finally:
        operator.stop()
        operator.close()
    with pytest.raises(ConfigError):
        update_config(zk_client, cluster_name, lambda c: c.with_values({"pool.max_workers": 1}))
    assert read_config(zk_client, cluster_name).config.pool.max_workers == 9


def test_bad_credentials_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        connect_zookeeper("127.0.0.1:1", auth="no-colon")
    with pytest.raises(ConfigError):
        Cluster.connect(zk="127.0.0.1:1", redis="redis://127.0.0.1:1/0", zk_auth=":nouser")


# -- Redis AUTH ------------------------------------------------------------------------

README_ACL = "~ringpool:{<cluster>}:* ~ringpool:{<cluster>:* &ringpool:{<cluster>}:*"


@pytest.fixture(scope="module")
def password_redis(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir / f"redis-auth-{uuid.uuid4().hex[:6]}",
                         password="p@ss word/with:odd chars").start()
    yield server
    server.stop()


def test_redis_requirepass_through_the_url(
    password_redis: RedisServer, zookeeper: ZooKeeperServer, workdir: Path
) -> None:
    plain = redis.Redis(host="127.0.0.1", port=password_redis.port)
    with pytest.raises(redis.exceptions.AuthenticationError):
        plain.ping()
    plain.close()
    local = LocalCluster(nodes=1, coordinators=0, zk=zookeeper.address, redis=password_redis.url,
                         workdir=workdir / f"redis-auth-{uuid.uuid4().hex[:6]}")
    local.workdir.mkdir(parents=True, exist_ok=True)
    with local, Cluster.connect(zk=local.zk, redis=local.redis, cluster=local.cluster) as cluster:
        handle = cluster.dispatch("user:1", Task("demo.add", args=(20, 22)))
        assert handle.result(timeout=10) == 42
        assert handle.status() == "SUCCEEDED"  # read from Redis with the URL's password


def test_a_per_cluster_acl_user_runs_its_cluster_and_reads_no_other(
    password_redis: RedisServer, zookeeper: ZooKeeperServer, workdir: Path
) -> None:
    """The README's key and channel patterns for a per-cluster Redis ACL user suffice."""
    cluster_name = f"acl{uuid.uuid4().hex[:8]}"
    admin = redis.Redis.from_url(password_redis.url)
    patterns = README_ACL.replace("<cluster>", cluster_name).split()
    admin.execute_command("ACL", "SETUSER", cluster_name, "on", ">secret", "+@all",
                          "resetkeys", "resetchannels", *patterns)
    admin.set("ringpool:{other}:partitions", "64")
    url = f"redis://{cluster_name}:secret@127.0.0.1:{password_redis.port}/0"
    local = LocalCluster(nodes=1, coordinators=1, zk=zookeeper.address, redis=url,
                         cluster=cluster_name,
                         workdir=workdir / f"redis-acl-{uuid.uuid4().hex[:6]}")
    local.workdir.mkdir(parents=True, exist_ok=True)
    try:
        with local, Cluster.connect(zk=local.zk, redis=url, cluster=cluster_name) as cluster:
            handle = cluster.dispatch("user:1", Task("demo.add", args=(20, 22)))
            assert handle.result(timeout=10) == 42
            assert handle.status() == "SUCCEEDED"
            limited = redis.Redis.from_url(url)
            with pytest.raises(redis.exceptions.NoPermissionError):
                limited.get("ringpool:{other}:partitions")
            limited.close()
    finally:
        admin.execute_command("ACL", "DELUSER", cluster_name)
        admin.close()


def test_wrong_redis_password_is_refused(password_redis: RedisServer) -> None:
    wrong = redis.Redis.from_url(f"redis://:wrong@127.0.0.1:{password_redis.port}/0")
    with pytest.raises(redis.exceptions.AuthenticationError):
        wrong.ping()
    wrong.close()
