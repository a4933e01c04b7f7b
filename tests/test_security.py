"""Hostile input against a real node (mTLS + token): each gets its documented error, the
node stays up and serves a normal task right after, and nothing reaches Redis.

The table here is the one in README.md, "Securing a cluster".
"""

from __future__ import annotations

import itertools
import math
import pathlib
import pickle
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis

from ringpool import Cluster, Task
from ringpool.core.envelope import DEFAULT_MAX_RETRIES, new_task_id
from ringpool.core.slots import idempotent_slot, slot_of
from ringpool.errors import InvalidKey, InvalidTask, PayloadTooLarge, RingpoolError
from ringpool.store.keys import Keys
from ringpool.testing.local import LocalCluster, RedisServer, ZooKeeperServer
from ringpool.v1 import node_pb2 as pb
from ringpool.v1 import node_pb2_grpc as pb_grpc
from tests.tlscerts import Pki, make_pki, node_args

TOKEN = "hostile-test-token"
OPERATOR_TOKEN = "hostile-test-operator-token"
AUTH = (("authorization", f"Bearer {TOKEN}"),)  # an app's: what an outside client holds
MIB = 1024 * 1024
STREAM_LIMIT = 4
SUBMIT_BATCH = "/ringpool.v1.Node/SubmitBatch"


@dataclass
class Ctx:
    local: LocalCluster
    pki: Pki
    channel: grpc.Channel  # mTLS with our client certificate
    tmp: Path

    def stub(self) -> pb_grpc.NodeStub:
        return pb_grpc.NodeStub(self.channel)

    def plaintext_channel(self) -> grpc.Channel:
        return grpc.insecure_channel(f"127.0.0.1:{self.local.node_ports['node-0']}")


