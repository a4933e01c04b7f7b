"""``KeyChains``: when a key's ordered tickets may go, so that none overtakes another.

The ordered tickets (``ordered=True``) of one key form a chain that is in flight
on one link at a time: while some are unanswered, the key's next ones wait here.
One answered with a resend code stalls the chain. The node gives the same answer
to the chain's later tickets already on the wire (``KeyFences`` on the node), so
all of them come back; the chain then goes again, in dispatch order, after its
back-off. A resend thus never overtakes a later task of its key, across batches
in flight, re-routes and broken streams alike.

Bookkeeping only, on the Router's loop: the Router sends what ``KeyChains`` lets go.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ringpool.client.tickets import Ticket


@dataclass(slots=True)
class Release:
    """A key's chain with nothing left in flight: the tickets that may go now."""

    key: str
    tickets: list[Ticket]
    resend: bool = False  # True: only after delay_s, and a ring refresh when newest is set
    delay_s: float = 0.0
    newest: int | None = None  # a ring version a node told of


@dataclass(slots=True)
class _Chain:
    sent: int = 0  # queued on a link or in flight there, not answered yet
    stalled: bool = False  # one was answered with a resend code
    parked: list[Ticket] = field(default_factory=list)
    delay_s: float = 0.0
    newest: int | None = None


class KeyChains:
    def __init__(self) -> None:
        self._chains: dict[str, _Chain] = {}

    def admit(self, key: str, tickets: list[Ticket]) -> bool:
        """True: send these now (the key has nothing in flight); else they wait here."""
        chain = self._chains.get(key)
        if chain is None:
            chain = self._chains[key] = _Chain()
        if chain.sent or chain.stalled:
            chain.parked += tickets
            return False
        chain.sent += len(tickets)
        return True

    def answered(self, ticket: Ticket) -> Release | None:
        """``ticket`` was answered for good (or given up on)."""
        chain = self._chains[ticket.key]
        chain.sent -= 1
        return None if chain.sent else self._idle(ticket.key, chain)

    def answered_again(self, ticket: Ticket, delay_s: float, newest: int | None
                       ) -> Release | None:
        """``ticket`` must be sent again: the chain stalls until all of it is back."""
        chain = self._chains[ticket.key]
        chain.sent -= 1
        chain.stalled = True
        chain.parked.append(ticket)
        chain.delay_s = max(chain.delay_s, delay_s)
        if newest is not None:
            chain.newest = max(chain.newest or 0, newest)
        return None if chain.sent else self._idle(ticket.key, chain)

    def resume(self, key: str) -> list[Ticket]:
        """A stalled chain's back-off is over: all its waiting tickets, in dispatch order."""
        chain = self._chains[key]
        chain.stalled = False
        tickets = sorted((t for t in chain.parked if not t.done), key=lambda t: t.seq)
        chain.parked = []
        if not tickets:
            del self._chains[key]
        return tickets

    def _idle(self, key: str, chain: _Chain) -> Release | None:
        if chain.stalled:
            release = Release(key, list(chain.parked), True, chain.delay_s, chain.newest)
            chain.delay_s, chain.newest = 0.0, None
            return release
        parked, chain.parked = [t for t in chain.parked if not t.done], []
        if not parked:
            del self._chains[key]
            return None
        return Release(key, parked)
