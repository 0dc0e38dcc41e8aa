"""The invoice flow: validate → normalise → route → read (text layer / OCR) → extract → verify
→ numeric sanity → persist, for each input; every input ends in a result or a typed rejection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

from prefect import flow
from prefect.states import State
from pydantic import BaseModel

from mmflow.blocks.providers import resolve_provider
from mmflow.flows.runs import InputSummary, RunReport, RunSettings, run_name, run_scenario
from mmflow.flows.steps import StepRunner
from mmflow.tasks.caching import Stamped, source_key, unless_rejected
from mmflow.tasks.invoice import (
    EXTRACT,
    NORMALISE,
    READ,
    ROUTE,
    SANITY,
    VALIDATE,
    VERIFY,
    InvoiceOptions,
    assemble_result,
)
from mmflow.tasks.line_items_table import reconcile_line_items
from mmflow.tasks.models import Check, CheckStatus, InvoiceResult, Usd
from mmflow.tasks.persist import join, write_model
from mmflow.tasks.provider import Budget
from mmflow.tasks.vision import VisionSettings, as_extraction, run_vision, vision_pages


def process_invoice(
    uri: str,
    sha256: str,
    steps: StepRunner,
    options: InvoiceOptions,
    run_id: str,
    vision: VisionSettings | None = None,
) -> InvoiceResult:
    """One document through every step; raises `Stopped` when a step rejected it.

    With `vision`, a document with pages routed VISION is read by the model after its OCR text
    is extracted (the grounding text and the fallback); the vision step runs uncached, inline,
    because it holds a live provider, and what it hands verify is keyed by its outcome.
    """
    source = source_key(sha256)
    route = options.route(provider=vision is not None)
    validated = unless_rejected(steps.run(VALIDATE, [source], uri=uri, limits=options.limits))
    normalised = unless_rejected(steps.run(NORMALISE, [validated], options=options.normalise))
    routes = steps.run(ROUTE, [normalised], options=route)
    text = steps.run(READ, [normalised, routes], ocr_engine=options.ocr_engine, dpi=options.dpi)
    extraction = steps.run(EXTRACT, [text])
    chain: list[Stamped[Any]] = [validated, normalised, routes, text, extraction]
    vision_checks: list[Check] = []
    if vision is not None and vision_pages(routes.value):
        outcome = run_vision(
            normalised,
            routes,
            text,
            extraction,
            vision,
            route.vision_detail,
            options.dpi,
            run_id,
        )
        extraction, vision_checks = as_extraction(outcome), outcome.value.checks
        chain.append(outcome)
    verified = steps.run(VERIFY, [extraction, text])
    sanity = steps.run(SANITY, [verified])
    chain += [verified, sanity]
    return assemble_result(validated, routes, verified, sanity, chain, run_id, vision_checks)


def _check_counts(checks: list[Check]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for check in checks:
        counts[check.status.value] = counts.get(check.status.value, 0) + 1
    return counts


@dataclass(frozen=True)
class InvoicePipeline:
    """The invoice scenario for the runner (flows/runs.py)."""

    Options: ClassVar[type[BaseModel]] = InvoiceOptions
    options: InvoiceOptions = field(default_factory=InvoiceOptions)
    vision: VisionSettings | None = None  # a live provider: only for pages routed VISION
    name: str = "invoice"

    @property
    def max_input_bytes(self) -> int:
        """Larger inputs are refused from their size before they are hashed."""
        return self.options.limits.max_bytes

    def process(self, uri: str, sha256: str, steps: StepRunner, run_id: str) -> BaseModel:
        return process_invoice(uri, sha256, steps, self.options, run_id, self.vision)

    def write(self, result: BaseModel, out: str, stem: str) -> dict[str, bytes]:
        path = join(out, f"{stem}.json")
        return {path: write_model(path, result)}

    def details(self, result: BaseModel) -> dict[str, Any]:
        invoice = cast(InvoiceResult, result)
        failed = [c for c in invoice.checks if c.status is CheckStatus.FAIL]
        return {
            "route": ",".join(sorted({r.route.value for r in invoice.route})),
            **{name: field.value for name, field in invoice.fields.items()},
            "checks": _check_counts(invoice.checks),
            "review": [f"{c.name}: {c.detail}" for c in failed],
            "line_items": [item.model_dump(mode="json") for item in invoice.line_items],
        }

    def finish(self, out: str, summaries: list[InputSummary]) -> dict[str, Any]:
        """`line_items.parquet` kept consistent with the folder's whole manifest."""
        fresh = {
            (s.uri, s.sha256 or ""): s.details["line_items"]
            for s in summaries
            if "line_items" in s.details
        }
        return {"line_items": reconcile_line_items(out, fresh)}


@flow(name="invoice", flow_run_name=run_name("invoice"), log_prints=True)
def invoice_flow(
    inputs: list[str],
    out: str,
    options: InvoiceOptions = InvoiceOptions(),
    provider: str | None = None,
    max_usd: Usd | None = None,
    second_pass: bool = False,
    names: list[str] | None = None,
    run: RunSettings = RunSettings(),
) -> RunReport | State[Any]:
    """Turn invoices and receipts (PDFs, scans, photos) into verified fields and line items.

    Args:
        inputs: Files, folders, globs or s3:// URIs to process.
        out: Absolute folder or s3:// prefix for the results, manifest.jsonl and
            line_items.parquet.
        options: OCR engine, rendering resolution and, under `advanced`, limits and thresholds.
        provider: Name of a saved provider block (OpenAI, Anthropic, OpenAI-compatible) that
            reads pages with no usable text layer; empty runs fully offline.
        max_usd: Most the run may spend on model calls, in US dollars.
        second_pass: Ask the model twice and flag the fields where its answers differ.
        names: Display names of the inputs, in order (the webhook passes uploaded file names).
        run: Workers, caching, timeouts and strictness of the run.
    """
    block = resolve_provider(provider)
    vision = (
        VisionSettings(block, Budget(max_usd_per_run=max_usd), second_pass)
        if block is not None
        else None
    )
    return run_scenario(InvoicePipeline(options, vision), inputs, out, run, names)
