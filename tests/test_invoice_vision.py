"""Vision in the invoice flow: an OpenAI provider driven through the real SDK against a local
server that speaks its wire format, grounded in the OCR text of the same scanned page."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from mmflow.blocks.providers import Budget, OpenAIProvider
from mmflow.flows.invoice import invoice_flow
from mmflow.flows.runs import RunSettings
from mmflow.tasks.document import read_document, route_document
from mmflow.tasks.invoice import InvoiceOptions
from mmflow.tasks.models import FIELD_NAMES, CheckStatus, DocumentText, InvoiceResult, Route
from mmflow.tasks.normalise import NormaliseOptions, normalise_document
from mmflow.tasks.samples import make_samples
from mmflow.tasks.validate import ValidationLimits, validate_bytes
from mmflow.tasks.verify import verify_extraction
from mmflow.tasks.vision import DISAGREEMENT_FACTOR, VISION_CONFIDENCE, extract_with_vision
from tests.fakeproviders import OPENAI_CHAT, FakeServer, Reply, openai_chat, openai_error, saved

VISION_ROUTE = InvoiceOptions()  # with a provider, pages without a text layer go to vision
STRAY_BUYER = "Phantom Holdings Ltd"


@dataclass(frozen=True)
class Scan:
    path: Path
    truth: dict[str, Any]


@pytest.fixture(scope="module")
def scan(tmp_path_factory: pytest.TempPathFactory) -> Scan:
    """The project's image-only scanned invoice (no text layer: the router's vision case)."""
    samples = make_samples(tmp_path_factory.mktemp("samples"))
    path = next(p for p in samples if p.name == "brenner-rechnung-scan.pdf")
    return Scan(path, json.loads(path.with_suffix(".truth.json").read_text()))


@pytest.fixture(scope="module")
def scan_text(scan: Scan) -> DocumentText:
    data = scan.path.read_bytes()
    document = normalise_document(
        data, validate_bytes(data, str(scan.path), ValidationLimits()), NormaliseOptions()
    )
    routes = route_document(document, VISION_ROUTE.route(provider=True))
    assert [r.route for r in routes] == [Route.VISION]
    return read_document(document, routes)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Shared by the flow tests: the page is OCRed once, later runs read it cached."""
    return str(tmp_path_factory.mktemp("cache"))


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as fake:
        yield fake


def answer(truth: dict[str, Any], **changes: str) -> str:
    """The model's JSON answer: the invoice as printed, with `changes` applied."""
    body: dict[str, Any] = {name: truth[name] for name in FIELD_NAMES}
    body["line_items"] = [
        {k: item[k] for k in ("description", "quantity", "unit_price", "amount")}
        for item in truth["line_items"]
    ]
    return json.dumps(body | changes)


def provider(server: FakeServer, **settings: Any) -> OpenAIProvider:
    return OpenAIProvider(
        api_key="sk-test", base_url=f"{server.url}/v1", model="gpt-4o", **settings
    )


def _page_png(scan: Scan) -> bytes:
    import pymupdf

    with pymupdf.open(scan.path) as pdf:
        return bytes(pdf[0].get_pixmap(dpi=100).tobytes("png"))


def _result(report: Any) -> InvoiceResult:
    (document,) = report.inputs
    assert document.status.value == "ok", document.error
    return InvoiceResult.model_validate_json(Path(document.output).read_text())


def _check(result: InvoiceResult, name: str) -> Any:
    return next(c for c in result.checks if c.name == name)


# ---------------------------------------------------------------- the plain function


def test_vision_values_are_grounded_in_the_ocr_words_of_the_page(
    scan: Scan, scan_text: DocumentText, server: FakeServer
) -> None:
    server.queue("POST", OPENAI_CHAT, openai_chat(answer(scan.truth)))
    reading = extract_with_vision(
        [_page_png(scan)], scan_text.pages, provider(server), Budget(), "high"
    )
    total = reading.extraction.fields["total"]
    assert total.value == scan.truth["total"]
    assert total.evidence == scan.truth["printed"]["total"]
    assert total.page == 1 and total.bbox is not None
    assert total.confidence == VISION_CONFIDENCE
    assert total.source == "vision:openai:gpt-4o"
    assert reading.checks[0].status is CheckStatus.PASS
    _, checks = verify_extraction(reading.extraction, scan_text)
    assert next(c for c in checks if c.name == "grounding:total").status is CheckStatus.PASS


