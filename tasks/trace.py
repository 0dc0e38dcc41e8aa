"""Per-input telemetry: a collector the runner opens for each input, that model calls record into.

Why a context variable: model calls happen deep inside steps (blocks/providers/base.py), layers
below the runner, and threading a tracer argument through every step signature would touch
them all. The runner (flows/observe.py) opens an `InputTrace` for each input and makes it
current; the provider blocks record each call into whichever trace is current; when the input
ends the runner turns the trace into the manifest's `trace` field, OpenTelemetry spans,
Prometheus metrics and cost-ledger rows. The context variable follows the input into the
thread that runs it (the runner copies its context, flows/runs.py `_bounded`).

Nothing here imports Prefect, OpenTelemetry or prometheus_client: recording is a list append.
What is recorded is identifiers, counts, hashes and money, never image bytes or text.
"""

from __future__ import annotations

import contextvars
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

from mmflow.tasks.models import Status, TraceRecord
from mmflow.tasks.redaction import redact

if TYPE_CHECKING:
    from mmflow.tasks.provider.quota import QuotaGuard

CallOutcome = Literal["ok", "refused", "failed"]

LABEL_PATTERN = r"^([A-Za-z0-9][A-Za-z0-9._:-]{0,63})?$"
"""A tenant or feature name: short, and safe as a metric label and in a file name. Empty (no
label) matches too: a deployment's parameter schema is checked by the server, which does not
know that `RunSettings` reads "" (a webhook upload without labels) as None."""


def redact_outgoing_text(text: str) -> str:
    """Every string a trace sends out of the process (span attributes, ledger rows, event
    payloads) passes through the secret redaction of tasks/redaction.py."""
    return redact(text)


def new_trace_id() -> str:
    """A random 128-bit trace id as 32 hex digits (W3C / OpenTelemetry format, never all 0)."""
    while True:
        value = secrets.token_hex(16)
        if value.strip("0"):
            return value


@dataclass(frozen=True)
class TraceLabels:
    """What every input of a run shares: who it is for and where it runs."""

    scenario: str
    run_id: str
    tenant: str | None = None
    feature: str | None = None


@dataclass(frozen=True)
class StepSpan:
    """One step of one input: when it ran and whether its result came from the step cache."""

    name: str
    start_ns: int
    end_ns: int
    cached: bool

    @property
    def seconds(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9


@dataclass(frozen=True)
class ModelCall:
    """One logical model call (retries and the schema repair included), as billed or refused.

    `image_tokens` is the pre-flight estimate of the images as sent (providers bill them inside
    the input tokens); `prompt_tokens` and `output_tokens` are what the provider reported it
    billed (0 for a cached answer or a call that never happened).
    """

    provider: str  # wire format: openai, anthropic, openai-compatible
    model: str
    operation: str  # extract (images), complete (text only), transcribe (audio)
    start_ns: int
    end_ns: int
    outcome: CallOutcome
    detail: str | None = None
    image_hashes: tuple[str, ...] = ()
    image_tokens: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    estimated_usd: Decimal = Decimal("0")
    actual_usd: Decimal = Decimal("0")
    cached: bool = False
    attempts: int = 0
    error_type: str | None = None  # the ProviderError's kind when the call did not answer
    quota_state: str | None = None  # "soft_exceeded" when the tenant's soft limit was passed

    @property
    def latency_ms(self) -> float:
        return round((self.end_ns - self.start_ns) / 1e6, 3)


CallListener = Callable[["InputTrace", ModelCall], None]


@dataclass
class InputTrace:
    """What one input's processing recorded; becomes its `TraceRecord` when it ends."""

    labels: TraceLabels
    quota: QuotaGuard | None = None  # the tenant's quota, checked before every model call
    on_call: CallListener | None = None  # the cost ledger: each call is written as it ends
    trace_id: str = field(default_factory=new_trace_id)
    start_ns: int = field(default_factory=time.time_ns)
    end_ns: int | None = None
    steps: list[StepSpan] = field(default_factory=list)
    calls: list[ModelCall] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_step(self, span: StepSpan) -> None:
        with self._lock:
            self.steps.append(span)

    def add_call(self, call: ModelCall) -> None:
        with self._lock:
            self.calls.append(call)
        if self.on_call is not None:
            self.on_call(self, call)

    def record(
        self, status: Status, error_code: str | None, route: str | None = None
    ) -> TraceRecord:
        """The manifest's `trace`: the input's ending and the sum of its model calls."""
        end_ns = self.end_ns or time.time_ns()
        with self._lock:
            calls, steps = list(self.calls), list(self.steps)
        answered = [c for c in calls if c.outcome == "ok"]
        fell_back = [c for c in calls if c.outcome != "ok"]
        billed = [c for c in answered if not c.cached]
        images = sorted({h for c in calls for h in c.image_hashes})
        models = sorted({c.model for c in calls})
        error_type = error_code if status is not Status.OK else None
        if error_type is None and fell_back:
            error_type = fell_back[-1].error_type
        return TraceRecord(
            trace_id=self.trace_id,
            tenant=self.labels.tenant,
            feature=self.labels.feature,
            scenario=self.labels.scenario,
            route=route,
            run_id=self.labels.run_id,
            model=",".join(models) if models else None,
            image_count=len(images) if calls else None,
            image_hashes=images if calls else None,
            image_tokens=sum(c.image_tokens for c in billed) if calls else None,
            prompt_tokens=sum(c.prompt_tokens for c in billed) if calls else None,
            output_tokens=sum(c.output_tokens for c in billed) if calls else None,
            latency_ms=round((end_ns - self.start_ns) / 1e6, 3),
            cache_hit=cache_verdict(steps, calls),
            fallback_triggered=bool(fell_back) if calls else None,
            error_type=error_type,
        )


def cache_verdict(steps: list[StepSpan], calls: list[ModelCall]) -> bool | None:
    """Whether the input was served from cache: every step from the step cache and every model
    answer from the response cache. None when nothing was looked up (rejected at once)."""
    answered = [c for c in calls if c.outcome == "ok"]
    if not steps and not answered:
        return None
    return all(s.cached for s in steps) and all(c.cached for c in answered)


_current: contextvars.ContextVar[InputTrace | None] = contextvars.ContextVar(
    "mmflow_input_trace", default=None
)


def current() -> InputTrace | None:
    """The trace of the input being processed in this context, if the runner opened one."""
    return _current.get()


@contextmanager
def tracing(trace: InputTrace) -> Iterator[InputTrace]:
    """Make `trace` current for the block (and for threads started with a copy of it)."""
    token = _current.set(trace)
    try:
        yield trace
    finally:
        _current.reset(token)
        trace.end_ns = trace.end_ns or time.time_ns()


def activate(trace: InputTrace) -> contextvars.Token[InputTrace | None]:
    """Make `trace` current until `deactivate(token)`: for code that cannot use a `with`."""
    return _current.set(trace)


def deactivate(token: contextvars.Token[InputTrace | None]) -> None:
    _current.reset(token)
