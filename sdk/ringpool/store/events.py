"""What the state store reports as it works: one seam for instrumentation.

The store always holds a ``StoreEvents``; this one does nothing. Metrics subclass it
and override the hooks they count (Dramatiq's middleware shape). Hooks run on the
event loop, so they must be quick and must not raise.
"""

from __future__ import annotations


class StoreEvents:
    def round_trip(self, op: str, seconds: float) -> None:
        """One script call of ``op`` (``accept``, ``transition``) took ``seconds``."""
