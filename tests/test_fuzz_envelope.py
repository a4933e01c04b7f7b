"""Fuzz the node boundary: envelope decoding, ``validate`` and ``decode_call``.

Whatever arrives, the only exceptions are typed: ``DispatchError`` subclasses from
our checks and ``DecodeError`` from protobuf. Bounded (``max_examples``) so that it
runs in CI in a few seconds.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ringpool.core import codec
from ringpool.core.envelope import DEFAULT_LIMITS, Limits, validate
from ringpool.errors import DispatchError
from ringpool.v1 import node_pb2 as pb

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
SMALL = Limits(max_payload_bytes=256, max_key_bytes=16, max_headers=2, max_header_bytes=32,
               max_idempotency_key_bytes=16, max_name_bytes=16)

text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=20,
)
payloads = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.builds(lambda a, k: json.dumps({"args": a, "kwargs": k}).encode(),
              json_values, json_values),
    st.integers(1, 5000).map(lambda depth: b'{"args":' + b"[" * depth),
    st.sampled_from([b"NaN", b'{"args":[Infinity]}', b"\xff\xfe", b"", b"{}", b'{"x":1}']),
)
envelopes = st.builds(
    pb.TaskEnvelope,
    task_id=text, key=text, name=text, payload=payloads,
    codec=st.sampled_from(["json", "pickle", "", "JSON", "msgpack"]) | text,
    idempotency_key=text,
    attempt=st.integers(0, 2**32 - 1), max_retries=st.integers(0, 2**32 - 1),
    timeout_s=st.floats(allow_nan=True, allow_infinity=True),
    priority=st.integers(-(2**31), 2**31 - 1), ordered=st.booleans(),
    headers=st.dictionaries(text, text, max_size=4),
    ring_version=st.integers(0, 2**64 - 1), source=st.sampled_from([0, 1, 2, 7]),
)


def check_boundary(envelope: pb.TaskEnvelope, limits: Limits) -> None:
    """What a node does with one envelope: typed refusal or a valid call, nothing else."""
    try:
        validate(envelope, limits, decode_payload=False)
        args, kwargs = codec.decode_call(envelope.payload)
    except DispatchError:
        return
    assert isinstance(args, list) and isinstance(kwargs, dict)
    assert len(envelope.payload) <= limits.max_payload_bytes
    assert 0 <= envelope.timeout_s <= 24 * 3600


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    for message in (pb.TaskEnvelope, pb.SubmitRequest):
        try:
            parsed: Any = message.FromString(data)
        except DecodeError:
            continue
        for envelope in parsed.tasks if isinstance(parsed, pb.SubmitRequest) else [parsed]:
            check_boundary(envelope, DEFAULT_LIMITS)


@FUZZ
@given(envelopes, st.sampled_from([DEFAULT_LIMITS, SMALL]))
def test_random_fields_are_refused_with_a_typed_error(
    envelope: pb.TaskEnvelope, limits: Limits
) -> None:
    check_boundary(envelope, limits)
    # And the same envelope after a round trip on the wire.
    check_boundary(pb.TaskEnvelope.FromString(envelope.SerializeToString()), limits)


@FUZZ
@given(payloads)
def test_decode_call_raises_only_invalid_task(data: bytes) -> None:
    try:
        args, kwargs = codec.decode_call(data)
    except DispatchError:
        return
    assert isinstance(args, list) and isinstance(kwargs, dict)
    # What decodes encodes again: a node never holds a value it cannot store.
    codec.encode_call(args, kwargs)


@FUZZ
@given(st.binary(max_size=64), st.integers(0, 40))
def test_mutated_valid_envelopes(noise: bytes, position: int) -> None:
    """Bytes of a valid envelope with noise spliced in: typed errors only."""
    valid = pb.TaskEnvelope(task_id="a" * 32, key="user:1", name="demo.add",
                            payload=b'{"args":[1,2],"kwargs":{}}', codec="json", attempt=1)
    data = valid.SerializeToString()
    position = min(position, len(data))
    try:
        envelope = pb.TaskEnvelope.FromString(data[:position] + noise + data[position:])
    except DecodeError:
        return
    check_boundary(envelope, DEFAULT_LIMITS)
