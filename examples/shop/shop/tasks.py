"""The shop's tasks. Nodes load them with ``ringpool-node --tasks shop.tasks``.

Every task of one customer is dispatched with the key ``customer:<id>``, so it runs on
the node that owns that key: the customer's cart can live in that node's memory,
and ``ordered=True`` runs one customer's cart changes one at a time, in order.
"""

from __future__ import annotations

import uuid
from typing import Protocol

from ringpool import PermanentError, RetryPolicy, task

PRICES = {"tea": 450, "mug": 1290, "honey": 800}  # cents


class GatewayDown(Exception):
    """The payment gateway did not answer: worth another try."""


class CardDeclined(PermanentError):
    """The bank refused the card: no retry changes that."""


class Gateway(Protocol):
    def charge(self, card: str, cents: int) -> str:
        """A receipt id; raises GatewayDown or CardDeclined."""
        ...


class SandboxGateway:
    """A payment sandbox: declines cards that start with 4000, accepts the others."""

    def charge(self, card: str, cents: int) -> str:
        if card.startswith("4000"):
            raise CardDeclined(f"card ending in {card[-4:]} was declined")
        return f"rcpt-{uuid.uuid4().hex[:12]}"


gateway: Gateway = SandboxGateway()  # what charge() calls; tests put a fake here
carts: dict[str, dict[str, int]] = {}  # this node's customers' carts: sku -> quantity


@task("shop.add_to_cart", timeout=5.0, ordered=True)
def add_to_cart(customer: str, sku: str, quantity: int) -> dict[str, int]:
    if sku not in PRICES:
        raise PermanentError(f"no such product: {sku}")
    cart = carts.setdefault(customer, {})
    cart[sku] = cart.get(sku, 0) + quantity
    if cart[sku] <= 0:
        del cart[sku]
    return dict(cart)


@task("shop.cart", timeout=5.0, ordered=True)
def cart(customer: str) -> dict[str, int]:
    return dict(carts.get(customer, {}))


@task("shop.charge", timeout=30.0, retry=RetryPolicy(max_retries=4, base_s=2.0, cap_s=60.0))
def charge(order_id: str, card: str, cents: int) -> dict[str, object]:
    return {"order_id": order_id, "cents": cents, "receipt": gateway.charge(card, cents)}
