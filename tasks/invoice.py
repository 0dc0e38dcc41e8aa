"""The invoice pipeline's steps: each feeds one plain function what the step before produced.

Flows compose these `Step`s; whether each runs as its own Prefect task (one document, every
step visible in the UI) or inline inside a grouped batch task, the cache keys are the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field

from mmflow.tasks.caching import Stamped, Step
from mmflow.tasks.document import read_document, route_document
from mmflow.tasks.extract import extract_invoice
from mmflow.tasks.identifier_checks import identifier_checks
from mmflow.tasks.inputs import read_input, sha256_of
from mmflow.tasks.models import (
    Check,
    CheckStatus,
    DocumentSplit,
    DocumentText,
    Extraction,
    InvoiceResult,
    NormalisedDocument,
    PageRoute,
    SourceInfo,
    ValidatedInput,
)
from mmflow.tasks.normalise import NormaliseOptions, normalise_document
from mmflow.tasks.ocr import OcrEngine, engine_version
from mmflow.tasks.route import RouteOptions
from mmflow.tasks.sanity import numeric_sanity
from mmflow.tasks.split import part_text, split_document
from mmflow.tasks.textlayer import ENGINE as TEXT_LAYER_ENGINE
from mmflow.tasks.validate import ValidationLimits, validate_bytes
from mmflow.tasks.verify import verify_extraction
from mmflow.tasks.versions import installed_version


class InvoiceAdvanced(BaseModel):
    """Limits and thresholds of the invoice pipeline; the defaults suit invoices, receipts and
    scans."""

    limits: ValidationLimits = Field(
        default_factory=ValidationLimits,
        description="Inputs beyond these limits are rejected before any expensive work.",
    )
    normalise: NormaliseOptions = Field(
        default_factory=NormaliseOptions, description="How pages are prepared for reading."
    )
    route: RouteOptions = Field(
        default_factory=RouteOptions,
        description="When a page's text layer is trusted, and when it is read by OCR instead.",
    )


class InvoiceOptions(BaseModel):
    """Everything that changes what the invoice pipeline computes (part of every cache key)."""

    ocr_engine: OcrEngine = Field(
        OcrEngine.RAPIDOCR, description="OCR engine for pages without a usable text layer."
    )
    dpi: int = Field(
        200, ge=72, le=600, description="Resolution at which PDF pages are rendered for OCR."
    )
    vision: bool = Field(
        True,
        description="With a provider: pages without a usable text layer are read by the model "
        "(within the run's budget), else by OCR.",
    )
    advanced: InvoiceAdvanced = Field(
        default_factory=InvoiceAdvanced,
        description="Limits and thresholds; the defaults suit invoices, receipts and scans.",
    )

    # What each step is given: the one `dpi`, put where each step reads it.
    @property
    def limits(self) -> ValidationLimits:
        return self.advanced.limits.model_copy(update={"render_dpi": self.dpi})

    @property
    def normalise(self) -> NormaliseOptions:
        return self.advanced.normalise.model_copy(update={"dpi": self.dpi})

    def route(self, provider: bool = False) -> RouteOptions:
        """The router's options; pages go to vision only when a provider is configured."""
        return self.advanced.route.model_copy(
            update={"render_dpi": self.dpi, "allow_vision": provider and self.vision}
        )


def _validate(sha256: str, *, uri: str, limits: ValidationLimits) -> ValidatedInput:
    data = read_input(uri, max_bytes=limits.max_bytes)  # size judged before reading
    if sha256_of(data) != sha256:
        raise RuntimeError(f"{uri} changed while it was being processed; run it again")
    return validate_bytes(data, uri, limits)


def _normalise(source: ValidatedInput, *, options: NormaliseOptions) -> NormalisedDocument:
    return normalise_document(read_input(source.uri), source, options)


def _route(document: NormalisedDocument, *, options: RouteOptions) -> list[PageRoute]:
    return route_document(document, options)


