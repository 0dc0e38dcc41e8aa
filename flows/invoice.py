"""The invoice flow: validate → normalise → route → read (text layer / OCR) → split → extract →
verify → numeric sanity → persist, for each input; every input ends in a result or a typed
rejection. An input holding several documents gives a result (and a file) per document.
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
from mmflow.tasks.duplicates import SeenInvoices, held_identities
from mmflow.tasks.invoice import (
    EXTRACT,
    NORMALISE,
    PART,
    READ,
    ROUTE,
    SANITY,
    SPLIT,
    VALIDATE,
    VERIFY,
    InvoiceOptions,
    assemble_result,
)
from mmflow.tasks.line_items_table import reconcile
from mmflow.tasks.models import (
    Check,
    DocumentText,
    FieldValue,
    InvoiceDocuments,
    InvoiceResult,
    PageRoute,
    Usd,
)
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
) -> InvoiceDocuments:
    """One input through every step; raises `Stopped` when a step rejected it.

    The read pages are split into the documents they hold (one for most inputs), and each
    document is extracted, verified and checked on its own. With `vision`, a document with
    pages routed VISION is read by the model after its OCR text is extracted (the grounding
    text and the fallback); the vision step runs uncached, inline, because it holds a live
    provider, and what it hands verify is keyed by its outcome.
    """
    source = source_key(sha256)
    route = options.route(provider=vision is not None)
    validated = unless_rejected(steps.run(VALIDATE, [source], uri=uri, limits=options.limits))
    normalised = unless_rejected(steps.run(NORMALISE, [validated], options=options.normalise))
    routes = steps.run(ROUTE, [normalised], options=route)
    text = steps.run(READ, [normalised, routes], ocr_engine=options.ocr_engine, dpi=options.dpi)
    split = steps.run(SPLIT, [text])
    parts = split.value.parts
    results = []
    for index in range(len(parts)):
        # one document: its text is the input's, so its steps keep the keys they always had
        part = text if len(parts) == 1 else steps.run(PART, [text, split], index=index)
        extraction = steps.run(EXTRACT, [part])
        chain: list[Stamped[Any]] = [validated, normalised, routes, text, split, extraction]
        vision_checks: list[Check] = []
        part_routes = routes if len(parts) == 1 else _routes_of(routes, part)
        if vision is not None and vision_pages(part_routes.value):
            outcome = run_vision(
                normalised,
                part_routes,
                part,
                extraction,
                vision,
                route.vision_detail,
                options.dpi,
                run_id,
            )
            extraction, vision_checks = as_extraction(outcome), outcome.value.checks
            chain.append(outcome)
        verified = steps.run(VERIFY, [extraction, part])
        sanity = steps.run(SANITY, [verified])
        chain += [verified, sanity]
        results.append(
            assemble_result(
                validated,
                routes,
                verified,
                sanity,
                chain,
                run_id,
                vision_checks,
                split.value,
                index,
            )
        )
    return InvoiceDocuments(results=results)


def _routes_of(
    routes: Stamped[list[PageRoute]], part: Stamped[DocumentText]
) -> Stamped[list[PageRoute]]:
    """The routes of one document's pages, keyed by the part they belong to."""
    pages = {page.page for page in part.value.pages}
    return routes.model_copy(
        update={
            "key": f"{routes.key}:{part.key}",
            "value": [r for r in routes.value if r.page in pages],
        }
    )


def _check_counts(checks: list[Check]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for check in checks:
        counts[check.status.value] = counts.get(check.status.value, 0) + 1
    return counts


def results_of(result: BaseModel) -> list[InvoiceResult]:
    """The results of one input: what `process` made, or one result file read back."""
    if isinstance(result, InvoiceResult):
        return [result]
    return cast(InvoiceDocuments, result).results


_NO_VALUE = FieldValue()


@dataclass(frozen=True)
class InvoicePipeline:
    """The invoice scenario for the runner (flows/runs.py)."""

    Options: ClassVar[type[BaseModel]] = InvoiceOptions
    options: InvoiceOptions = field(default_factory=InvoiceOptions)
    vision: VisionSettings | None = None  # a live provider: only for pages routed VISION
    seen: SeenInvoices | None = None  # invoices seen before: repeats get `duplicate_of`
    name: str = "invoice"

    @property
    def max_input_bytes(self) -> int:
        """Larger inputs are refused from their size before they are hashed."""
        return self.options.limits.max_bytes

    def process(self, uri: str, sha256: str, steps: StepRunner, run_id: str) -> BaseModel:
        return process_invoice(uri, sha256, steps, self.options, run_id, self.vision)

    def write(self, result: BaseModel, out: str, stem: str) -> dict[str, bytes]:
        """`<stem>.json`; an input of several documents adds `<stem>-doc2.json`, … in page
        order, right after it (the runner reads the first `documents` paths as the results)."""
        documents = results_of(result)
        if self.seen is not None:  # marked in place, so `details` sees it too
            documents[:] = [self.seen.check_in(document) for document in documents]
        written: dict[str, bytes] = {}
        for number, document in enumerate(documents, start=1):
            path = join(out, f"{stem}.json" if number == 1 else f"{stem}-doc{number}.json")
            written[path] = write_model(path, document)
        return written

    def details(self, result: BaseModel) -> dict[str, Any]:
        """The first document's fields and checks; `documents` and `review` over all of them,
        and every document's line items with the document they belong to."""
        documents = results_of(result)
        first = documents[0]
        return {
            "route": ",".join(sorted({r.route.value for d in documents for r in d.route})),
            **{name: value.value for name, value in first.fields.items()},
            "checks": _check_counts([c for d in documents for c in d.checks]),
            "documents": len(documents),
            "review": any(d.review for d in documents),
            "review_reasons": [reason for d in documents for reason in d.review_reasons],
            "line_items": [
                item.model_dump(mode="json")
                | {
                    "document": number,
                    "document_type": d.fields.get("document_type", _NO_VALUE).value,
                    "currency": d.fields.get("currency", _NO_VALUE).value,
                }
                for number, d in enumerate(documents, start=1)
                for item in d.line_items
            ],
        }

    def finish(self, out: str, summaries: list[InputSummary]) -> dict[str, Any]:
        """`line_items.parquet` kept consistent with the folder's whole manifest."""
        fresh = {
            (s.uri, s.sha256 or ""): s.details["line_items"]
            for s in summaries
            if "line_items" in s.details
        }
        reconciled = reconcile(out, fresh)
        totals: dict[str, Any] = {"line_items": reconciled.rows}
        if reconciled.unreadable:  # results deleted or cut short since their run: no rows
            totals["line_items_unreadable"] = reconciled.unreadable
        if reconciled.invalid:  # items that break the table's rules (their results say so)
            totals["line_items_invalid"] = reconciled.invalid
        return totals


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
    seen = SeenInvoices(held_identities(out)) if "://" in out or out.startswith("/") else None
    pipeline = InvoicePipeline(options, vision, seen)
    return run_scenario(pipeline, inputs, out, run, names)
