"""The outcome decision nodes and the in-memory cluster share (``ringpool.core.outcomes``)."""

from __future__ import annotations

from typing import Any

import pytest

from ringpool import InvalidTask, PermanentError, Retry, RetryPolicy, task
from ringpool.core import envelope as envelopes
from ringpool.core.outcomes import (
    MAX_ERROR_CHARS,
    check_arguments,
    conclude,
    max_retries_of,
    retry_policy,
)
from ringpool.pool import Outcome
from ringpool.v1 import node_pb2 as pb

POLICY = RetryPolicy(max_retries=2, base_s=1.0, factor=2.0, cap_s=3.0)


@task("outcomes.pair", timeout=5.0, retry=POLICY)
def pair(a: int, b: int = 0) -> list[int]:
    return [a, b]


@task("outcomes.plain", timeout=5.0)
def plain() -> None:
    return None


def envelope(attempt: int = 1, max_retries: int | None = None) -> pb.TaskEnvelope:
    built = envelopes.build("k", pair.s(1).with_options(max_retries=max_retries), 1)
    built.attempt = attempt
    return built


def failed(error: BaseException) -> Outcome:
    return Outcome.failure(error)


def test_a_json_value_succeeds() -> None:
    verdict = conclude(envelope(), Outcome(ok=True, value={"a": [1, 2.5]}), POLICY)
    assert (verdict.op, verdict.result) == ("ok", b'{"a":[1,2.5]}')


def test_a_value_that_is_not_json_is_dead_at_once() -> None:
    verdict = conclude(envelope(), Outcome(ok=True, value={1, 2}), POLICY)
    assert (verdict.op, verdict.error_type, verdict.dead_reason) == (
        "dead", "ResultNotSerializable", "permanent")


@pytest.mark.parametrize("attempt", [1, 2])
def test_a_failure_with_attempts_left_backs_off_within_the_policy(attempt: int) -> None:
    for _ in range(50):
        verdict = conclude(envelope(attempt), failed(ValueError("boom")), POLICY)
        assert verdict.op == "retry" and verdict.error_type == "ValueError"
        assert 0 <= verdict.retry_in_s <= POLICY.ceiling_s(attempt)
    assert "boom" in verdict.traceback


def test_the_last_attempt_goes_to_the_dlq() -> None:
    verdict = conclude(envelope(3), failed(ValueError("boom")), POLICY)
    assert (verdict.op, verdict.dead_reason) == ("dead", "retries exhausted")


def test_the_envelopes_max_retries_beats_the_policy() -> None:
    assert max_retries_of(envelope(max_retries=5), POLICY) == 5
    assert max_retries_of(envelope(), POLICY) == 2
    assert conclude(envelope(3, max_retries=5), failed(ValueError()), POLICY).op == "retry"
    assert conclude(envelope(1, max_retries=0), failed(ValueError()), POLICY).op == "dead"


@pytest.mark.parametrize(("countdown", "expected"), [(7.5, 7.5), (-1.0, 0.0)])
def test_retry_sets_its_own_wait(countdown: float, expected: float) -> None:
    verdict = conclude(envelope(), failed(Retry(countdown=countdown)), POLICY)
    assert (verdict.op, verdict.retry_in_s) == ("retry", expected)


def test_retry_counts_as_an_attempt() -> None:
    assert conclude(envelope(3), failed(Retry(countdown=1)), POLICY).op == "dead"


def test_a_permanent_error_is_dead_with_attempts_left() -> None:
    verdict = conclude(envelope(), failed(PermanentError("never")), POLICY)
    assert (verdict.op, verdict.dead_reason, verdict.error_message) == ("dead", "permanent", "never")


def test_error_text_is_capped() -> None:
    verdict = conclude(envelope(3), failed(ValueError("x" * (MAX_ERROR_CHARS * 2))), POLICY)
    assert len(verdict.error_message) == MAX_ERROR_CHARS
    assert len(verdict.traceback) == MAX_ERROR_CHARS


def test_the_cluster_default_policy_applies_to_tasks_that_declare_none() -> None:
    default = RetryPolicy(max_retries=9)
    assert retry_policy(plain, default) is default
    assert retry_policy(pair, default) is POLICY
    assert retry_policy(plain, None) == RetryPolicy()


@pytest.mark.parametrize(("args", "kwargs"), [([], {}), ([1, 2, 3], {}), ([1], {"c": 1}),
                                              ([1], {"a": 1})])
def test_arguments_that_do_not_bind_are_invalid(args: list[Any], kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidTask, match=r"outcomes\.pair"):
        check_arguments(pair, args, kwargs)


def test_arguments_that_bind_pass() -> None:
    check_arguments(pair, [1], {"b": 2})
    check_arguments(pair, [], {"a": 1})
