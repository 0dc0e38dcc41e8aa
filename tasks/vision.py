"""Vision extraction for pages the router sent to a model, checked like any other extraction.

A model's answer is only as good as its grounding: every value it returns is looked for among
the OCR words of the same pages (read with the extractor's own parsers, so "1.490,83" on the page
grounds "1490.83"), and the matching words become the value's evidence and box, so the verify
step checks a vision value exactly as it checks a deterministic one. A value found nowhere on
the page keeps its value but gets a low confidence and is named in a check. An optional second
pass asks again with a differently worded prompt; fields on which the two answers disagree lose
confidence and are flagged.

In the pipeline the vision answer is primary for a document with a VISION page, and fields it
left empty are filled from the deterministic extraction (line items too, when it found none).
Any provider failure (over budget, provider down, schema failure) keeps the deterministic
extraction and says why in a `vision` check. The step is deliberately not cached as a Step: its
inputs include a live provider block (secrets, a client), so its key is built from the provider's
label (wire format and model, no URL or key) and from the outcome itself.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

from pydantic import BaseModel

from mmflow.tasks.caching import Stamped, Step
from mmflow.tasks.extraction.parsing import amount_readings, date_readings
from mmflow.tasks.extraction.text import text_key
from mmflow.tasks.inputs import read_input
from mmflow.tasks.models import (
    AMOUNT_FIELDS,
    DATE_FIELDS,
    FIELD_NAMES,
    BBox,
    Check,
    CheckStatus,
    DocumentText,
    Extraction,
    FieldValue,
    LineageStep,
    LineItem,
    NormalisedDocument,
    PageRoute,
    PageText,
    Route,
)
from mmflow.tasks.normalise import render_page
from mmflow.tasks.pdf_library import pymupdf
from mmflow.tasks.provider import Budget, Provider, ProviderResult
from mmflow.tasks.provider.errors import ProviderError
from mmflow.tasks.provider.results import Detail
from mmflow.tasks.verify import LINE_AMOUNT, UNGROUNDED_FACTOR, value_agrees

VISION_CONFIDENCE = 0.8
"""A grounded vision value: below a labelled text-layer read, above a guess."""
DISAGREEMENT_FACTOR = 0.5
"""Confidence multiplier for a field the second pass read differently."""
MAX_SPAN_WORDS = 12
"""Longest run of OCR words tried as evidence (an address spans a few lines)."""

PROMPT = (
    "Read this invoice or receipt. Return every field exactly as printed, normalised: dates as "
    "ISO 8601 (YYYY-MM-DD), amounts as plain decimals with a dot and no thousands separator "
    "(1234.56), currency as an ISO 4217 code. Use null for anything not on the page. List the "
    "line items in order."
)
SECOND_PROMPT = (
    "Independently transcribe the key facts of this invoice: number, issue and due dates "
    "(YYYY-MM-DD), issuer name and address, buyer name, ISO 4217 currency, subtotal, tax and "
    "total as plain decimals (1234.56), and the line items. Null where absent."
)


class VisionLineItem(BaseModel):
    description: str
    quantity: str | None
    unit_price: str | None
    amount: str | None


class VisionInvoice(BaseModel):
    """What the model is asked to return: the ten invoice fields as strings, and line items."""

    invoice_number: str | None
    issue_date: str | None
    due_date: str | None
    issuer_name: str | None
    issuer_address: str | None
    buyer_name: str | None
    currency: str | None
    subtotal: str | None
    tax_amount: str | None
    total: str | None
    line_items: list[VisionLineItem]


class VisionReading(BaseModel):
    """A vision extraction (grounded) and the checks that say how far to trust it."""

    extraction: Extraction
    checks: list[Check]
    cost_usd: Decimal = Decimal("0")
    attempts: int = 0


class VisionOutcome(BaseModel):
    """What the vision step hands on: the extraction verify will check, and its own checks."""

    extraction: Extraction
    checks: list[Check]


def provider_label(provider: Provider) -> str:
    """Wire format and model only: the base URL may carry credentials, so it never leaves."""
    return provider.label.split("@", 1)[0]


# ---------------------------------------------------------------- normalising the answer


def _normalise(name: str, raw: str | None) -> str | None:
    """The model's string in our conventions when it is unambiguous; else as the model said."""
    if raw is None or not raw.strip():
        return None
    value = raw.strip()
    if name in AMOUNT_FIELDS:
        try:
            return str(Decimal(value))
        except InvalidOperation:
            amounts = amount_readings(value)
            return str(next(iter(amounts))) if len(amounts) == 1 else value
    if name in DATE_FIELDS:
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            days = date_readings(value)
            return next(iter(days)).isoformat() if len(days) == 1 else value
    if name == "currency":
        return value.upper()
    return value


