"""Spend limits checked before a call is sent: per request and per run, safe across threads.

A call is admitted by reserving its pre-flight estimate (an upper bound: the output side uses
the max-tokens limit actually sent), so parallel calls cannot jointly overspend. After the call
the reservation is replaced by the billed cost. Nothing is ever refused after it was spent.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from decimal import Decimal

from mmflow.tasks.provider.errors import BudgetExceeded

# OpenAI's rule of thumb for English text; no tokenizer ships offline for every provider.
CHARS_PER_TOKEN = 4


def estimate_text_tokens(text: str) -> int:
    """Rough token count of text (about 4 characters a token), rounded up."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


@dataclass(frozen=True)
class Reservation:
    """Money held for one admitted call until it is settled or released."""

    id: int
    amount_usd: Decimal


@dataclass
class Budget:
    """Per-request and per-run USD limits (None = no limit); records what was spent."""

    max_usd_per_request: Decimal | None = None
    max_usd_per_run: Decimal | None = None
    spent_usd: Decimal = Decimal("0")
    calls: int = 0
    _held: dict[int, Decimal] = field(default_factory=dict, repr=False)
    _next_id: int = field(default=0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def reserved_usd(self) -> Decimal:
        with self._lock:
            return sum(self._held.values(), Decimal("0"))

    def remaining_usd(self) -> Decimal | None:
        """What the run may still spend, holds included; None when the run has no limit."""
        with self._lock:
            return self._remaining_locked()

    def _remaining_locked(self) -> Decimal | None:
        if self.max_usd_per_run is None:
            return None
        return self.max_usd_per_run - self.spent_usd - sum(self._held.values(), Decimal("0"))

    def _refusal_locked(self, amount_usd: Decimal) -> str | None:
        if self.max_usd_per_request is not None and amount_usd > self.max_usd_per_request:
            return (
                f"estimate ${amount_usd:.6f} is over the per-request limit "
                f"${self.max_usd_per_request}"
            )
        remaining = self._remaining_locked()
        if remaining is not None and amount_usd > remaining:
            return f"estimate ${amount_usd:.6f} is over the ${remaining:.6f} left in this run"
        return None

    def refusal(self, amount_usd: Decimal) -> str | None:
        """Why a call of this estimate would be refused now, or None if it fits."""
        with self._lock:
            return self._refusal_locked(amount_usd)

    def reserve(self, amount_usd: Decimal) -> Reservation:
        """Hold `amount_usd` or raise BudgetExceeded; check and hold happen under one lock."""
        with self._lock:
            reason = self._refusal_locked(amount_usd)
            if reason is not None:
                raise BudgetExceeded(
                    reason, estimate_usd=amount_usd, remaining_usd=self._remaining_locked()
                )
            self._next_id += 1
            self._held[self._next_id] = amount_usd
            return Reservation(self._next_id, amount_usd)

    def settle(self, reservation: Reservation, actual_usd: Decimal) -> None:
        """Replace the hold with the billed cost (which may differ from the estimate)."""
        with self._lock:
            self._held.pop(reservation.id, None)
            self.spent_usd += actual_usd
            self.calls += 1

    def release(self, reservation: Reservation) -> None:
        """Drop a hold for a call that was never billed (refused, failed before an answer)."""
        with self._lock:
            self._held.pop(reservation.id, None)