def _read(
    document: NormalisedDocument, routes: list[PageRoute], *, ocr_engine: OcrEngine, dpi: int
) -> DocumentText:
    return read_document(document, routes, ocr_engine, dpi)


def _verify(extraction: Extraction, text: DocumentText) -> tuple[Extraction, list[Check]]:
    return verify_extraction(extraction, text)


def _part(text: DocumentText, split: DocumentSplit, *, index: int) -> DocumentText:
    return part_text(text, split, index)


def _sanity(verified: tuple[Extraction, list[Check]]) -> list[Check]:
    return [*numeric_sanity(verified[0]), *identifier_checks(verified[0])]


def _ocr_engine(params: Mapping[str, Any]) -> str:
    return engine_version(params["ocr_engine"])


def _engines_used(text: DocumentText) -> str:
    """The engines that read the pages: the text layer, an OCR engine, or both."""
    used = {page.engine for page in text.pages}
    names = [
        f"pymupdf {installed_version('pymupdf')}"
        if engine == TEXT_LAYER_ENGINE
        else engine_version(OcrEngine(engine))
        for engine in sorted(used)
    ]
    return ", ".join(names)


VALIDATE = Step("validate", _validate, lambda p: f"pymupdf {installed_version('pymupdf')}")
NORMALISE = Step("normalise", _normalise, lambda p: f"pillow {installed_version('pillow')}")
ROUTE = Step("route", _route)
READ = Step(
    "read",
    _read,
    _ocr_engine,
    _engines_used,
)
SPLIT = Step("split", split_document)
PART = Step("part", _part)
EXTRACT = Step("extract", extract_invoice)
VERIFY = Step("verify", _verify)
SANITY = Step("sanity", _sanity)
STEPS = (VALIDATE, NORMALISE, ROUTE, READ, SPLIT, EXTRACT, VERIFY, SANITY)


def review_reasons(sanity: list[Check]) -> list[str]:
    """Why a person should look before paying: every sanity or identifier check that failed
    outright (warnings do not count)."""
    return [f"{c.name}: {c.detail}" for c in sanity if c.status is CheckStatus.FAIL]


def assemble_result(
    validated: Stamped[ValidatedInput],
    routes: Stamped[list[PageRoute]],
    verified: Stamped[tuple[Extraction, list[Check]]],
    sanity: Stamped[list[Check]],
    lineage_steps: list[Stamped[Any]],
    run_id: str,
    extra_checks: Sequence[Check] = (),
    split: DocumentSplit | None = None,
    part: int = 0,
) -> InvoiceResult:
    """The `<stem>.json` document: fields, line items, tax lines, checks, routes and lineage.

    `extra_checks` (the vision step's, when a provider read the document) follow verify's.
    For the `part`-th document of an input of several (`split`), `source` names its pages and
    the routes are those of its pages; the split's check comes first.
    """
    source = validated.value
    extraction, verify_checks = verified.value
    parts = split.parts if split is not None else [(1, source.pages)]
    first, last = parts[part]
    split_checks = split.checks if split is not None else []
    reasons = review_reasons(sanity.value)
    return InvoiceResult(
        source=SourceInfo(
            uri=source.uri,
            sha256=source.sha256,
            media_type=source.media_type,
            pages=source.pages,
            document=part + 1,
            documents=len(parts),
            page_range=(first, last),
        ),
        route=[r for r in routes.value if first <= r.page <= last],
        fields=extraction.fields,
        line_items=extraction.line_items,
        tax_lines=extraction.tax_lines,
        review=bool(reasons),
        review_reasons=reasons,
        checks=[*split_checks, *verify_checks, *extra_checks, *sanity.value],
        lineage={
            "input_sha256": source.sha256,
            "mmflow_version": installed_version("mmflow"),
            "flags": source.flags,
            "steps": [
                s.lineage.model_copy(update={"cached": s.run_id != run_id}).model_dump(mode="json")
                for s in lineage_steps
            ],
        },
    )
