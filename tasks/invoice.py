"""The invoice pipeline's steps: each feeds one plain function what the step before produced.

Flows compose these `Step`s; whether each runs as its own Prefect task (one document, every
step visible in the UI) or inline inside a grouped batch task, the cache keys are the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib.metadata import version
from typing import Any

from pydantic import BaseModel, Field

from mmflow.tasks.caching import Stamped, Step
from mmflow.tasks.document import read_document, route_document
from mmflow.tasks.extract import extract_invoice
from mmflow.tasks.inputs import read_input, sha256_of
from mmflow.tasks.models import (
    Check,
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
from mmflow.tasks.textlayer import ENGINE as TEXT_LAYER_ENGINE
from mmflow.tasks.validate import ValidationLimits, validate_bytes
from mmflow.tasks.verify import verify_extraction


class InvoiceOptions(BaseModel):
    """Everything that changes what the invoice pipeline computes (part of every cache key)."""

    ocr_engine: OcrEngine = OcrEngine.RAPIDOCR
    limits: ValidationLimits = Field(default_factory=ValidationLimits)
    normalise: NormaliseOptions = Field(default_factory=NormaliseOptions)
    route: RouteOptions = Field(default_factory=RouteOptions)  # render_dpi: pages to OCR

    @property
    def dpi(self) -> int:
        return self.route.render_dpi


def _validate(sha256: str, *, uri: str, limits: ValidationLimits) -> ValidatedInput:
    data = read_input(uri)
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


def _sanity(verified: tuple[Extraction, list[Check]]) -> list[Check]:
    return numeric_sanity(verified[0])


def _ocr_engine(params: Mapping[str, Any]) -> str:
    return engine_version(params["ocr_engine"])


def _engines_used(text: DocumentText) -> str:
    """The engines that read the pages: the text layer, an OCR engine, or both."""
    used = {page.engine for page in text.pages}
    names = [
        f"pymupdf {version('pymupdf')}"
        if engine == TEXT_LAYER_ENGINE
        else engine_version(OcrEngine(engine))
        for engine in sorted(used)
    ]
    return ", ".join(names)


VALIDATE = Step("validate", _validate, lambda p: f"pymupdf {version('pymupdf')}")
NORMALISE = Step("normalise", _normalise, lambda p: f"pillow {version('pillow')}")
ROUTE = Step("route", _route)
READ = Step(
    "read",
    _read,
    _ocr_engine,
    _engines_used,
)
EXTRACT = Step("extract", extract_invoice)
VERIFY = Step("verify", _verify)
SANITY = Step("sanity", _sanity)
STEPS = (VALIDATE, NORMALISE, ROUTE, READ, EXTRACT, VERIFY, SANITY)


def assemble_result(
    validated: Stamped[ValidatedInput],
    routes: Stamped[list[PageRoute]],
    verified: Stamped[tuple[Extraction, list[Check]]],
    sanity: Stamped[list[Check]],
    lineage_steps: list[Stamped[Any]],
    run_id: str,
    extra_checks: Sequence[Check] = (),
) -> InvoiceResult:
    """The `<stem>.json` document: fields, line items, checks, routes and lineage.

    `extra_checks` (the vision step's, when a provider read the document) follow verify's.
    """
    source = validated.value
    extraction, verify_checks = verified.value
    return InvoiceResult(
        source=SourceInfo(
            uri=source.uri, sha256=source.sha256, media_type=source.media_type, pages=source.pages
        ),
        route=routes.value,
        fields=extraction.fields,
        line_items=extraction.line_items,
        checks=[*verify_checks, *extra_checks, *sanity.value],
        lineage={
            "input_sha256": source.sha256,
            "mmflow_version": version("mmflow"),
            "flags": source.flags,
            "steps": [
                s.lineage.model_copy(update={"cached": s.run_id != run_id}).model_dump(mode="json")
                for s in lineage_steps
            ],
        },
    )
