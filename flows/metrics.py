"""Prometheus metrics of the runs: inputs, step latency, model tokens and cost, cache, fallbacks.

Recorded where the work happens, as each input ends (flows/observe.py), into prometheus_client's
registry of that process. Exposed three ways:

- `mmflow serve --metrics-port` and `mmflow webhook` answer `GET /metrics`. A served
  deployment's flow runs in a subprocess of its own (or, with `--in-process`, in a thread of
  serve itself), so serve sets PROMETHEUS_MULTIPROC_DIR before any flow starts: every process
  then keeps its counts in files there, and /metrics adds them up (prometheus_client's
  multiprocess mode, which counts a thread's runs in its process's file the same way);
- a run writes them to MMFLOW_METRICS_FILE when it ends (the node exporter's textfile
  collector), or pushes them to the Pushgateway at MMFLOW_PUSHGATEWAY.

Labels `tenant` and `feature` carry the run's (empty when none was given). The alerting rules
in deployments/prometheus/ read these names: rename nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from mmflow.tasks import telemetry_settings
from mmflow.tasks.models import Status, TraceRecord
from mmflow.tasks.trace import ModelCall, StepSpan, TraceLabels

logger = logging.getLogger(__name__)

PREFIX = "mmflow"
# Seconds: a text PDF ends in a fraction of a second, an OCR'd scan in a few, a meeting in minutes.
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0)
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)
IMAGE_TOKEN_BUCKETS = (85, 170, 255, 500, 765, 1000, 1105, 1500, 2000, 3000, 6000, 12000)


@dataclass(frozen=True)
class Instruments:
    inputs: Any
    input_errors: Any
    input_latency: Any
    input_image_tokens: Any
    input_cache: Any
    step_latency: Any
    model_calls: Any
    model_tokens: Any
    model_cost: Any
    fallbacks: Any
    quota_events: Any


@cache
def instruments() -> Instruments:
    """The metric objects, created once per process (prometheus_client imported only now)."""
    from prometheus_client import Counter, Histogram

    who = ("tenant", "feature")
    model = ("provider", "model", *who)
    return Instruments(
        inputs=Counter(
            f"{PREFIX}_inputs",
            "Inputs that ended, by status (ok, rejected, failed).",
            ("scenario", "status", *who),
        ),
        input_errors=Counter(
            f"{PREFIX}_input_errors",
            "Inputs that ended rejected or failed, by their error code.",
            ("scenario", "status", "code"),
        ),
        input_latency=Histogram(
            f"{PREFIX}_input_latency_seconds",
            "Wall time of one input, from its start to its manifest line.",
            ("scenario",),
            buckets=LATENCY_BUCKETS,
        ),
        input_image_tokens=Histogram(
            f"{PREFIX}_input_image_tokens",
            "Image tokens one input sent to models (inputs that sent images).",
            ("scenario", *who),
            buckets=IMAGE_TOKEN_BUCKETS,
        ),
        input_cache=Counter(
            f"{PREFIX}_input_cache",
            "Inputs by whether they were served from cache (result: hit or miss).",
            ("scenario", "result"),
        ),
        step_latency=Histogram(
            f"{PREFIX}_step_latency_seconds",
            "Wall time of one step of one input (cached: read from the step cache).",
            ("scenario", "step", "cached"),
            buckets=STEP_BUCKETS,
        ),
        model_calls=Counter(
            f"{PREFIX}_model_calls",
            "Model calls by outcome (ok, refused before sending, failed).",
            (*model, "outcome"),
        ),
        model_tokens=Counter(
            f"{PREFIX}_model_tokens",
            "Tokens billed by model calls (kind: image (estimated), prompt, output).",
            (*model, "kind"),
        ),
        model_cost=Counter(
            f"{PREFIX}_model_cost_usd",
            "US dollars billed by model calls.",
            model,
        ),
        fallbacks=Counter(
            f"{PREFIX}_fallbacks",
            "Model calls that did not answer, so the input took another route (reason).",
            ("scenario", *who, "reason"),
        ),
        quota_events=Counter(
            f"{PREFIX}_quota_events",
            "Model calls past a tenant's soft limit (allowed) or hard limit (refused).",
            ("tenant", "limit"),
        ),
    )


def _who(labels: TraceLabels) -> tuple[str, str]:
    return labels.tenant or "", labels.feature or ""


def prepare_run(labels: TraceLabels) -> None:
    """Create the run's input series at zero, so a first failure is an increase that `rate()`
    sees (a series born at 1 is not)."""
    metrics = instruments()
    for status in Status:
        metrics.inputs.labels(labels.scenario, status.value, *_who(labels))
    for result in ("hit", "miss"):
        metrics.input_cache.labels(labels.scenario, result)


def observe_input(
    labels: TraceLabels,
    status: Status,
    code: str | None,
    record: TraceRecord,
    steps: Sequence[StepSpan],
) -> None:
    """One input's ending: its status, latency, cache verdict, image tokens and steps."""
    metrics = instruments()
    scenario = labels.scenario
    metrics.inputs.labels(scenario, status.value, *_who(labels)).inc()
    if status is not Status.OK:
        metrics.input_errors.labels(scenario, status.value, code or "").inc()
    metrics.input_latency.labels(scenario).observe(record.latency_ms / 1000)
    if record.cache_hit is not None:
        metrics.input_cache.labels(scenario, "hit" if record.cache_hit else "miss").inc()
    if record.image_tokens:
        metrics.input_image_tokens.labels(scenario, *_who(labels)).observe(record.image_tokens)
    for step in steps:
        cached = "true" if step.cached else "false"
        metrics.step_latency.labels(scenario, step.name, cached).observe(step.seconds)


