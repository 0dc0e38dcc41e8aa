"""Prometheus metrics and alerting rules, against Debian's real `prometheus` and `promtool`:
the shipped rules are current and valid, a scrape reads mmflow's metrics, and a burst of failed
inputs fires the error-rate alert (short windows keep it to seconds). Also the webhook's
/metrics endpoint and the textfile a run writes."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mmflow.deployments import alert_rules
from mmflow.flows import metrics
from mmflow.tasks.models import Status, TraceRecord
from mmflow.tasks.trace import TraceLabels

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "deployments" / "prometheus" / "mmflow-alerts.yml"


def program(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (apt-get install prometheus)")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.loads(answer.read())


def test_the_shipped_rules_are_current_and_promtool_accepts_them() -> None:
    assert SHIPPED.read_text() == alert_rules.render(), "run `make alert-rules`"
    checked = subprocess.run(
        [program("promtool"), "check", "rules", str(SHIPPED)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "4 rules found" in checked.stdout


@pytest.fixture
def exporter() -> Iterator[int]:
    """This process's metrics on a loopback port, as /metrics serves them."""
    from prometheus_client import start_http_server

    port = free_port()
    server, thread = start_http_server(
        port, addr="127.0.0.1", registry=metrics.exposition_registry()
    )
    try:
        yield port
    finally:
        server.shutdown()
        thread.join(timeout=5)


@pytest.fixture
def prometheus(exporter: int, tmp_path: Path) -> Iterator[str]:
    """A real Prometheus scraping `exporter` every second with the rules over 10 s windows."""
    binary = program("prometheus")
    rules = tmp_path / "rules.yml"
    rules.write_text(alert_rules.render(window="10s", hold="0s"))
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{rules}']\n"
        "scrape_configs:\n"
        f"  - job_name: mmflow\n    static_configs: [{{targets: ['127.0.0.1:{exporter}']}}]\n"
    )
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                get_json(f"{url}/api/v1/status/buildinfo")
                break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


def ended(labels: TraceLabels, status: Status, code: str | None) -> None:
    record = TraceRecord(
        trace_id=uuid.uuid4().hex,
        scenario=labels.scenario,
        run_id=labels.run_id,
        latency_ms=120.0,
        cache_hit=False,
    )
    metrics.observe_input(labels, status, code, record, [])


def test_a_burst_of_failed_inputs_fires_the_error_rate_alert(prometheus: str) -> None:
    labels = TraceLabels(f"alerttest{uuid.uuid4().hex[:6]}", "run-1", "acme", "ap-inbox")
    metrics.prepare_run(labels)  # the series exist at zero before the first input ends
    for _ in range(20):
        ended(labels, Status.OK, None)
    query = f'{prometheus}/api/v1/query?query=mmflow_inputs_total{{scenario="{labels.scenario}"}}'
    for _ in range(100):  # the first scrapes see the zeros and the 20 ok
        if get_json(query)["data"]["result"]:
            break
        time.sleep(0.1)
    time.sleep(2.5)
    assert not firing(prometheus, "MmflowErrorRateHigh")
    for _ in range(5):  # 5 of 25 failed: 20% > 2%
        ended(labels, Status.FAILED, "timeout")
    deadline = time.time() + 30
    while time.time() < deadline and not firing(prometheus, "MmflowErrorRateHigh"):
        time.sleep(0.5)
    assert firing(prometheus, "MmflowErrorRateHigh")
    scraped = get_json(query)["data"]["result"]
    by_status = {r["metric"]["status"]: float(r["value"][1]) for r in scraped}
    assert by_status == {"ok": 20.0, "failed": 5.0, "rejected": 0.0}
    assert {r["metric"]["tenant"] for r in scraped} == {"acme"}


def firing(prometheus: str, alert: str) -> bool:
    alerts = get_json(f"{prometheus}/api/v1/alerts")["data"]["alerts"]
    return any(a["labels"]["alertname"] == alert and a["state"] == "firing" for a in alerts)


def test_the_webhook_serves_metrics(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from benchmarks.webhook_load import CountingSink
    from mmflow.deployments.webhook import WebhookSettings, create_app

    labels = TraceLabels("webhooktest", "run-2")
    metrics.prepare_run(labels)
    ended(labels, Status.REJECTED, "empty")
    settings = WebhookSettings(
        storage=str(tmp_path), secret=b"m" * 32 + b"etrics-test-secret-0123456789"
    )
    with TestClient(create_app(settings, sink=CountingSink())) as client:
        answer = client.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    line = 'mmflow_input_errors_total{code="empty",scenario="webhooktest",status="rejected"} 1.0'
    assert line in answer.text