def _decimal(raw: str | None) -> Decimal | None:
    """A line item's number as a Decimal, read like an amount field; None when unreadable."""
    value = _normalise(AMOUNT_FIELDS[-1], raw)
    try:
        return Decimal(value) if value is not None else None
    except InvalidOperation:
        return None


# ---------------------------------------------------------------- grounding against OCR


@dataclass(frozen=True)
class _Evidence:
    page: int
    bbox: BBox
    text: str


def _union(boxes: list[BBox]) -> BBox:
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def find_evidence(kind: str, value: str, pages: list[PageText]) -> _Evidence | None:
    """The shortest run of consecutive OCR words that says `value` (by verify's own rule)."""
    for length in range(1, MAX_SPAN_WORDS + 1):
        for page in pages:
            words = page.words
            for start in range(0, max(0, len(words) - length + 1)):
                span = words[start : start + length]
                text = " ".join(w.text for w in span)
                if value_agrees(kind, value, text) is None:
                    return _Evidence(page.page, _union([w.bbox for w in span]), text)
    return None


def _grounded_field(
    name: str, value: str | None, pages: list[PageText], source: str
) -> tuple[FieldValue, bool]:
    """(field, grounded?) — an ungrounded value keeps its value at a low confidence."""
    if value is None:
        return FieldValue(source=source), True
    evidence = find_evidence(name, value, pages)
    if evidence is None:
        return FieldValue(
            value=value, confidence=VISION_CONFIDENCE * UNGROUNDED_FACTOR, source=source
        ), False
    return FieldValue(
        value=value,
        confidence=VISION_CONFIDENCE,
        page=evidence.page,
        bbox=evidence.bbox,
        evidence=evidence.text,
        source=source,
    ), True


def _grounded_item(item: VisionLineItem, pages: list[PageText]) -> tuple[LineItem, bool]:
    """A line is grounded by its amount, or by its description when it has no amount."""
    amount = _decimal(item.amount)
    if amount is not None:
        evidence = find_evidence(LINE_AMOUNT, str(amount), pages)
    else:
        evidence = find_evidence("description", item.description, pages)
    grounded = evidence is not None
    return LineItem(
        description=item.description,
        quantity=_decimal(item.quantity),
        unit_price=_decimal(item.unit_price),
        amount=amount,
        page=evidence.page if evidence else None,
        bbox=evidence.bbox if evidence else None,
        evidence=evidence.text if evidence else None,
        confidence=VISION_CONFIDENCE if grounded else VISION_CONFIDENCE * UNGROUNDED_FACTOR,
    ), grounded


def ground_answer(
    answer: VisionInvoice, pages: list[PageText], source: str
) -> tuple[Extraction, Check]:
    """The model's answer as an Extraction with evidence from OCR, and a check naming strays."""
    fields: dict[str, FieldValue] = {}
    strays: list[str] = []
    for name in FIELD_NAMES:
        field, grounded = _grounded_field(
            name, _normalise(name, getattr(answer, name)), pages, source
        )
        fields[name] = field
        if not grounded:
            strays.append(f"{name}={field.value!r}")
    items: list[LineItem] = []
    for number, raw in enumerate(answer.line_items, start=1):
        item, grounded = _grounded_item(raw, pages)
        items.append(item)
        if not grounded:
            strays.append(f"line {number} {raw.description!r}")
    numbers = ", ".join(str(p.page) for p in pages)
    if strays:
        check = Check(
            name="vision_grounding",
            status=CheckStatus.WARN,
            detail=f"not found in the OCR text of page {numbers}: " + "; ".join(strays),
        )
    else:
        check = Check(
            name="vision_grounding",
            status=CheckStatus.PASS,
            detail=f"every vision value found in the OCR text of page {numbers}",
        )
    return Extraction(fields=fields, line_items=items), check


