"""The provider exceptions: one small hierarchy, each naming the recovery the caller owns."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Any

from mmflow.tasks.errors import MmflowError
from mmflow.tasks.redaction import redact


class FailureKind(StrEnum):
    """What went wrong on the wire; each kind has one documented recovery."""

    RATE_LIMITED = "rate_limited"  # 429: back off, honouring Retry-After
    SERVER_ERROR = "server_error"  # 5xx / overloaded: back off
    TIMEOUT = "timeout"  # client timeout or 408: retry
    CONNECTION = "connection"  # refused / reset: retry
    CONTEXT_LIMIT = "context_limit"  # 400 too many tokens: retry once at lower detail
    CLIENT_ERROR = "client_error"  # other 4xx: the request is wrong, never retried


#: Failures that say the provider is unhealthy (they feed the circuit breaker).
HEALTH_FAILURES = frozenset(
    {
        FailureKind.RATE_LIMITED,
        FailureKind.SERVER_ERROR,
        FailureKind.TIMEOUT,
        FailureKind.CONNECTION,
    }
)


class ProviderError(MmflowError):
    """Root of model-provider failures; a fallback chain moves on when it sees one."""


class ProviderCallFailed(ProviderError):
    """The provider answered with an error (or not at all) and our policy gave up."""

    def __init__(
        self,
        kind: FailureKind,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        retryable: bool | None = None,
        attempts: int = 0,
    ) -> None:
        # A provider's error body may echo the key it was sent (OpenAI-compatible servers do on
        # 401) or the URL it was reached at: the text is redacted before anything keeps it.
        message = redact(message)
        super().__init__(f"{kind.value}" + (f" (HTTP {status})" if status else "") + f": {message}")
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.retryable = kind in HEALTH_FAILURES if retryable is None else retryable
        self.attempts = attempts

    def __reduce__(self) -> tuple[Any, ...]:
        # Prefect pickles task exceptions; keep every field across the trip.
        keywords = {
            "status": self.status,
            "retry_after": self.retry_after,
            "retryable": self.retryable,
            "attempts": self.attempts,
        }
        return (_rebuild, (ProviderCallFailed, (self.kind, self.message), keywords))


class CircuitOpen(ProviderError):
    """The provider's circuit breaker is open: calls are refused without touching the network."""

    def __init__(self, provider: str, retry_in_seconds: float) -> None:
        super().__init__(
            f"circuit open for {provider}: too many recent failures; "
            f"next probe in {retry_in_seconds:.1f} s"
        )
        self.provider = provider
        self.retry_in_seconds = retry_in_seconds

    def __reduce__(self) -> tuple[Any, ...]:
        return (CircuitOpen, (self.provider, self.retry_in_seconds))


class BudgetExceeded(ProviderError):
    """Even the cheapest detail would overspend: take the offline (OCR) route instead."""

    def __init__(self, message: str, *, estimate_usd: Decimal, remaining_usd: Decimal | None):
        super().__init__(message)
        self.message = message
        self.estimate_usd = estimate_usd
        self.remaining_usd = remaining_usd

    def __reduce__(self) -> tuple[Any, ...]:
        keywords = {"estimate_usd": self.estimate_usd, "remaining_usd": self.remaining_usd}
        return (_rebuild, (BudgetExceeded, (self.message,), keywords))


class SchemaValidationFailed(ProviderError):
    """The model's output failed the schema twice (first answer and one repair)."""

    def __init__(self, schema_name: str, errors: str, raw_text: str, attempts: int) -> None:
        super().__init__(
            f"model output does not match {schema_name} after one repair attempt: {errors}"
        )
        self.schema_name = schema_name
        self.errors = errors
        self.raw_text = raw_text
        self.attempts = attempts

    def __reduce__(self) -> tuple[Any, ...]:
        args = (self.schema_name, self.errors, self.raw_text, self.attempts)
        return (SchemaValidationFailed, args)


def _rebuild(cls: type[Exception], args: tuple[Any, ...], keywords: dict[str, Any]) -> Exception:
    return cls(*args, **keywords)
