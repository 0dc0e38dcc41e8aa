"""The runner's telemetry seam: what flows/runs.py calls around each input and at a run's end.

    observed = start_input(run)          # an InputTrace, current for this input (tasks/trace.py)
    steps = observed.steps(steps)        # each step's time and cache verdict
    ... the pipeline; model calls record themselves, each written to the cost ledger ...
    trace = observed.end(status, error, details)   # → the manifest line's `trace`
    run_ended(scenario, inputs)          # alert conditions → Prefect events; metrics file/push

`end` turns the trace into the manifest's `trace` record, Prometheus metrics (flows/metrics.py)
and, when an OTLP endpoint is configured, OpenTelemetry spans (flows/spans.py). The tenant's
quota (tasks/provider/quota.py, MMFLOW_QUOTAS) rides on the trace, so the provider blocks find
it before each call. Telemetry never fails an input: an exporter that breaks is logged and the
run goes on (the quota is the exception: a quota file that cannot be read refuses every model
call, so a typo never lifts a limit, and the inputs take the offline route).
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from mmflow.flows import metrics, spans
from mmflow.tasks import telemetry_settings
from mmflow.tasks.alerts import AlertReading, evaluate_run
from mmflow.tasks.caching import Stamped, Step
from mmflow.tasks.ledger import CostLedger
from mmflow.tasks.models import ErrorInfo, Status, TraceRecord
from mmflow.tasks.provider.quota import (
    DEFAULT_TENANT,
    QuotaGuard,
    QuotaPolicy,
    TenantQuota,
    guard_for,
    open_store,
)
from mmflow.tasks.trace import (
    InputTrace,
    ModelCall,
    StepSpan,
    TraceLabels,
    activate,
    deactivate,
    redact_outgoing_text,
    tracing,
)

if TYPE_CHECKING:
    from mmflow.flows.steps import StepRunner

logger = logging.getLogger(__name__)
R = TypeVar("R")

ALERT_EVENT = "mmflow.alert"  # + ".firing" or ".ok"


class EndedInput(Protocol):
    """What the run's end looks at in each input's summary (flows/runs.py `InputSummary`)."""

    @property
    def status(self) -> Status: ...

    @property
    def trace(self) -> TraceRecord | None: ...


def _safely(what: str, work: Callable[[], Any]) -> None:
    """Telemetry must not fail an input: a broken exporter is logged, the run goes on."""
    try:
        work()
    except Exception as error:
        logger.warning("mmflow telemetry: %s failed (%s: %s)", what, type(error).__name__, error)


# ---------------------------------------------------------------- quota and ledger


@cache
def _policy(path: str, mtime: float) -> QuotaPolicy:
    return QuotaPolicy.from_file(path)


def quota_guard(tenant: str | None) -> QuotaGuard | None:
    """The tenant's quota guard when MMFLOW_QUOTAS names a policy that limits it."""
    path = telemetry_settings.quotas_file()
    if path is None:
        return None
    try:
        policy = _policy(path, os.stat(path).st_mtime)
        return guard_for(tenant, policy, _store(telemetry_settings.quota_store_url()))
    except Exception as error:  # closed, not open: a typo never lifts a limit
        reason = (
            f"the quota file {path} cannot be used ({type(error).__name__}: {error}); every "
            "model call is refused until it is fixed (MMFLOW_QUOTAS)"
        )
        return QuotaGuard(tenant or DEFAULT_TENANT, TenantQuota(), None, refusal=reason)


@cache
def _store(url: str) -> Any:
    return open_store(url)


def _ledger_listener() -> Callable[[InputTrace, ModelCall], None]:
    ledger = CostLedger(telemetry_settings.ledger_url())

    def write(trace: InputTrace, call: ModelCall) -> None:
        _safely("the cost ledger", lambda: ledger.record_call(trace, call))

    return write


# ---------------------------------------------------------------- steps


class TracedSteps:
    """A `StepRunner` that records each step's time and whether it came from the cache (its
    result was computed by an earlier run)."""

    def __init__(self, inner: StepRunner, trace: InputTrace, run_id: str) -> None:
        self.inner, self.trace, self.run_id = inner, trace, run_id

    def run(self, step: Step, upstream: Sequence[Stamped[Any]], **params: Any) -> Stamped[Any]:
        started = time.time_ns()
        cached = False
        try:
            result = self.inner.run(step, upstream, **params)
            cached = result.run_id != self.run_id
            return result
        finally:
            self.trace.add_step(StepSpan(step.name, started, time.time_ns(), cached))


# ---------------------------------------------------------------- one input

_prepared: set[tuple[str, str | None, str | None]] = set()  # bounded: no run id in it
_prepared_lock = threading.Lock()


