"""A fallback chain: provider A, then provider B, then an offline callable (the OCR route).

Each step is tried once its predecessor failed with a ProviderError (circuit open, retries
exhausted, budget refused, schema failed twice). Other exceptions are bugs and propagate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from mmflow.tasks.provider.errors import ProviderError

R = TypeVar("R")


@dataclass
class FallbackOutcome(Generic[R]):
    """The first value obtained, which step gave it, and why the earlier steps did not."""

    value: R
    source: str
    failures: list[tuple[str, ProviderError]] = field(default_factory=list)

    @property
    def fell_back(self) -> bool:
        return bool(self.failures)


def run_fallback_chain(
    steps: Sequence[tuple[str, Callable[[], R]]],
    offline: tuple[str, Callable[[], R]],
) -> FallbackOutcome[R]:
    """Try each (name, call) in order; the offline step runs last and is never skipped."""
    failures: list[tuple[str, ProviderError]] = []
    for name, call in steps:
        try:
            return FallbackOutcome(call(), name, failures)
        except ProviderError as exc:
            failures.append((name, exc))
    name, call = offline
    return FallbackOutcome(call(), name, failures)
