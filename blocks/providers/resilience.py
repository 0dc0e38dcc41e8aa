"""Failure handling matched to the failure: backoff for 429/5xx, retry for timeouts, no retry
for other 4xx, and a circuit breaker per provider. Time is injected (`Clock`) so tests never wait.

The SDKs' own retries are switched off (max_retries=0): this module is the one policy in force.
"""

from __future__ import annotations

import email.utils
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, Field

from mmflow.tasks.provider.errors import (
    HEALTH_FAILURES,
    CircuitOpen,
    FailureKind,
    ProviderCallFailed,
)

R = TypeVar("R")


class Clock(Protocol):
    """Monotonic time for the breaker, wall time for HTTP dates, and the one way to wait."""

    def monotonic(self) -> float: ...

    def time(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


# ---------------------------------------------------------------- classifying a failure

_CONTEXT_LIMIT = re.compile(
    r"context[_ ]length|context window|maximum context|prompt is too long|too many tokens"
    r"|tokens? > \d+ maximum|reduce the length|input is too long|max_tokens",
    re.IGNORECASE,
)


def parse_retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `retry-after` as seconds or an HTTP date."""
    lowered = {k.lower(): v for k, v in headers.items()}
    ms = lowered.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def _error_fields(body: object) -> tuple[str, str, str]:
    """(message, type, code) from an OpenAI `{"error": {...}}` or Anthropic error body."""
    error: Any = body
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        error = body["error"]
    if not isinstance(error, Mapping):
        return (str(body) if body is not None else "", "", "")
    return (
        str(error.get("message") or ""),
        str(error.get("type") or ""),
        str(error.get("code") or ""),
    )


def classify_http_failure(
    status: int, headers: Mapping[str, str], body: object, now: float
) -> ProviderCallFailed:
    """Map an HTTP error answer to the failure kind whose recovery applies."""
    message, err_type, code = _error_fields(body)
    retry_after = parse_retry_after(headers, now)
    text = f"{message} [{err_type or '-'}/{code or '-'}]"
    if status == 429:
        # Out of money is a 429 too, but waiting will not fix it.
        if code == "insufficient_quota" or "spend_limit" in code:
            return ProviderCallFailed(
                FailureKind.CLIENT_ERROR, text, status=status, retryable=False
            )
        kind = FailureKind.RATE_LIMITED
    elif status >= 500:
        kind = FailureKind.SERVER_ERROR
    elif status == 408:
        kind = FailureKind.TIMEOUT
    elif status in (400, 413) and (
        code in ("context_length_exceeded", "string_above_max_length")
        or _CONTEXT_LIMIT.search(message)
    ):
        kind = FailureKind.CONTEXT_LIMIT
    else:
        kind = FailureKind.CLIENT_ERROR
    retryable: bool | None = None
    should_retry = {k.lower(): v for k, v in headers.items()}.get("x-should-retry")
    if should_retry in ("true", "false") and kind is not FailureKind.CONTEXT_LIMIT:
        retryable = should_retry == "true"  # the server's explicit word wins, as in the SDKs
    return ProviderCallFailed(
        kind, text, status=status, retry_after=retry_after, retryable=retryable
    )


# ---------------------------------------------------------------- retry policy


class RetryPolicy(BaseModel):
    """Exponential backoff with jitter; a server's Retry-After is a floor, not a suggestion."""

    max_retries: int = Field(default=4, ge=0)
    base_delay_s: float = Field(default=1.0, gt=0)
    max_delay_s: float = Field(default=60.0, gt=0)
    # A server asking for a longer wait than this is treated as down: fail over instead.
    max_retry_after_s: float = Field(default=120.0, gt=0)

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Wait before retry number `attempt` (1-based)."""
        if retry_after is not None:
            return retry_after + rng.uniform(0, min(1.0, 0.1 * retry_after))
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)  # "equal jitter": never zero


# ---------------------------------------------------------------- circuit breaker


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BreakerSettings(BaseModel):
    window: int = Field(default=20, ge=1, description="last N calls looked at")
    min_calls: int = Field(default=5, ge=1, description="calls needed before it can open")
    failure_rate: float = Field(default=0.5, gt=0, le=1)
    cooldown_s: float = Field(default=30.0, ge=0, description="open time before a probe")


@dataclass
class CircuitBreaker:
    """Opens after `failure_rate` of the last `window` calls failed; one probe after cool-down."""

    name: str
    settings: BreakerSettings
    clock: Clock
    state: BreakerState = BreakerState.CLOSED
    _outcomes: deque[bool] = field(default_factory=deque, repr=False)
    _opened_at: float = 0.0
    _probe_out: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def before_call(self) -> None:
        """Raise CircuitOpen unless a call may go out now (closed, or the half-open probe)."""
        with self._lock:
            if self.state is BreakerState.CLOSED:
                return
            waited = self.clock.monotonic() - self._opened_at
            if self.state is BreakerState.OPEN and waited >= self.settings.cooldown_s:
                self.state = BreakerState.HALF_OPEN
                self._probe_out = False
            if self.state is BreakerState.HALF_OPEN and not self._probe_out:
                self._probe_out = True
                return
            raise CircuitOpen(self.name, max(0.0, self.settings.cooldown_s - waited))

    def record(self, failure: FailureKind | None) -> None:
        """Record one call's outcome; only health failures (429, 5xx, timeouts) count."""
        failed = failure in HEALTH_FAILURES
        with self._lock:
            if self.state is BreakerState.HALF_OPEN:
                self._probe_out = False
                if failed:
                    self._open()
                else:
                    self.state = BreakerState.CLOSED
                    self._outcomes.clear()
                return
            self._outcomes.append(failed)
            while len(self._outcomes) > self.settings.window:
                self._outcomes.popleft()
            n = len(self._outcomes)
            if (
                n >= self.settings.min_calls
                and sum(self._outcomes) / n >= self.settings.failure_rate
            ):
                self._open()

    def _open(self) -> None:
        self.state = BreakerState.OPEN
        self._opened_at = self.clock.monotonic()
        self._outcomes.clear()


# ---------------------------------------------------------------- the loop


def call_with_retries(
    send: Callable[[], R],
    classify: Callable[[BaseException], ProviderCallFailed | None],
    *,
    policy: RetryPolicy,
    breaker: CircuitBreaker,
    clock: Clock,
    rng: random.Random,
    on_retry: Callable[[ProviderCallFailed, float], None] | None = None,
) -> tuple[R, int]:
    """Send until success, a failure that must not be retried, or retries run out.

    Returns (result, attempts). Raises ProviderCallFailed (with `attempts`) or CircuitOpen.
    """
    attempt = 0
    while True:
        breaker.before_call()
        attempt += 1
        try:
            result = send()
        except Exception as exc:
            failure = classify(exc)
            if failure is None:
                breaker.record(None)
                raise
            breaker.record(failure.kind)
            failure.attempts = attempt
            too_long = failure.retry_after is not None and (
                failure.retry_after > policy.max_retry_after_s
            )
            if not failure.retryable or attempt > policy.max_retries or too_long:
                raise failure from exc
            wait = policy.delay(attempt, failure.retry_after, rng)
            if on_retry is not None:
                on_retry(failure, wait)
            clock.sleep(wait)
            continue
        breaker.record(None)
        return result, attempt
