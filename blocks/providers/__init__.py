"""Model providers as Prefect blocks: OpenAI, Anthropic and OpenAI-compatible servers, with
pre-flight cost control, failure handling matched to the failure, a response cache, and batches.

    provider = OpenAIProvider(model="gpt-4o", api_key="sk-…")
    budget = Budget(max_usd_per_run=Decimal("1"))
    result = provider.extract_from_images([png], "Read the invoice.", Invoice, budget=budget)
    result.value, result.cost_usd, result.attempts

Failure → documented recovery (each shown by a test in tests/test_providers_*.py):
- 429 / 5xx / 529 overloaded → exponential backoff with jitter; Retry-After (seconds or HTTP
  date) or retry-after-ms is the minimum wait; `x-should-retry` is obeyed; a 429 meaning the
  money ran out (insufficient_quota) is not retried.
- client timeout, connection error, 408 → retried under the same policy.
- context/token-limit 400 → retried once at low detail (Anthropic: images fitted in 512 px).
- other 4xx → no retry: ProviderCallFailed(kind=client_error).
- output failing the schema (truncated, wrong types) → one repair turn carrying the validation
  errors, then SchemaValidationFailed.
- repeated health failures → the breaker opens (CircuitOpen, no network), half-opens after the
  cool-down, one probe closes it again.
- over budget → low detail if that fits, else BudgetExceeded before any request.
- any ProviderError → `run_fallback_chain` moves to the next provider, finally the offline route.
"""

from mmflow.blocks.providers.anthropic_provider import AnthropicProvider
from mmflow.blocks.providers.base import ProviderBlock
from mmflow.blocks.providers.batch import BatchJob, BatchState
from mmflow.blocks.providers.cache import ResponseCache, response_cache_key, schema_fingerprint
from mmflow.blocks.providers.loading import resolve_provider
from mmflow.blocks.providers.openai_provider import OpenAICompatibleProvider, OpenAIProvider
from mmflow.blocks.providers.resilience import (
    BreakerSettings,
    BreakerState,
    CircuitBreaker,
    Clock,
    RetryPolicy,
    SystemClock,
    classify_http_failure,
    parse_retry_after,
)
from mmflow.tasks.provider.budget import Budget, estimate_text_tokens
from mmflow.tasks.provider.errors import (
    BudgetExceeded,
    CircuitOpen,
    FailureKind,
    ProviderCallFailed,
    ProviderError,
    SchemaValidationFailed,
)
from mmflow.tasks.provider.fallback import FallbackOutcome, run_fallback_chain
from mmflow.tasks.provider.images import PreparedImage, prepare_image
from mmflow.tasks.provider.results import (
    BatchItemResult,
    BatchRequest,
    BatchStatus,
    CallEstimate,
    ProviderResult,
    ProviderSegment,
    ProviderTranscript,
    Usage,
)

__all__ = [
    "AnthropicProvider",
    "BatchItemResult",
    "BatchJob",
    "BatchRequest",
    "BatchState",
    "BatchStatus",
    "BreakerSettings",
    "BreakerState",
    "Budget",
    "BudgetExceeded",
    "CallEstimate",
    "CircuitBreaker",
    "CircuitOpen",
    "Clock",
    "FailureKind",
    "FallbackOutcome",
    "OpenAICompatibleProvider",
    "OpenAIProvider",
    "PreparedImage",
    "ProviderBlock",
    "ProviderCallFailed",
    "ProviderError",
    "ProviderResult",
    "ProviderSegment",
    "ProviderTranscript",
    "ResponseCache",
    "RetryPolicy",
    "SchemaValidationFailed",
    "SystemClock",
    "Usage",
    "classify_http_failure",
    "estimate_text_tokens",
    "parse_retry_after",
    "prepare_image",
    "resolve_provider",
    "response_cache_key",
    "run_fallback_chain",
    "schema_fingerprint",
]
