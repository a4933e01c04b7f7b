"""mTLS and the bearer token against a real node: who gets in, who is refused, and how."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ringpool import Cluster, Task
from ringpool.errors import ClusterUnavailable, ConfigError, Unauthenticated
from ringpool.testing.local import LocalCluster, RedisServer, ZooKeeperServer
from ringpool.v1 import node_pb2 as pb
from ringpool.v1 import node_pb2_grpc as pb_grpc
from tests.helpers import eventually
from tests.tasks_flaky import probe_fail_times
from tests.tlscerts import Pki, make_pki, node_args

TOKEN = "s3cret-token"
OPERATOR_TOKEN = "s3cret-operator-token"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def secure_node(
    pki: Pki, zookeeper: ZooKeeperServer, redis_server: RedisServer, workdir: Path
) -> Iterator[LocalCluster]:
    local = LocalCluster(
        nodes=1, coordinators=0, cluster=f"tls{uuid.uuid4().hex[:8]}", zk=zookeeper.address,
        redis=redis_server.url, workdir=workdir / f"tls-{uuid.uuid4().hex[:6]}",
        node_args=[*node_args(pki), "--token", TOKEN, "--operator-token", OPERATOR_TOKEN],
    )
    local.workdir.mkdir(parents=True, exist_ok=True)
    with local:
        yield local


def connect(local: LocalCluster, **options: Any) -> Cluster:
    return Cluster.connect(zk=local.zk, redis=local.redis, cluster=local.cluster, **options)


def channel(local: LocalCluster, credentials: grpc.ChannelCredentials | None) -> grpc.Channel:
    target = f"127.0.0.1:{local.node_ports['node-0']}"
    if credentials is None:
        return grpc.insecure_channel(target)
    return grpc.secure_channel(target, credentials)


def mtls(pki: Pki, ca: Path | None = None, with_client_cert: bool = True) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=(ca or pki.ca).read_bytes(),
        private_key=pki.client_key.read_bytes() if with_client_cert else None,
        certificate_chain=pki.client_cert.read_bytes() if with_client_cert else None,
    )


def test_good_client_dispatches_over_mtls(secure_node: LocalCluster, pki: Pki) -> None:
    with connect(secure_node, token=TOKEN, tls_ca=str(pki.ca), tls_cert=str(pki.client_cert),
                 tls_key=str(pki.client_key)) as cluster:
        assert cluster.dispatch("user:1", Task("demo.add", args=(1, 2))).result(timeout=10) == 3


@pytest.mark.parametrize("options", [
    pytest.param({"tls_ca": "ca"}, id="no-client-cert"),
    pytest.param({}, id="plaintext-no-ca"),
    pytest.param({"tls_ca": "other_ca", "tls_cert": "client_cert", "tls_key": "client_key"},
                 id="wrong-ca"),
])
def test_client_without_the_right_credentials_is_refused(
    secure_node: LocalCluster, pki: Pki, options: dict[str, str]
) -> None:
    paths = {name: str(getattr(pki, value)) for name, value in options.items()}
    # The handshake never succeeds: give up on resending after 2 s, not the default 60 s.
    with connect(secure_node, token=TOKEN, accept_timeout_s=2.0, **paths) as cluster, \
            pytest.raises(ClusterUnavailable) as caught:
        cluster.dispatch("user:1", Task("demo.add", args=(1, 2))).accepted()
    assert not isinstance(caught.value, Unauthenticated)  # the handshake failed, not the token


@pytest.mark.parametrize("credentials", [
    pytest.param(lambda pki: mtls(pki, with_client_cert=False), id="no-client-cert"),
    pytest.param(lambda pki: None, id="plaintext"),
    pytest.param(lambda pki: mtls(pki, ca=pki.other_ca), id="wrong-ca"),
])
def test_handshake_failures_are_unavailable_on_the_wire(
    secure_node: LocalCluster, pki: Pki, credentials: Any
) -> None:
    with channel(secure_node, credentials(pki)) as ch, pytest.raises(grpc.RpcError) as caught:
        pb_grpc.NodeStub(ch).Status(pb.StatusRequest(), timeout=5,
                                    metadata=(("authorization", f"Bearer {TOKEN}"),))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("token", ["", "not-the-token"], ids=["missing", "wrong"])
def test_missing_or_wrong_token_is_unauthenticated(
    secure_node: LocalCluster, pki: Pki, token: str
) -> None:
    with connect(secure_node, token=token, tls_ca=str(pki.ca), tls_cert=str(pki.client_cert),
                 tls_key=str(pki.client_key)) as cluster, pytest.raises(Unauthenticated):
        cluster.dispatch("user:1", Task("demo.add", args=(1, 2))).accepted()
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    with channel(secure_node, mtls(pki)) as ch, pytest.raises(grpc.RpcError) as caught:
        pb_grpc.NodeStub(ch).Status(pb.StatusRequest(), timeout=5, metadata=metadata)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_health_answers_without_a_token(secure_node: LocalCluster, pki: Pki) -> None:
    with channel(secure_node, mtls(pki)) as ch:
        reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_client_cert_without_a_ca_is_a_config_error(pki: Pki) -> None:
    with pytest.raises(ConfigError):
        Cluster.connect(zk="127.0.0.1:1", redis="redis://127.0.0.1:1/0",
                        tls_cert=str(pki.client_cert), tls_key=str(pki.client_key))


def test_the_coordinator_re_dispatches_over_mtls_with_the_client_tls_flags(
    pki: Pki, zookeeper: ZooKeeperServer, redis_server: RedisServer, workdir: Path
) -> None:
    client_tls = {"tls_ca": str(pki.ca), "tls_cert": str(pki.client_cert),
                  "tls_key": str(pki.client_key)}
    local = LocalCluster(
        nodes=1, coordinators=1, cluster=f"tls{uuid.uuid4().hex[:8]}", zk=zookeeper.address,
        redis=redis_server.url, workdir=workdir / f"tls-{uuid.uuid4().hex[:6]}",
        tasks=["tests.tasks_flaky"],
        node_args=[*node_args(pki), "--token", TOKEN, "--operator-token", OPERATOR_TOKEN],
        coordinator_args=["--operator-token", OPERATOR_TOKEN,
                          *(arg for name, path in client_tls.items()
                            for arg in (f"--{name.replace('_', '-')}", path))],
    )
    local.workdir.mkdir(parents=True, exist_ok=True)
    with local, connect(local, token=TOKEN, **client_tls) as cluster:
        # The first attempt fails; only the leader can fire the retry to the node: over mTLS.
        handle = cluster.dispatch("k", probe_fail_times.s("tls-retry", 1))
        eventually(lambda: handle.status() == "SUCCEEDED", 60, "the retried task to succeed")