@pytest.fixture(scope="module")
def ctx(
    tmp_path_factory: pytest.TempPathFactory, zookeeper: ZooKeeperServer,
    redis_server: RedisServer, workdir: Path,
) -> Iterator[Ctx]:
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    local = LocalCluster(
        nodes=1, coordinators=0, cluster=f"sec{uuid.uuid4().hex[:8]}", zk=zookeeper.address,
        redis=redis_server.url, workdir=workdir / f"sec-{uuid.uuid4().hex[:6]}",
        node_args=[*node_args(pki), "--token", TOKEN, "--operator-token", OPERATOR_TOKEN,
                   "--max-stream-pending", str(STREAM_LIMIT)],
    )
    local.workdir.mkdir(parents=True, exist_ok=True)
    with local:
        credentials = grpc.ssl_channel_credentials(
            pki.ca.read_bytes(), pki.client_key.read_bytes(), pki.client_cert.read_bytes()
        )
        target = f"127.0.0.1:{local.node_ports['node-0']}"
        with grpc.secure_channel(target, credentials) as channel:
            yield Ctx(local, pki, channel, tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def client(ctx: Ctx) -> Iterator[Cluster]:
    pki = ctx.pki
    with Cluster.connect(
        zk=ctx.local.zk, redis=ctx.local.redis, cluster=ctx.local.cluster, token=TOKEN,
        tls_ca=str(pki.ca), tls_cert=str(pki.client_cert), tls_key=str(pki.client_key),
    ) as cluster:
        yield cluster


# -- building hostile input ---------------------------------------------------------


def envelope(**fields: Any) -> pb.TaskEnvelope:
    values: dict[str, Any] = dict(
        task_id=new_task_id(), key="user:1", name="demo.add",
        payload=b'{"args":[1,2],"kwargs":{}}', codec="json", attempt=1,
        max_retries=DEFAULT_MAX_RETRIES,
    )
    values.update(fields)
    return pb.TaskEnvelope(**values)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        bits, value = value & 0x7F, value >> 7
        out.append(bits | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, wire: int, body: bytes) -> bytes:
    return _varint(number << 3 | wire) + body


def _bytes_field(number: int, data: bytes) -> bytes:
    return _field(number, 2, _varint(len(data)) + data)


def raw_request(*envelopes: bytes) -> bytes:
    """A SubmitRequest by hand, so that fields can carry what the schema forbids."""
    return b"".join(_bytes_field(2, e) for e in envelopes)


def wrong_types_envelope() -> bytes:
    """key (a string) sent as a varint, name as a fixed64: the fields arrive unset."""
    return (_bytes_field(1, new_task_id().encode()) + _field(2, 0, _varint(42))
            + _field(3, 1, b"\x00" * 8) + _bytes_field(4, b'{"args":[],"kwargs":{}}')
            + _bytes_field(5, b"json") + _field(7, 0, _varint(1)))


class Smuggled:
    """Unpickling this creates ``marker``: proof that a node unpickled it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


# -- running one case -----------------------------------------------------------------

Outcome = str  # "ack:<AckCode>" for every task, "status:<StatusCode>", or "sdk:<error class>"


def submit(ctx: Ctx, *envelopes: pb.TaskEnvelope) -> Outcome:
    try:
        reply = ctx.stub().SubmitBatch(pb.SubmitRequest(batch_id=1, tasks=envelopes),
                                       timeout=30, metadata=AUTH)
    except grpc.RpcError as exc:
        return f"status:{exc.code().name}"
    codes = {pb.AckCode.Name(ack.code) for ack in reply.acks}
    assert len(reply.acks) == len(envelopes)
    assert len(codes) == 1, codes
    return f"ack:{codes.pop()}"


def send_raw(ctx: Ctx, data: bytes, channel: grpc.Channel | None = None,
             metadata: tuple[tuple[str, str], ...] = AUTH) -> Outcome:
    call = (channel or ctx.channel).unary_unary(SUBMIT_BATCH)
    try:
        reply = pb.SubmitResponse.FromString(call(data, timeout=30, metadata=metadata))
    except grpc.RpcError as exc:
        return f"status:{exc.code().name}"
    codes = {pb.AckCode.Name(ack.code) for ack in reply.acks}
    assert len(codes) == 1, codes
    return f"ack:{codes.pop()}"


def via_sdk(call: Callable[[], object]) -> Outcome:
    try:
        call()
    except RingpoolError as exc:
        return f"sdk:{type(exc).__name__}"
    return "sdk:accepted"


def without_ca(ctx: Ctx) -> Outcome:
    with ctx.plaintext_channel() as plain:
        return send_raw(ctx, pb.SubmitRequest(tasks=[envelope()]).SerializeToString(), plain)


def pickle_in_payload(ctx: Ctx, codec: str) -> Outcome:
    marker = ctx.tmp / f"unpickled-{codec}"
    outcome = submit(ctx, envelope(payload=pickle.dumps(Smuggled(marker)), codec=codec))
    assert not marker.exists(), "the node unpickled a payload"
    return outcome


CASES: list[tuple[str, Callable[[Ctx], Outcome], Outcome]] = [
    # gRPC's own answer when a request does not parse: the handler never runs.
    ("malformed protobuf", lambda c: send_raw(c, b"\x12\x05\x0a\xff"), "status:UNKNOWN"),
    ("invalid UTF-8 in a string field",
     lambda c: send_raw(c, raw_request(_bytes_field(2, b"\xff\xfe"))), "status:UNKNOWN"),
    ("wrong wire types for fields",
     lambda c: send_raw(c, raw_request(wrong_types_envelope())), "ack:INVALID_KEY"),
    ("payload not an object", lambda c: submit(c, envelope(payload=b"[1,2]")),
     "ack:INVALID_ARGUMENT"),
    ("args not a list", lambda c: submit(c, envelope(payload=b'{"args":"12"}')),
     "ack:INVALID_ARGUMENT"),
    ("deeply nested JSON", lambda c: submit(c, envelope(payload=b'{"args":' + b"[" * 100_000)),
     "ack:INVALID_ARGUMENT"),
    ("NaN in the arguments", lambda c: submit(c, envelope(payload=b'{"args":[NaN,1]}')),
     "ack:INVALID_ARGUMENT"),
    ("10 MiB payload", lambda c: submit(c, envelope(payload=b"x" * (10 * MIB))),
     "status:RESOURCE_EXHAUSTED"),
    ("2 MiB payload (under the message cap)",
     lambda c: submit(c, envelope(payload=b'{"args":["' + b"x" * (2 * MIB) + b'"]}')),
     "ack:PAYLOAD_TOO_LARGE"),
    ("100 KiB key", lambda c: submit(c, envelope(key="k" * 100 * 1024)), "ack:INVALID_KEY"),
    ("empty key", lambda c: submit(c, envelope(key="")), "ack:INVALID_KEY"),
    ("unknown task name", lambda c: submit(c, envelope(name="os.system")), "ack:UNKNOWN_TASK"),
    ("empty task id", lambda c: submit(c, envelope(task_id="")), "ack:INVALID_ARGUMENT"),
    ("control characters in the task id",
     lambda c: submit(c, envelope(task_id="t\x1b[2J\x1b[31mred\r\n")), "ack:INVALID_ARGUMENT"),
    ("a space in the task id", lambda c: submit(c, envelope(task_id="a b")),
     "ack:INVALID_ARGUMENT"),
    ("a retry with an app token", lambda c: submit(c, envelope(source=pb.SOURCE_RETRY)),
     "ack:PERMISSION_DENIED"),
    ("a replay with an app token", lambda c: submit(c, envelope(source=pb.SOURCE_REPLAY)),
     "ack:PERMISSION_DENIED"),
    ("negative timeout", lambda c: submit(c, envelope(timeout_s=-1.0)), "ack:INVALID_ARGUMENT"),
    ("huge timeout", lambda c: submit(c, envelope(timeout_s=1e12)), "ack:INVALID_ARGUMENT"),
    ("NaN timeout", lambda c: submit(c, envelope(timeout_s=math.nan)), "ack:INVALID_ARGUMENT"),
    ("infinite timeout", lambda c: submit(c, envelope(timeout_s=math.inf)),
     "ack:INVALID_ARGUMENT"),
    ("huge max_retries", lambda c: submit(c, envelope(max_retries=2**32 - 2)),
     "ack:INVALID_ARGUMENT"),
    ("attempt 0", lambda c: submit(c, envelope(attempt=0)), "ack:INVALID_ARGUMENT"),
    ("huge attempt", lambda c: submit(c, envelope(attempt=2**32 - 1)), "ack:INVALID_ARGUMENT"),
    ("huge priority", lambda c: submit(c, envelope(priority=2**31 - 1)), "ack:INVALID_ARGUMENT"),
    ("too many headers",
     lambda c: submit(c, envelope(headers={f"h{i}": "v" for i in range(100)})),
     "ack:INVALID_ARGUMENT"),
    ("pickle in payload, codec json", lambda c: pickle_in_payload(c, "json"),
     "ack:INVALID_ARGUMENT"),
    ("pickle in payload, codec pickle", lambda c: pickle_in_payload(c, "pickle"),
     "ack:INVALID_ARGUMENT"),
    ("10,000 tasks in one batch", lambda c: submit(c, *(envelope() for _ in range(10_000))),
     "ack:INVALID_ARGUMENT"),
    ("missing token",
     lambda c: send_raw(c, pb.SubmitRequest(tasks=[envelope()]).SerializeToString(), metadata=()),
     "status:UNAUTHENTICATED"),
    ("wrong token",
     lambda c: send_raw(c, pb.SubmitRequest(tasks=[envelope()]).SerializeToString(),
                        metadata=(("authorization", "Bearer guess"),)),
     "status:UNAUTHENTICATED"),
    ("client without the CA", without_ca, "status:UNAVAILABLE"),
]

SDK_CASES: list[tuple[str, Callable[[Cluster], object], type[RingpoolError]]] = [
    ("negative max_retries", lambda c: c.dispatch("k", Task("demo.add", (1, 2), max_retries=-1)),
     InvalidTask),
    ("negative timeout", lambda c: c.dispatch("k", Task("demo.add", (1, 2), timeout=-5)),
     InvalidTask),
    ("NaN timeout", lambda c: c.dispatch("k", Task("demo.add", (1, 2), timeout=math.nan)),
     InvalidTask),
    ("10 MiB argument", lambda c: c.dispatch("k", Task("demo.add", ("x" * 10 * MIB, 1))),
     PayloadTooLarge),
    ("100 KiB key", lambda c: c.dispatch("k" * 100 * 1024, Task("demo.add", (1, 2))), InvalidKey),
    ("pickled bytes as an argument", lambda c: c.dispatch("k", Task("demo.add", (b"\x80", 1))),
     InvalidTask),
]


def cluster_keys(redis_client: redis.Redis, cluster: str) -> set[bytes]:
    return set(redis_client.keys(f"*{cluster}*"))


def serves_a_normal_task(ctx: Ctx, client: Cluster) -> None:
    assert ctx.local.nodes["node-0"].alive(), ctx.local.nodes["node-0"].log_tail()
    assert client.dispatch(f"ok:{uuid.uuid4().hex}", Task("demo.add", args=(2, 3))).result(
        timeout=15) == 5


@pytest.mark.parametrize(("run", "expected"), [pytest.param(r, e, id=i) for i, r, e in CASES])
def test_hostile_input_gets_its_documented_error(
    ctx: Ctx, client: Cluster, redis_client: redis.Redis,
    run: Callable[[Ctx], Outcome], expected: Outcome,
) -> None:
    before = cluster_keys(redis_client, ctx.local.cluster)
    assert run(ctx) == expected
    assert cluster_keys(redis_client, ctx.local.cluster) - before == set()  # nothing written
    serves_a_normal_task(ctx, client)


@pytest.mark.parametrize(("call", "error"), [pytest.param(c, e, id=i) for i, c, e in SDK_CASES])
def test_sdk_refuses_locally(
    ctx: Ctx, client: Cluster, redis_client: redis.Redis,
    call: Callable[[Cluster], object], error: type[RingpoolError],
) -> None:
    before = cluster_keys(redis_client, ctx.local.cluster)
    with pytest.raises(error):
        call(client)
    assert cluster_keys(redis_client, ctx.local.cluster) - before == set()


def test_pending_per_stream_is_bounded(ctx: Ctx, client: Cluster, redis_client: redis.Redis) -> None:
    """Over ``--max-stream-pending`` a stream gets OVERLOADED with a retry-after, not memory."""
    tasks = [envelope(name="demo.sleep", key=f"slow:{i}", payload=b'{"args":[0.5]}')
             for i in range(STREAM_LIMIT + 6)]
    responses = ctx.stub().Submit(iter([pb.SubmitRequest(batch_id=1, tasks=tasks)]),
                                  timeout=30, metadata=AUTH)
    acks: dict[str, pb.Ack] = {}
    results: dict[str, pb.TaskResult] = {}
    deadline = time.monotonic() + 30
    for response in responses:  # the stream ends once every accepted task's result is pushed
        acks.update((a.task_id, a) for a in response.acks)
        results.update((r.task_id, r) for r in response.results)
        assert time.monotonic() < deadline
    accepted = [t for t, a in acks.items() if a.code == pb.ACCEPTED]
    overloaded = [a for a in acks.values() if a.code == pb.OVERLOADED]
    seen = sorted((pb.AckCode.Name(a.code), a.message) for a in acks.values())
    assert len(acks) == len(tasks), seen
    assert len(accepted) == STREAM_LIMIT, seen
    assert len(overloaded) == len(tasks) - STREAM_LIMIT, seen
    assert all(a.retry_after_s > 0 for a in overloaded)
    assert set(results) == set(accepted), [(r.task_id, r.state, r.error_message)
                                           for r in results.values()]
    keys = b" ".join(cluster_keys(redis_client, ctx.local.cluster))
    for ack in overloaded:
        assert ack.task_id.encode() not in keys
    serves_a_normal_task(ctx, client)


def test_a_new_task_with_a_taken_id_is_refused_not_written_over(
    ctx: Ctx, client: Cluster, redis_client: redis.Redis
) -> None:
    handle = client.dispatch(f"id:{uuid.uuid4().hex}", Task("demo.add", args=(1, 2)))
    assert handle.result(timeout=15) == 3
    record_key = Keys(ctx.local.cluster).task(handle.task_id)
    before = redis_client.hgetall(record_key)
    # Another task under that id: other arguments, a fresh idempotency key (one of the
    # slot the id carries, or the id would be refused as not its own).
    fresh = next(k for k in (uuid.uuid4().hex for _ in itertools.count())
                 if idempotent_slot("demo.add", k) == slot_of(handle.task_id))
    intruder = envelope(task_id=handle.task_id, payload=b'{"args":[40,2]}',
                        idempotency_key=fresh)
    reply = ctx.stub().SubmitBatch(pb.SubmitRequest(batch_id=1, tasks=[intruder]),
                                   timeout=30, metadata=AUTH)
    assert redis_client.hgetall(record_key) == before  # neither overwritten nor merged
    (ack,) = reply.acks
    assert (pb.AckCode.Name(ack.code), ack.state) == ("ID_TAKEN", pb.SUCCEEDED), ack
    assert client.handle(handle.task_id).result(timeout=5) == 3
    serves_a_normal_task(ctx, client)