def observe_calls(labels: TraceLabels, calls: Sequence[ModelCall]) -> None:
    """Model calls: outcome, tokens billed, dollars, fallbacks and quota passes."""
    metrics = instruments()
    who = _who(labels)
    for call in calls:
        model = (call.provider, call.model, *who)
        metrics.model_calls.labels(*model, call.outcome).inc()
        if call.outcome == "ok" and not call.cached:
            metrics.model_tokens.labels(*model, "image").inc(call.image_tokens)
            metrics.model_tokens.labels(*model, "prompt").inc(call.prompt_tokens)
            metrics.model_tokens.labels(*model, "output").inc(call.output_tokens)
        if call.actual_usd:
            metrics.model_cost.labels(*model).inc(float(call.actual_usd))
        if call.outcome != "ok":
            metrics.fallbacks.labels(labels.scenario, *who, call.error_type or "").inc()
        if call.error_type == "quota_exceeded":
            metrics.quota_events.labels(who[0], "hard").inc()
        elif call.quota_state == "soft_exceeded":
            metrics.quota_events.labels(who[0], "soft").inc()


def exposition_registry() -> Any:
    """What /metrics and the textfile show: this process's metrics, or, in multiprocess mode
    (PROMETHEUS_MULTIPROC_DIR set), the sum over every process that wrote there."""
    import prometheus_client
    from prometheus_client import multiprocess

    instruments()  # the metric families exist (at zero) even before the first input
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = prometheus_client.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return prometheus_client.REGISTRY


def exposition() -> tuple[bytes, str]:
    """The body and Content-Type of a /metrics answer."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(exposition_registry()), CONTENT_TYPE_LATEST


def serve_metrics(port: int, host: str = "127.0.0.1") -> None:
    """Answer GET /metrics on host:port from a thread (`mmflow serve --metrics-port`). A served
    deployment's flow runs in a subprocess, so this first sets PROMETHEUS_MULTIPROC_DIR (a fresh
    folder unless given): the subprocesses inherit it, write their counts there, and /metrics
    adds them up."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="mmflow-metrics-")
    from prometheus_client import start_http_server

    start_http_server(port, addr=host, registry=exposition_registry())


def publish_run_metrics(scenario: str) -> None:
    """At the end of a run: the textfile and/or the Pushgateway, when configured."""
    path, gateway = telemetry_settings.metrics_file(), telemetry_settings.pushgateway()
    if not path and not gateway:
        return
    from prometheus_client import push_to_gateway, write_to_textfile

    registry = exposition_registry()
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        write_to_textfile(path, registry)  # written aside and renamed: never half a file
    if gateway:
        grouping = {"instance": socket.gethostname(), "scenario": scenario}
        push_to_gateway(gateway, job="mmflow", registry=registry, grouping_key=grouping)
