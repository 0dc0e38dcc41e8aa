"""OpenTelemetry spans of each input, sent over OTLP/HTTP when an endpoint is configured.

An input's trace becomes one span tree, built after the input ended from what its trace
recorded (tasks/trace.py), with the recorded start and end times:

    mmflow.input  (every field of the manifest's `trace`, as mmflow.* attributes)
    ├── step validate, step normalise, …   (mmflow.step.cached)
    └── extract gpt-4o, complete gpt-4o, …  (gen_ai.* token attributes, mmflow.cost_usd, …)

Built afterwards rather than live because the steps run in other threads and task runs, and
the spans' trace id is the manifest's `trace_id`, so a line of the manifest leads to its spans.
The SDK is imported only when an endpoint is configured (MMFLOW_OTLP_ENDPOINT or the standard
OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, tasks/telemetry_settings.py); spans leave in batches, and
`flush` (called as a run ends) sends what is left.
"""

from __future__ import annotations

import random
import threading
from functools import cache
from typing import Any

from mmflow.tasks import telemetry_settings
from mmflow.tasks.models import Status, TraceRecord
from mmflow.tasks.trace import InputTrace, ModelCall, redact_outgoing_text
from mmflow.tasks.versions import installed_version

SERVICE_NAME = "mmflow"


class _TraceIds:
    """Span ids at random; the trace id of a root span is the one set for this thread (the
    input's `trace_id`), so the spans and the manifest line share it."""

    def __init__(self) -> None:
        self._next = threading.local()
        self._random = random.SystemRandom()

    def use(self, trace_id: int | None) -> None:
        self._next.trace_id = trace_id

    def generate_span_id(self) -> int:
        return self._random.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return getattr(self._next, "trace_id", None) or self._random.getrandbits(128) or 1

    def is_trace_id_random(self) -> bool:
        return True


@cache
def _tracing(endpoint: str) -> tuple[Any, _TraceIds]:
    """A tracer provider exporting to `endpoint`, one per endpoint and process."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.id_generator import IdGenerator

    class TraceIds(_TraceIds, IdGenerator):
        pass

    ids = TraceIds()
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": SERVICE_NAME, "service.version": installed_version("mmflow")}
        ),
        id_generator=ids,
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider, ids


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
    """OpenTelemetry attributes: no None values; every string through the redaction hook."""
    clean: dict[str, Any] = {}
    for key, value in attributes.items():
        if value is None:
            continue
        if isinstance(value, str):
            value = redact_outgoing_text(value)
        elif isinstance(value, list | tuple):
            value = [redact_outgoing_text(v) if isinstance(v, str) else v for v in value]
        clean[key] = value
    return clean


def _call_attributes(call: ModelCall) -> dict[str, Any]:
    """GenAI semantic-convention names where one exists, mmflow.* for the rest."""
    return _clean(
        {
            "gen_ai.system": call.provider,
            "gen_ai.operation.name": call.operation,
            "gen_ai.request.model": call.model,
            "gen_ai.usage.input_tokens": call.prompt_tokens,
            "gen_ai.usage.output_tokens": call.output_tokens,
            "mmflow.image_tokens": call.image_tokens,
            "mmflow.image_count": len(set(call.image_hashes)),
            "mmflow.detail": call.detail,
            "mmflow.cost_usd": float(call.actual_usd),
            "mmflow.estimated_cost_usd": float(call.estimated_usd),
            "mmflow.cache_hit": call.cached,
            "mmflow.outcome": call.outcome,
            "mmflow.attempts": call.attempts,
            "mmflow.quota_state": call.quota_state,
            "error.type": call.error_type,
        }
    )


def export_input(
    trace: InputTrace, record: TraceRecord, status: Status, name: str = "mmflow.input"
) -> bool:
    """Queue the input's span tree for export; False when no endpoint is configured."""
    endpoint = telemetry_settings.otlp_traces_endpoint()
    if endpoint is None:
        return False
    from opentelemetry import trace as otel
    from opentelemetry.trace import Status as SpanStatus
    from opentelemetry.trace import StatusCode

    provider, ids = _tracing(endpoint)
    tracer = provider.get_tracer("mmflow.runner")
    attributes = {f"mmflow.{k}": v for k, v in record.model_dump().items()}
    ids.use(int(trace.trace_id, 16))
    try:
        root = tracer.start_span(name, attributes=_clean(attributes), start_time=trace.start_ns)
    finally:
        ids.use(None)
    if status is not Status.OK:
        root.set_status(SpanStatus(StatusCode.ERROR, record.error_type or status.value))
    parent = otel.set_span_in_context(root)
    for step in trace.steps:
        span = tracer.start_span(
            f"step {step.name}",
            context=parent,
            attributes={"mmflow.step": step.name, "mmflow.step.cached": step.cached},
            start_time=step.start_ns,
        )
        span.end(end_time=step.end_ns)
    for call in trace.calls:
        span = tracer.start_span(
            f"{call.operation} {redact_outgoing_text(call.model)}",
            context=parent,
            kind=otel.SpanKind.CLIENT,
            attributes=_call_attributes(call),
            start_time=call.start_ns,
        )
        if call.outcome != "ok":
            span.set_status(SpanStatus(StatusCode.ERROR, call.error_type or call.outcome))
        span.end(end_time=call.end_ns)
    root.end(end_time=trace.end_ns or None)
    return True


def flush(timeout_s: float = 10.0) -> None:
    """Send every queued span now (a run's end; the SDK also flushes at process exit)."""
    endpoint = telemetry_settings.otlp_traces_endpoint()
    if endpoint is not None:
        provider, _ = _tracing(endpoint)
        provider.force_flush(int(timeout_s * 1000))
