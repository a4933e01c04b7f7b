"""The shop's tests: ringpool's pytest plugin runs the tasks in this process, on an
in-memory cluster (``ringpool_cluster``), so they need no ZooKeeper, Redis or Java."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from ringpool import InvalidTask, TaskFailed
from ringpool.testing import InMemoryCluster

from shop import tasks
from shop.app import Shop, customer_key


class FakeGateway:
    """Fails the first ``outages`` charges as a gateway outage, then accepts every card."""

    def __init__(self, outages: int = 0) -> None:
        self.outages = outages
        self.charges: list[tuple[str, int]] = []

    def charge(self, card: str, cents: int) -> str:
        if self.outages:
            self.outages -= 1
            raise tasks.GatewayDown("gateway timed out")
        self.charges.append((card, cents))
        return f"rcpt-{len(self.charges)}"


@pytest.fixture(autouse=True)
def empty_carts() -> Iterator[None]:
    yield
    tasks.carts.clear()


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> FakeGateway:
    fake = FakeGateway()
    monkeypatch.setattr(tasks, "gateway", fake)
    return fake


@pytest.fixture
def shop(ringpool_cluster: InMemoryCluster) -> Shop:
    return Shop(ringpool_cluster)


def test_a_cart_adds_up(shop: Shop) -> None:
    shop.add("ann", "tea", 2)
    assert shop.add("ann", "mug") == {"tea": 2, "mug": 1}
    assert shop.add("ann", "tea", -2) == {"mug": 1}
    assert shop.total("ann") == 1290


def test_a_customers_tasks_all_run_on_the_node_that_owns_them(
    shop: Shop, ringpool_cluster: InMemoryCluster
) -> None:
    shop.add("bob", "honey")
    handle = ringpool_cluster.dispatch(customer_key("bob"), tasks.cart.s("bob"))
    record = ringpool_cluster.record(handle.task_id)
    assert record is not None and record.node == ringpool_cluster.owner(customer_key("bob"))


def test_cart_changes_apply_in_the_order_they_were_sent(ringpool_cluster: InMemoryCluster) -> None:
    changes = [tasks.add_to_cart.s("cy", "tea", n) for n in (5, -2, 3, -6)]
    handles = ringpool_cluster.dispatch_many([(customer_key("cy"), c) for c in changes])
    assert [h.result() for h in handles] == [{"tea": 5}, {"tea": 3}, {"tea": 6}, {}]


def test_checkout_charges_the_cart_total(shop: Shop, gateway: FakeGateway) -> None:
    shop.add("dee", "tea", 2)
    payment = shop.checkout("dee", "order-1", "4242")
    assert payment.result()["cents"] == 900
    assert gateway.charges == [("4242", 900)]


def test_an_order_sent_twice_is_charged_once(shop: Shop, gateway: FakeGateway) -> None:
    shop.add("eve", "mug")
    first = shop.checkout("eve", "order-2", "4242")
    again = shop.checkout("eve", "order-2", "4242")
    assert again.task_id == first.task_id
    assert gateway.charges == [("4242", 1290)]


def test_a_gateway_outage_is_retried_with_backoff(
    shop: Shop, gateway: FakeGateway, ringpool_cluster: InMemoryCluster
) -> None:
    gateway.outages = 2
    shop.add("fay", "honey")
    payment = shop.checkout("fay", "order-3", "4242")
    assert payment.status() == "RETRY_SCHEDULED"
    ringpool_cluster.advance(2 + 4)  # the backoff's longest waits after failures 1 and 2
    assert payment.status() == "SUCCEEDED"
    record = ringpool_cluster.record(payment.task_id)
    assert record is not None and record.attempt == 3 and record.error_type == "GatewayDown"
    assert gateway.charges == [("4242", 800)]


def test_a_declined_card_goes_to_the_dlq_and_can_be_replayed(
    shop: Shop, ringpool_cluster: InMemoryCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop.add("gus", "tea")
    payment = shop.checkout("gus", "order-4", "4000000000000002")
    with pytest.raises(TaskFailed) as declined:
        payment.result()
    assert (declined.value.error_type, declined.value.attempts) == ("CardDeclined", 1)
    assert [r.task_id for r in ringpool_cluster.dlq()] == [payment.task_id]
    monkeypatch.setattr(tasks, "gateway", FakeGateway())  # the bank lifted the block
    assert ringpool_cluster.dlq_replay(payment.task_id) == 1
    assert payment.result()["receipt"] == "rcpt-1"
    assert ringpool_cluster.dlq() == []


@pytest.mark.ringpool(mode="queued")
def test_a_payment_waits_for_the_workers_in_queued_mode(
    shop: Shop, gateway: FakeGateway, ringpool_cluster: InMemoryCluster
) -> None:
    shop.add("hal", "mug")  # waiting for a result runs what is queued
    payment = shop.checkout("hal", "order-5", "4242")
    assert payment.status() == "QUEUED" and gateway.charges == []
    assert ringpool_cluster.run_pending() == 1
    assert payment.status() == "SUCCEEDED" and gateway.charges == [("4242", 1290)]


def test_what_is_not_json_is_refused_when_sent(shop: Shop) -> None:
    with pytest.raises(InvalidTask):
        shop.add("ivy", "tea", Decimal(1))  # type: ignore[arg-type]
