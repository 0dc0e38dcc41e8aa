"""The invoice flow: validate → normalise → route → read (text layer / OCR) → extract → verify
→ numeric sanity → persist, for each input; every input ends in a result or a typed rejection.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

from prefect import flow
from pydantic import BaseModel

from mmflow.blocks.providers import Budget, ProviderBlock, resolve_provider
from mmflow.flows.runs import InputSummary, run_scenario
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
from mmflow.tasks.models import Check, InvoiceResult, LineItem, Status
from mmflow.tasks.persist import join, write_model, write_parquet
from mmflow.tasks.schemas import line_items_table
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
    because it holds a live provider block, and what it hands verify is keyed by its outcome.
    """
    source = source_key(sha256)
    validated = unless_rejected(steps.run(VALIDATE, [source], uri=uri, limits=options.limits))
    normalised = unless_rejected(steps.run(NORMALISE, [validated], options=options.normalise))
    routes = steps.run(ROUTE, [normalised], options=options.route)
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
            options.route.vision_detail,
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
class InvoiceScenario:
    options: InvoiceOptions
    name: str = "invoice"
    vision: VisionSettings | None = None  # a live provider: only for pages routed VISION

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
        return {
            "route": ",".join(sorted({r.route.value for r in invoice.route})),
            **{name: field.value for name, field in invoice.fields.items()},
            "checks": _check_counts(invoice.checks),
            "line_items": [item.model_dump(mode="json") for item in invoice.line_items],
        }


class InvoiceRunReport(BaseModel):
    out: str
    documents: list[InputSummary]

    @property
    def failed(self) -> int:
        return sum(d.status is Status.FAILED for d in self.documents)


def write_line_items(out: str, summaries: list[InputSummary]) -> None:
    """`line_items.parquet`: every line item of the run, validated by the pandera schema."""
    table = line_items_table(
        [
            (
                [LineItem.model_validate(item) for item in s.details["line_items"]],
                s.sha256 or "",
                s.uri,
            )
            for s in summaries
            if s.status is Status.OK and s.details.get("line_items")
        ]
    )
    write_parquet(join(out, "line_items.parquet"), table)


@flow(name="invoice", log_prints=True)
def invoice_flow(
    inputs: list[str],
    out: str = "out",
    options: InvoiceOptions | None = None,
    cache: bool = True,
    cache_dir: str | None = None,
    workers: int = 2,
    stepwise_max: int = 4,
    group_size: int | None = None,
    provider: ProviderBlock | str | None = None,
    max_usd: Decimal | None = None,
    second_pass: bool = False,
) -> InvoiceRunReport:
    """Turn invoices and receipts (PDFs, scans, photos) into verified structured data.

    `provider` (a block, or a saved block's name) reads the pages the router sent to vision
    (set `options.route.allow_vision`); `max_usd` caps the run's model spending, and
    `second_pass` asks each document twice so disagreeing fields are flagged.
    """
    block = resolve_provider(provider)
    vision = (
        VisionSettings(block, Budget(max_usd_per_run=max_usd), second_pass)
        if block is not None
        else None
    )
    summaries = run_scenario(
        InvoiceScenario(options or InvoiceOptions(), vision=vision),
        inputs,
        out,
        cache,
        cache_dir,
        workers,
        stepwise_max,
        group_size,
    )
    write_line_items(out, summaries)
    return InvoiceRunReport(out=out, documents=summaries)