class ObservedInput:
    """One input's trace from its start to its manifest line."""

    def __init__(self, trace: InputTrace, token: contextvars.Token[InputTrace | None]) -> None:
        self.trace, self._token = trace, token

    def steps(self, steps: StepRunner) -> StepRunner:
        return TracedSteps(steps, self.trace, self.trace.labels.run_id)

    def end(self, status: Status, error: ErrorInfo | None, details: dict[str, Any]) -> TraceRecord:
        """The manifest's `trace`; metrics and spans of the input are recorded now."""
        deactivate(self._token)
        trace = self.trace
        trace.end_ns = time.time_ns()
        code = error.code if error else None
        route = details.get("route")
        record = trace.record(status, code, str(route) if route else None)
        labels = trace.labels
        _safely("metrics", lambda: metrics.observe_input(labels, status, code, record, trace.steps))
        _safely("metrics", lambda: metrics.observe_calls(labels, trace.calls))
        _safely("spans", lambda: spans.export_input(trace, record, status))
        return record


def start_input(labels: TraceLabels) -> ObservedInput:
    """Open the input's trace and make it current (model calls below record into it)."""
    series = (labels.scenario, labels.tenant, labels.feature)
    with _prepared_lock:
        if series not in _prepared:
            _safely("metrics", lambda: metrics.prepare_run(labels))
            _prepared.add(series)
    trace = InputTrace(labels, quota=quota_guard(labels.tenant), on_call=_ledger_listener())
    return ObservedInput(trace, activate(trace))


def run_level(labels: TraceLabels, work: Callable[[], R]) -> R:
    """Work of the run as a whole (the pipeline's `finish`: a synthesis call): its model calls
    are traced, quota-checked and written to the ledger like an input's."""
    trace = InputTrace(labels, quota=quota_guard(labels.tenant), on_call=_ledger_listener())
    with tracing(trace):
        result = work()
    if trace.calls:
        _safely("metrics", lambda: metrics.observe_calls(labels, trace.calls))
        record = trace.record(Status.OK, None)
        _safely("spans", lambda: spans.export_input(trace, record, Status.OK, "mmflow.run"))
    return result


# ---------------------------------------------------------------- the run's end


def judged_inputs(inputs: Sequence[EndedInput]) -> list[tuple[Status, TraceRecord | None]]:
    """The inputs this run processed (they have a trace) and those it lost (failed without
    one); inputs an earlier run ended (a resumed batch) are not judged again."""
    return [(s.status, s.trace) for s in inputs if s.trace is not None or s.status is Status.FAILED]


def emit_alert_events(scenario: str, readings: list[AlertReading], labels: TraceLabels) -> int:
    """One Prefect event per alert condition that could be judged; returns how many fired."""
    from prefect.events import emit_event
    from prefect.runtime import deployment, flow_run

    related = []
    if flow_run.get_id():
        related.append(
            {
                "prefect.resource.id": f"prefect.flow-run.{flow_run.get_id()}",
                "prefect.resource.role": "flow-run",
            }
        )
    if deployment.get_id():
        related.append(
            {
                "prefect.resource.id": f"prefect.deployment.{deployment.get_id()}",
                "prefect.resource.role": "deployment",
            }
        )
    fired = 0
    for reading in readings:
        if reading.value is None:
            continue
        fired += reading.firing
        emit_event(
            event=f"{ALERT_EVENT}.{'firing' if reading.firing else 'ok'}",
            resource={
                "prefect.resource.id": f"mmflow.alert.{reading.rule}",
                "prefect.resource.name": reading.alert,
                "mmflow.alert": reading.rule,
                "mmflow.scenario": scenario,
                "mmflow.tenant": redact_outgoing_text(labels.tenant or ""),
                "mmflow.feature": redact_outgoing_text(labels.feature or ""),
            },
            related=related,
            payload=reading.model_dump(mode="json") | {"run_id": labels.run_id},
        )
    return fired


def run_ended(scenario: str, inputs: Sequence[EndedInput]) -> list[AlertReading]:
    """Alert conditions over the run → Prefect events; metrics to their file or Pushgateway;
    queued spans sent. Returns the readings (the run's report shows them)."""
    judged = judged_inputs(inputs)
    readings = evaluate_run(judged)
    traces = [t for _, t in judged if t is not None]
    if traces:
        first = traces[0]
        labels = TraceLabels(scenario, first.run_id, first.tenant, first.feature)
        _safely("alert events", lambda: emit_alert_events(scenario, readings, labels))
    _safely("the metrics file", lambda: metrics.publish_run_metrics(scenario))
    _safely("spans", spans.flush)
    return readings
