"""OpenTelemetry export: a real image run with an OTLP endpoint configured sends its spans to a
loopback OTLP/HTTP receiver, which decodes them with the official protobuf types
(opentelemetry-proto), as the provider tests drive the SDKs against wire-format servers."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from mmflow.blocks.providers import OpenAIProvider
from mmflow.flows.image import image_flow
from mmflow.flows.runs import RunSettings
from mmflow.tasks.image import ImageTask
from tests.fakeproviders import OPENAI_CHAT, FakeServer, openai_chat, saved
from tests.imagesamples import chart_image, png

pytestmark = pytest.mark.slow


class OtlpReceiver:
    """POST /v1/traces with an ExportTraceServiceRequest; keeps every span it decoded."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        received = self.spans

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                assert self.path == "/v1/traces"
                assert self.headers["Content-Type"] == "application/x-protobuf"
                request = ExportTraceServiceRequest.FromString(body)
                for resource in request.resource_spans:
                    for scope in resource.scope_spans:
                        received.extend(scope.spans)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> OtlpReceiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()


def value(attribute: AnyValue) -> Any:
    return getattr(attribute, attribute.WhichOneof("value"))


def attributes(span: Any) -> dict[str, Any]:
    return {a.key: value(a.value) for a in span.attributes}


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as started:
        monkeypatch.setenv("MMFLOW_OTLP_ENDPOINT", started.url)
        yield started


def test_a_traced_run_sends_a_span_per_step_and_model_call_spans_with_tokens_and_cost(
    prefect_server: str, tmp_path: Path, receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MMFLOW_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    (tmp_path / "chart.png").write_bytes(png(chart_image(0, engine="pillow")))
    answer = json.dumps({"description": "A bar chart.", "objects": ["bars"]})
    with FakeServer() as server:
        server.on("POST", OPENAI_CHAT, lambda _req: openai_chat(answer, prompt_tokens=321))
        report = image_flow(
            inputs=[str(tmp_path / "chart.png")],
            out=str(tmp_path / "out"),
            task=ImageTask.DESCRIBE,
            provider=saved(OpenAIProvider(api_key="sk-test", base_url=f"{server.url}/v1")),
            max_usd=Decimal("1"),
            run=RunSettings(cache=False, tenant="acme", feature="alt-text"),
        )
    trace = report.inputs[0].trace
    assert trace is not None
    spans = [s for s in receiver.spans if s.trace_id.hex() == trace.trace_id]
    (root,) = [s for s in spans if s.name == "mmflow.input"]
    root_attributes = attributes(root)
    assert root_attributes["mmflow.tenant"] == "acme"
    assert root_attributes["mmflow.feature"] == "alt-text"
    assert root_attributes["mmflow.prompt_tokens"] == 321
    steps = [s for s in spans if s.name.startswith("step ")]
    assert len(steps) >= 3 and all(s.parent_span_id == root.span_id for s in steps)
    assert all(attributes(s)["mmflow.step.cached"] is False for s in steps)
    (call,) = [s for s in spans if s.name == "extract gpt-4o"]
    assert call.parent_span_id == root.span_id
    call_attributes = attributes(call)
    assert call_attributes["gen_ai.usage.input_tokens"] == 321
    assert call_attributes["gen_ai.request.model"] == "gpt-4o"
    assert call_attributes["mmflow.image_tokens"] == 85
    assert call_attributes["mmflow.cost_usd"] > 0
    assert root.start_time_unix_nano <= call.start_time_unix_nano <= call.end_time_unix_nano
    assert call.end_time_unix_nano <= root.end_time_unix_nano


def test_without_an_endpoint_nothing_is_exported(monkeypatch: pytest.MonkeyPatch) -> None:
    from mmflow.tasks import telemetry_settings

    for name in ("MMFLOW_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert telemetry_settings.otlp_traces_endpoint() is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")
    assert telemetry_settings.otlp_traces_endpoint() == "http://collector:4318/v1/traces"
