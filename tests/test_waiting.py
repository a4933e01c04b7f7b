"""Waiting on a condition with a deadline: the launcher's ``wait_until`` and the tests'
``eventually`` both say what they waited for and chain the last error the check raised."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ringpool.errors import ClusterUnavailable
from ringpool.testing.local import wait_until
from tests.helpers import eventually


def failing_check() -> tuple[list[int], Callable[[], bool]]:
    attempts: list[int] = []

    def check() -> bool:
        attempts.append(1)
        raise ValueError(f"attempt {len(attempts)}")

    return attempts, check


def test_wait_until_chains_the_last_error_it_saw() -> None:
    attempts, check = failing_check()
    with pytest.raises(ClusterUnavailable, match=r"waiting for the thing \(last error: ValueError"
                       ) as caught:
        wait_until(check, 0.2, "the thing", 0.01)
    assert isinstance(caught.value.__cause__, ValueError)
    assert str(caught.value.__cause__) == f"attempt {len(attempts)}"
    with pytest.raises(ClusterUnavailable) as quiet:
        wait_until(lambda: False, 0.05, "nothing", 0.01)
    assert quiet.value.__cause__ is None
    assert str(quiet.value) == "timed out after 0s waiting for nothing"


def test_eventually_chains_the_last_error_and_returns_the_value() -> None:
    attempts, check = failing_check()
    with pytest.raises(AssertionError, match="waiting for the thing: attempt") as caught:
        eventually(check, 0.2, "the thing", 0.01)
    assert str(caught.value.__cause__) == f"attempt {len(attempts)}"
    assert eventually(lambda: 42, 1, "an answer") == 42