def test_a_value_not_on_the_page_is_flagged_and_low_confidence(
    scan: Scan, scan_text: DocumentText, server: FakeServer
) -> None:
    server.queue("POST", OPENAI_CHAT, openai_chat(answer(scan.truth, buyer_name=STRAY_BUYER)))
    reading = extract_with_vision(
        [_page_png(scan)], scan_text.pages, provider(server), Budget(), "high"
    )
    buyer = reading.extraction.fields["buyer_name"]
    assert buyer.value == STRAY_BUYER
    assert buyer.confidence < VISION_CONFIDENCE / 2 and buyer.evidence is None
    (grounding,) = reading.checks
    assert grounding.status is CheckStatus.WARN and "buyer_name" in grounding.detail
    assert "total" not in grounding.detail


def test_second_pass_disagreement_lowers_confidence_and_flags_the_field(
    scan: Scan, scan_text: DocumentText, server: FakeServer
) -> None:
    server.queue(
        "POST",
        OPENAI_CHAT,
        openai_chat(answer(scan.truth)),
        openai_chat(answer(scan.truth, total="1490.38")),
    )
    reading = extract_with_vision(
        [_page_png(scan)], scan_text.pages, provider(server), Budget(), "high", second_pass=True
    )
    assert len(server.sent(OPENAI_CHAT)) == 2
    fields = reading.extraction.fields
    assert fields["total"].confidence == VISION_CONFIDENCE * DISAGREEMENT_FACTOR
    assert fields["subtotal"].confidence == VISION_CONFIDENCE
    agreement = reading.checks[-1]
    assert agreement.name == "vision_agreement" and agreement.status is CheckStatus.WARN
    assert "total" in agreement.detail and "subtotal" not in agreement.detail


# ---------------------------------------------------------------- the flow


@pytest.mark.slow
def test_flow_reads_a_vision_page_with_the_provider_on_the_prefect_server(
    prefect_server: str, scan: Scan, cache_dir: str, tmp_path: Path, server: FakeServer
) -> None:
    server.on(
        "POST", OPENAI_CHAT, lambda _: openai_chat(answer(scan.truth, buyer_name=STRAY_BUYER))
    )
    report = invoice_flow(
        inputs=[str(scan.path)],
        out=str(tmp_path),
        options=VISION_ROUTE,
        provider=saved(provider(server)),
        run=RunSettings(cache_dir=cache_dir),
    )
    result = _result(report)
    assert [r.route for r in result.route] == [Route.VISION]
    assert len(server.sent(OPENAI_CHAT)) == 1
    assert result.fields["total"].source == "vision:openai:gpt-4o"
    assert result.fields["total"].value == scan.truth["total"]
    assert _check(result, "vision").status is CheckStatus.PASS
    assert _check(result, "grounding:total").status is CheckStatus.PASS
    assert _check(result, "grounding:buyer_name").status is CheckStatus.FAIL
    assert _check(result, "vision_grounding").status is CheckStatus.WARN
    assert _check(result, "subtotal_plus_tax").status is CheckStatus.PASS  # sanity ran on it
    vision_step = next(s for s in result.lineage["steps"] if s["name"] == "vision")
    assert vision_step["engine"] == "openai:gpt-4o" and "sk-test" not in json.dumps(result.lineage)


@pytest.mark.slow
def test_a_budget_too_small_falls_back_to_the_ocr_extractor_without_a_request(
    prefect_server: str, scan: Scan, cache_dir: str, tmp_path: Path, server: FakeServer
) -> None:
    server.on("POST", OPENAI_CHAT, lambda _: openai_chat(answer(scan.truth)))
    report = invoice_flow(
        inputs=[str(scan.path)],
        out=str(tmp_path),
        options=VISION_ROUTE,
        provider=saved(provider(server)),
        max_usd=Decimal("0.000001"),
        run=RunSettings(cache_dir=cache_dir),
    )
    result = _result(report)
    assert server.sent(OPENAI_CHAT) == []
    fallback = _check(result, "vision")
    assert fallback.status is CheckStatus.WARN and "BudgetExceeded" in fallback.detail
    assert not str(result.fields["total"].source).startswith("vision")
    assert result.fields["total"].value == scan.truth["total"]