# ---------------------------------------------------------------- second pass


def _same(name: str, first: str | None, second: str | None) -> bool:
    if first is None or second is None:
        return first is second
    if name in AMOUNT_FIELDS:
        a, b = _decimal(first), _decimal(second)
        return a is not None and a == b
    if name in DATE_FIELDS or name == "currency":
        return first == second
    return text_key(first) == text_key(second)


def compare_passes(extraction: Extraction, second: VisionInvoice) -> tuple[Extraction, Check]:
    """Lower the confidence of every field the second answer reads differently, and say which."""
    fields = dict(extraction.fields)
    differing: list[str] = []
    for name in FIELD_NAMES:
        first = fields[name].value
        other = _normalise(name, getattr(second, name))
        if not _same(name, first, other):
            differing.append(f"{name}: {first!r} vs {other!r}")
            fields[name] = fields[name].model_copy(
                update={"confidence": fields[name].confidence * DISAGREEMENT_FACTOR}
            )
    if differing:
        check = Check(
            name="vision_agreement",
            status=CheckStatus.WARN,
            detail="second pass disagrees on " + "; ".join(differing),
        )
    else:
        check = Check(name="vision_agreement", status=CheckStatus.PASS, detail="both passes agree")
    return extraction.model_copy(update={"fields": fields}), check


# ---------------------------------------------------------------- the call


def extract_with_vision(
    page_images_png: list[bytes],
    ocr_pages: list[PageText],
    provider: Provider,
    budget: Budget,
    detail: Detail = "high",
    second_pass: bool = False,
) -> VisionReading:
    """Ask the model for the invoice on these pages, ground it in their OCR words, and (when
    asked) read it a second time to flag disagreements. Provider errors propagate."""
    source = f"vision:{provider_label(provider)}"
    first: ProviderResult[VisionInvoice] = provider.extract_from_images(
        list(page_images_png), PROMPT, VisionInvoice, detail, budget=budget
    )
    extraction, grounding = ground_answer(first.value, ocr_pages, source)
    checks = [grounding]
    cost, attempts = first.cost_usd, first.attempts
    if second_pass:
        again: ProviderResult[VisionInvoice] = provider.extract_from_images(
            list(page_images_png), SECOND_PROMPT, VisionInvoice, detail, budget=budget
        )
        extraction, agreement = compare_passes(extraction, again.value)
        checks.append(agreement)
        cost, attempts = cost + again.cost_usd, attempts + again.attempts
    return VisionReading(extraction=extraction, checks=checks, cost_usd=cost, attempts=attempts)


def merge_extractions(vision: Extraction, deterministic: Extraction) -> Extraction:
    """Vision is primary; a field it left empty (and line items, if it found none) come from
    the deterministic extractor, which read the same OCR text, as do the fields and tax lines
    the model is not asked for."""
    fields = {
        name: vision.fields[name]
        if vision.fields.get(name, FieldValue()).value is not None
        else deterministic.fields.get(name, FieldValue())
        for name in FIELD_NAMES
    }
    items = vision.line_items or deterministic.line_items
    # the fields the model is not asked for (document type, identifiers, …), the tax per rate
    # and the extractor's own checks come from the deterministic reading of the same page
    fields |= {name: field for name, field in deterministic.fields.items() if name not in fields}
    return Extraction(
        fields=fields,
        line_items=items,
        tax_lines=deterministic.tax_lines,
        checks=deterministic.checks,
    )


# ---------------------------------------------------------------- the pipeline step


