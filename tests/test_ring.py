"""Ring properties: agreement, minimal movement, balance, and the versioned route cache."""

from __future__ import annotations

import statistics
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringpool.core.ring import Member, Ring, RouteCache
from ringpool.errors import NoNodesAvailable


def ring_of(ids: list[str], version: int = 1, weights: dict[str, float] | None = None) -> Ring:
    weights = weights or {}
    return Ring(
        {i: Member(i, f"127.0.0.1:{n}", weights.get(i, 1.0)) for n, i in enumerate(ids)},
        version=version,
    )


node_ids = st.lists(
    st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12),
    min_size=2, max_size=12, unique=True,
)
SAMPLE = [f"key:{i}" for i in range(100_000)]


def test_empty_ring_raises_typed_error() -> None:
    with pytest.raises(NoNodesAvailable):
        Ring({}).owner("k")


@given(node_ids, st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=50))
@settings(max_examples=50, deadline=None)
def test_member_order_does_not_change_owners(ids: list[str], keys: list[str]) -> None:
    a, b = ring_of(ids), ring_of(list(reversed(ids)))
    assert [a.owner(k) for k in keys] == [b.owner(k) for k in keys]


def test_two_processes_agree_on_every_owner() -> None:
    ids = [f"node-{i}" for i in range(5)]
    keys = [f"user:{i}" for i in range(2000)]
    script = (
        "import sys, json; from ringpool.core.ring import Ring, Member;"
        f"r = Ring({{i: Member(i, 'a') for i in {ids!r}}});"
        f"print(json.dumps([r.owner(k) for k in {keys!r}]))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, check=True, text=True)
    here = ring_of(ids)
    assert out.stdout.strip() == str([here.owner(k) for k in keys]).replace("'", '"')


@given(node_ids)
@settings(max_examples=15, deadline=None)
def test_join_moves_only_keys_to_the_newcomer_and_about_one_nth(ids: list[str]) -> None:
    before = ring_of(ids)
    after = ring_of([*ids, "newcomer"])
    keys = SAMPLE[:20_000]
    moved = [k for k in keys if before.owner(k) != after.owner(k)]
    assert all(after.owner(k) == "newcomer" for k in moved)


@given(node_ids)
@settings(max_examples=15, deadline=None)
def test_leave_gives_away_only_the_leavers_keys(ids: list[str]) -> None:
    before = ring_of(ids)
    leaver = ids[0]
    after = ring_of(ids[1:])
    for key in SAMPLE[:20_000]:
        if before.owner(key) != leaver:
            assert after.owner(key) == before.owner(key)


@pytest.mark.parametrize("n", [2, 5, 10])
def test_moved_fraction_on_join_is_within_15_percent_of_ideal(n: int) -> None:
    ids = [f"node-{i}" for i in range(n)]
    before, after = ring_of(ids), ring_of([*ids, f"node-{n}"])
    moved = sum(before.owner(k) != after.owner(k) for k in SAMPLE) / len(SAMPLE)
    ideal = 1 / (n + 1)
    assert abs(moved - ideal) <= 0.15 * ideal, (moved, ideal)


@pytest.mark.parametrize("n", [2, 5, 10])
def test_moved_fraction_on_leave_is_within_15_percent_of_ideal(n: int) -> None:
    ids = [f"node-{i}" for i in range(n + 1)]
    before, after = ring_of(ids), ring_of(ids[:-1])
    moved = sum(before.owner(k) != after.owner(k) for k in SAMPLE) / len(SAMPLE)
    ideal = 1 / (n + 1)
    assert abs(moved - ideal) <= 0.15 * ideal, (moved, ideal)


def test_balance_at_ten_members_over_a_million_keys() -> None:
    ring = ring_of([f"node-{i}" for i in range(10)])
    counts = Counter(ring.owner(f"k{i}") for i in range(1_000_000))
    assert len(counts) == 10
    assert max(counts.values()) / statistics.mean(counts.values()) <= 1.25


def test_weights_scale_the_share() -> None:
    ring = ring_of(["a", "b"], weights={"a": 3.0})
    shares = ring.shares()
    assert shares["a"] == pytest.approx(0.75, abs=0.08)
    assert sum(shares.values()) == pytest.approx(1.0)


def test_route_cache_serves_an_entry_only_at_its_version() -> None:
    cache = RouteCache()
    v1 = ring_of(["a", "b"], version=1)
    keys = [f"k{i}" for i in range(500)]
    assert [cache.owner(v1, k) for k in keys] == [v1.owner(k) for k in keys]
    v2 = ring_of(["a", "b", "c"], version=2)
    assert [cache.owner(v2, k) for k in keys] == [v2.owner(k) for k in keys]
    assert any(cache.owner(v2, k) == "c" for k in keys)


def test_route_cache_is_bounded() -> None:
    cache = RouteCache(max_entries=100)
    ring = ring_of(["a", "b"])
    for i in range(1000):
        assert cache.owner(ring, f"k{i}") == ring.owner(f"k{i}")
    assert len(cache._entries) <= 100


# -- task groups ----------------------------------------------------------------------------


def grouped(members: dict[str, tuple[str, set[str] | None]], version: int = 7) -> Ring:
    """A ring of node id -> (group, task names it serves)."""
    return Ring({n: Member(n, f"{n}:1", group=g, tasks=None if t is None else frozenset(t))
                 for n, (g, t) in members.items()}, version=version)


def test_without_groups_the_default_groups_ring_is_the_ring() -> None:
    ring = ring_of(["a", "b", "c"])
    assert ring.group("") is ring
    assert list(ring.groups) == [""]
    assert ring.group_for("any.task") == ""
    assert len(ring.group("gpu")) == 0 and ring.group("gpu").version == ring.version


def test_each_group_has_its_own_ring_at_the_same_version() -> None:
    ring = grouped({"a": ("", {"t.cpu"}), "b": ("", {"t.cpu"}), "g1": ("gpu", {"t.gpu"}),
                    "g2": ("gpu", {"t.gpu"})})
    assert sorted(ring.groups) == ["", "gpu"]
    gpu, default = ring.group("gpu"), ring.group("")
    assert set(gpu.members) == {"g1", "g2"} and set(default.members) == {"a", "b"}
    assert gpu.version == default.version == ring.version
    assert {gpu.owner(k) for k in SAMPLE[:2000]} == {"g1", "g2"}
    assert {default.owner(k) for k in SAMPLE[:2000]} == {"a", "b"}
    # A group's ring is the ring those members alone would make: keys stay put across groups.
    alone = Ring({n: ring.members[n] for n in ("g1", "g2")}, version=1)
    assert all(gpu.owner(k) == alone.owner(k) for k in SAMPLE[:2000])


def test_a_task_goes_to_the_group_it_declares_else_the_one_that_serves_it() -> None:
    ring = grouped({"a": ("", {"shared", "plain"}), "g": ("gpu", {"shared", "infer"}),
                    "t": ("tpu", {"train"})})
    assert ring.group_for("infer") == "gpu"
    assert ring.group_for("train") == "tpu"
    assert ring.group_for("shared") == ""  # served by two groups: the default one first
    assert ring.group_for("unknown") == ""
    assert ring.group_for("plain", declared="gpu") == "gpu"
    only_gpu = grouped({"g": ("gpu", None)})
    assert only_gpu.group_for("anything") == "gpu"  # the only group there is