@pytest.mark.slow
def test_a_failing_then_down_provider_falls_back_to_the_ocr_extractor(
    prefect_server: str, scan: Scan, cache_dir: str, tmp_path: Path, server: FakeServer
) -> None:
    server.queue("POST", OPENAI_CHAT, openai_error(500, "boom", type="server_error"))
    server.on("POST", OPENAI_CHAT, lambda _: Reply(503, {"error": {"message": "down"}}))
    report = invoice_flow(
        inputs=[str(scan.path)],
        out=str(tmp_path),
        options=VISION_ROUTE,
        provider=saved(provider(server, max_retries=2, backoff_base_s=0.01, backoff_max_s=0.02)),
        run=RunSettings(cache_dir=cache_dir),
    )
    result = _result(report)
    assert len(server.sent(OPENAI_CHAT)) == 3  # the call and its two retries
    fallback = _check(result, "vision")
    assert fallback.status is CheckStatus.WARN and "ProviderCallFailed" in fallback.detail
    assert result.fields["total"].value == scan.truth["total"]
    assert not str(result.fields["total"].source).startswith("vision")


@pytest.mark.slow
def test_without_a_provider_or_with_vision_off_pages_are_read_by_ocr(
    prefect_server: str, scan: Scan, cache_dir: str, tmp_path: Path, server: FakeServer
) -> None:
    plain = _result(
        invoice_flow(
            inputs=[str(scan.path)],
            out=str(tmp_path / "plain"),
            run=RunSettings(cache_dir=cache_dir),
        )
    )
    unrouted = _result(
        invoice_flow(
            inputs=[str(scan.path)],
            out=str(tmp_path / "unrouted"),
            options=InvoiceOptions(vision=False),
            provider=saved(provider(server)),
            run=RunSettings(cache_dir=cache_dir),
        )
    )
    assert server.sent(OPENAI_CHAT) == []  # a provider is used only for pages routed VISION
    assert [r.route for r in plain.route] == [Route.OCR]
    for result in (unrouted,):
        assert result.fields == plain.fields
        assert result.line_items == plain.line_items
        assert result.checks == plain.checks
        assert "vision" not in {s["name"] for s in result.lineage["steps"]}


@pytest.mark.slow
def test_cli_loads_a_saved_provider_block_by_name_and_reads_the_vision_page(
    prefect_server: str, scan: Scan, cache_dir: str, tmp_path: Path, server: FakeServer
) -> None:
    server.on("POST", OPENAI_CHAT, lambda _: openai_chat(answer(scan.truth)))
    provider(server).save("invoice-vision-test", overwrite=True)
    out = tmp_path / "out"
    env = dict(os.environ, PREFECT_API_URL=prefect_server)
    command = ["run", "invoice", str(scan.path), "--out", str(out), "--cache-dir", cache_dir]
    done = subprocess.run(
        [sys.executable, "-m", "mmflow.cli", *command, "--provider-block", "invoice-vision-test"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(server.sent(OPENAI_CHAT)) == 1
    result = InvoiceResult.model_validate_json((out / f"{scan.path.stem}.json").read_text())
    assert result.fields["total"].source == "vision:openai:gpt-4o"
    assert _check(result, "vision").status is CheckStatus.PASS


@pytest.mark.slow
def test_a_batch_uses_the_provider_inside_grouped_task_runs(
    prefect_server: str, scan: Scan, cache_dir: str, tmp_path: Path, server: FakeServer
) -> None:
    server.on("POST", OPENAI_CHAT, lambda _: openai_chat(answer(scan.truth)))
    report = invoice_flow(
        inputs=[str(scan.path)],
        out=str(tmp_path),
        options=VISION_ROUTE,
        provider=saved(provider(server)),
        run=RunSettings(cache_dir=cache_dir, stepwise_max=0),
    )
    result = _result(report)
    assert len(server.sent(OPENAI_CHAT)) == 1
    assert result.fields["total"].source == "vision:openai:gpt-4o"
