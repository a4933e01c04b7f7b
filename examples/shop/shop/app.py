"""The shop's application side (the web framework left out): it sends work to the
cluster and waits only where a page needs the answer."""

from __future__ import annotations

from typing import Any, Protocol

from ringpool import Task

from shop.tasks import PRICES, add_to_cart, cart, charge


class Dispatcher(Protocol):
    """What the shop needs of a cluster: a ``ringpool.Cluster``, or in tests an
    ``InMemoryCluster``."""

    def dispatch(self, key: str, task: Task) -> Any: ...


def customer_key(customer: str) -> str:
    return f"customer:{customer}"


class Shop:
    def __init__(self, cluster: Dispatcher, wait_s: float = 10.0) -> None:
        self.cluster = cluster
        self.wait_s = wait_s

    def add(self, customer: str, sku: str, quantity: int = 1) -> dict[str, int]:
        """Add to (or, with a negative quantity, take from) the customer's cart."""
        handle = self.cluster.dispatch(customer_key(customer), add_to_cart.s(customer, sku, quantity))
        return handle.result(timeout=self.wait_s)  # type: ignore[no-any-return]

    def total(self, customer: str) -> int:
        """The cart's total in cents."""
        lines = self.cluster.dispatch(customer_key(customer), cart.s(customer)).result(
            timeout=self.wait_s)
        return sum(PRICES[sku] * quantity for sku, quantity in lines.items())

    def checkout(self, customer: str, order_id: str, card: str) -> Any:
        """Charge the cart's total once per order id (a second click is the same order);
        returns the payment's handle: the page polls ``status()``."""
        payment = charge.s(order_id, card, self.total(customer))
        return self.cluster.dispatch(customer_key(customer),
                                     payment.with_options(idempotency_key=order_id))
