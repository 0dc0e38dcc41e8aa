"""The alert thresholds, and their evaluation over one run's inputs.

One list, two uses: deployments/alert_rules.py writes them as Prometheus alerting rules
(deployments/prometheus/mmflow-alerts.yml, over the metrics of flows/metrics.py), and the runner
evaluates each over the run it just finished and emits a Prefect event for each that fires
(flows/observe.py), so an automation can act on it without a Prometheus.

The thresholds are the field's usual ones for multimodal services: p95 latency above 10 s, more
than 2% of inputs failed, more than 1,500 image tokens per input sent to a model on average,
fewer than 20% of inputs served from cache.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel

from mmflow.tasks.models import Status, TraceRecord


class AlertRule(BaseModel):
    name: str  # the event's and the metric label's name: error_rate, …
    alert: str  # the Prometheus alert's name
    threshold: float
    fires_when: Literal["above", "below"]
    summary: str

    def fires(self, value: float | None) -> bool:
        if value is None:
            return False
        return value > self.threshold if self.fires_when == "above" else value < self.threshold


LATENCY_P95 = AlertRule(
    name="latency_p95",
    alert="MmflowLatencyP95High",
    threshold=10.0,
    fires_when="above",
    summary="95th percentile of input latency above 10 s",
)
ERROR_RATE = AlertRule(
    name="error_rate",
    alert="MmflowErrorRateHigh",
    threshold=0.02,
    fires_when="above",
    summary="more than 2% of inputs failed",
)
IMAGE_TOKENS = AlertRule(
    name="image_tokens_avg",
    alert="MmflowImageTokensHigh",
    threshold=1500.0,
    fires_when="above",
    summary="inputs sent more than 1,500 image tokens to a model on average",
)
CACHE_HIT_RATE = AlertRule(
    name="cache_hit_rate",
    alert="MmflowCacheHitRateLow",
    threshold=0.2,
    fires_when="below",
    summary="fewer than 20% of inputs were served from cache",
)
ALERT_RULES = (LATENCY_P95, ERROR_RATE, IMAGE_TOKENS, CACHE_HIT_RATE)


class AlertReading(BaseModel):
    """One rule over one run: the value it saw (None: nothing to judge), over how many inputs."""

    rule: str
    alert: str
    value: float | None
    threshold: float
    firing: bool
    inputs: int
    summary: str


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0–1) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def evaluate_run(inputs: list[tuple[Status, TraceRecord | None]]) -> list[AlertReading]:
    """Every rule over one run's inputs (their status and trace)."""
    traces = [trace for _, trace in inputs if trace is not None]
    latencies = [t.latency_ms / 1000 for t in traces]
    sent = [float(t.image_tokens) for t in traces if t.image_tokens]
    cache = [1.0 if t.cache_hit else 0.0 for t in traces if t.cache_hit is not None]
    failed = sum(status is Status.FAILED for status, _ in inputs)
    values: dict[str, tuple[float | None, int]] = {
        LATENCY_P95.name: (percentile(latencies, 0.95) if latencies else None, len(latencies)),
        ERROR_RATE.name: (failed / len(inputs) if inputs else None, len(inputs)),
        IMAGE_TOKENS.name: (_mean(sent), len(sent)),
        CACHE_HIT_RATE.name: (_mean(cache), len(cache)),
    }
    readings = []
    for rule in ALERT_RULES:
        value, count = values[rule.name]
        readings.append(
            AlertReading(
                rule=rule.name,
                alert=rule.alert,
                value=value,
                threshold=rule.threshold,
                firing=rule.fires(value),
                inputs=count,
                summary=rule.summary,
            )
        )
    return readings