def render_page_png(document: NormalisedDocument, index: int, dpi: int) -> bytes:
    """One page as PNG bytes, as OCR saw it: rendered at `dpi`, or the normalised raster page."""
    if document.source.media_type == "application/pdf":
        with pymupdf.open(stream=read_input(document.source.uri), filetype="pdf") as pdf:
            buffer = io.BytesIO()
            render_page(pdf, index, dpi).save(buffer, format="PNG")
            return buffer.getvalue()
    image_png = document.pages[index].image_png
    if image_png is None:
        raise ValueError(f"page {index + 1} of a raster input has no normalised image")
    return image_png


@dataclass(frozen=True)
class VisionSettings:
    """A live provider and the run's budget: handed to the pipeline, never to a cached Step."""

    provider: Provider
    budget: Budget
    second_pass: bool = False


def vision_pages(routes: list[PageRoute]) -> list[int]:
    return [r.page for r in routes if r.route is Route.VISION]


def read_with_vision(
    document: NormalisedDocument,
    routes: list[PageRoute],
    text: DocumentText,
    deterministic: Extraction,
    settings: VisionSettings,
    detail: Detail,
    dpi: int,
) -> VisionOutcome:
    """The vision pages through the model, or the deterministic extraction and the reason."""
    numbers = vision_pages(routes)
    ocr = {page.page: page for page in text.pages}
    images = [render_page_png(document, n - 1, dpi) for n in numbers]
    try:
        reading = extract_with_vision(
            images,
            [ocr[n] for n in numbers],
            settings.provider,
            settings.budget,
            detail,
            settings.second_pass,
        )
    except ProviderError as error:
        return VisionOutcome(
            extraction=deterministic,
            checks=[
                Check(
                    name="vision",
                    status=CheckStatus.WARN,
                    detail=f"{type(error).__name__}: {error}; fields from the OCR extractor",
                )
            ],
        )
    label = provider_label(settings.provider)
    used = Check(
        name="vision",
        status=CheckStatus.PASS,
        detail=(
            f"page {', '.join(map(str, numbers))} read by {label}: "
            f"{reading.attempts} request(s), ${reading.cost_usd:.6f}"
        ),
    )
    return VisionOutcome(
        extraction=merge_extractions(reading.extraction, deterministic),
        checks=[used, *reading.checks],
    )


VISION = Step("vision", read_with_vision)
"""Used for its version (the source hash) and name; the step itself is run by `run_vision`."""


def run_vision(
    document: Stamped[NormalisedDocument],
    routes: Stamped[list[PageRoute]],
    text: Stamped[DocumentText],
    extraction: Stamped[Extraction],
    settings: VisionSettings,
    detail: Detail,
    dpi: int,
    run_id: str,
    clock: Callable[[], float] = time.perf_counter,
) -> Stamped[VisionOutcome]:
    """Run the vision step uncached; its key covers the provider label and the outcome itself,
    so every step after it is cached correctly whether the model answered or it fell back."""
    started = clock()
    outcome = read_with_vision(
        document.value, routes.value, text.value, extraction.value, settings, detail, dpi
    )
    label = provider_label(settings.provider)
    material = json.dumps(
        [
            VISION.name,
            VISION.version,
            [document.key, routes.key, text.key, extraction.key],
            label,
            detail,
            settings.second_pass,
            outcome.model_dump(mode="json"),
        ]
    )
    key = f"vision-{hashlib.sha256(material.encode()).hexdigest()}"
    return Stamped(
        key=key,
        value=outcome,
        run_id=run_id,
        lineage=LineageStep(
            name=VISION.name,
            version=VISION.version,
            engine=label,
            cache_key=key,
            duration_s=round(clock() - started, 4),
        ),
    )


def as_extraction(stamped: Stamped[VisionOutcome]) -> Stamped[Extraction]:
    """The outcome's extraction under the same key, for the verify step downstream."""
    return Stamped(
        key=stamped.key,
        value=stamped.value.extraction,
        lineage=stamped.lineage,
        run_id=stamped.run_id,
    )
