"""The image-analysis pipeline's steps: validate → normalise → OCR → classify → injection scan →
plan (resolution tier by kind and task, and what every provider would charge), then an optional
vision call. Like tasks/invoice.py, each `Step` feeds one plain function what the step before
produced, and its cache key chains from the input's sha256.

OCR runs before classification (the issue lists classify first): the kind is judged partly from
the OCR boxes (text density, line layout), so reading the text once and classifying from it is
cheaper than a second, detector-only pass.

PDFs: the image flow reads the FIRST page of a PDF, rendered at `pdf_dpi` and turned upright,
and flags `pdf_first_page_only` when there are more; multi-page documents belong in the invoice
flow, but a screenshot or chart saved as a one-page PDF is common enough to accept.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, Field

from mmflow.tasks.caching import Step
from mmflow.tasks.crops import CropPlan, crop_image, text_region
from mmflow.tasks.estimate import estimate_cost, model_image_tokens, price_table
from mmflow.tasks.image_kind import ImageKind, KindResult, classify_image
from mmflow.tasks.injection import InjectionReport, quote_untrusted, scan_text
from mmflow.tasks.inputs import read_input, sha256_of
from mmflow.tasks.models import PageText, Route, SourceInfo, ValidatedInput, Word
from mmflow.tasks.normalise import NormaliseOptions, normalise_document, render_page, upright
from mmflow.tasks.ocr import OcrEngine, engine_version, ocr_image
from mmflow.tasks.pdf_library import pymupdf
from mmflow.tasks.validate import PDF_MEDIA_TYPE, ValidationLimits, validate_bytes
from mmflow.tasks.versions import installed_version

if TYPE_CHECKING:
    from mmflow.tasks.provider import Budget, Provider

Detail = Literal["low", "high"]
FLAG_PDF_FIRST_PAGE = "pdf_first_page_only"
FLAG_FIRST_FRAME = "first_frame_only"


class ImageTask(StrEnum):
    DESCRIBE = "describe"
    CLASSIFY = "classify"
    EXTRACT_TEXT = "extract-text"
    CHART = "chart"


class Tier(StrEnum):
    """How much of the image a vision model gets (docs/contracts.md, Images: the `plan`)."""

    NONE = "none"  # the local result answers the task; no vision call
    LOW = "low"  # low detail, fitted in 512 px: the gist (85 tokens on gpt-4o)
    STANDARD = "standard"  # high detail, fitted in 1024 px: labels and large text
    FINE = "fine"  # high detail, up to 2048 px, cropped to the text region when it is small


TIER_DETAIL: dict[Tier, Detail] = {Tier.LOW: "low", Tier.STANDARD: "high", Tier.FINE: "high"}
TIER_MAX_SIDE: dict[Tier, int] = {Tier.LOW: 512, Tier.STANDARD: 1024, Tier.FINE: 2048}


class ImageAdvanced(BaseModel):
    """Limits and image preparation; the defaults suit photos, scans, charts and screenshots."""

    limits: ValidationLimits = Field(
        default_factory=ValidationLimits,
        description="Inputs beyond these limits are rejected before any expensive work.",
    )
    normalise: NormaliseOptions = Field(
        default_factory=NormaliseOptions, description="How images are prepared for reading."
    )
    ocr_max_side: int = Field(
        1600, ge=256, description="OCR reads a copy at most this long; boxes map back."
    )


class ImageOptions(BaseModel):
    """Everything that changes what the local pipeline computes (part of every cache key)."""

    task: ImageTask = Field(ImageTask.DESCRIBE, description="What to answer about each image.")
    ocr_engine: OcrEngine = Field(OcrEngine.RAPIDOCR, description="OCR engine for the text.")
    pdf_dpi: int = Field(150, ge=72, le=600, description="Resolution of a PDF's first page.")
    kind_confidence: float = Field(
        0.6, ge=0, le=1, description="classify: the local kind is the answer above this."
    )
    ocr_confidence: float = Field(
        0.85, ge=0, le=1, description="extract-text: OCR is the answer above this confidence."
    )
    min_words: int = Field(3, ge=0, description="extract-text: and with at least this many words.")
    advanced: ImageAdvanced = Field(
        default_factory=ImageAdvanced, description="Limits and image preparation."
    )

    @property
    def limits(self) -> ValidationLimits:
        return self.advanced.limits.model_copy(update={"render_dpi": self.pdf_dpi})

    @property
    def normalise(self) -> NormaliseOptions:
        return self.advanced.normalise.model_copy(update={"dpi": self.pdf_dpi})

    @property
    def ocr_max_side(self) -> int:
        return self.advanced.ocr_max_side


class ImagePage(BaseModel):
    """The normalised image the rest of the pipeline reads (upright 8-bit PNG)."""

    width: int
    height: int
    image_png: bytes
    notes: list[str] = Field(default_factory=list)
    flags: list[str] = Field(default_factory=list)

    def open(self) -> Image.Image:
        image = Image.open(io.BytesIO(self.image_png))
        image.load()
        return image


class CostLine(BaseModel):
    """What one model would charge for this image at one detail (None: no detail switch)."""

    model: str
    family: str
    detail: Detail | None
    width: int
    height: int
    image_tokens: int
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal


class ImagePlan(BaseModel):
    """The route chosen for this image and task, why, and the estimates behind it."""

    task: ImageTask
    tier: Tier
    route: Route
    detail: Detail | None
    send_width: int
    send_height: int
    crop: CropPlan | None = None
    reason: str
    image_tokens: int = Field(description="gpt-4o tokens of what is sent (0 when nothing is)")
    full_high_tokens: int = Field(description="gpt-4o tokens of the whole image at high detail")
    costs_full: list[CostLine] = Field(description="every model, every detail, whole image")
    costs_planned: list[CostLine] = Field(description="every model for what the plan sends")


class ImageText(BaseModel):
    text: str
    words: list[Word]
    mean_conf: float
    engine: str


class ImageAnswer(BaseModel):
    """The task's answer: from the vision model, or the offline (OCR and local-signal) result."""

    source: str  # "openai:gpt-4o@…", or "offline:ocr"
    detail: Detail | None = None
    value: dict[str, Any] | None = None
    note: str = ""
    cost_usd: Decimal = Decimal("0")
    estimate_usd: Decimal | None = None
    attempts: int = 0
    cached: bool = False
    downgraded: bool = False
    failures: list[dict[str, str]] = Field(default_factory=list)


class ImageResult(BaseModel):
    """`<stem>.json` of the image scenario."""

    source: SourceInfo
    task: ImageTask
    image: dict[str, Any]
    kind: KindResult
    text: ImageText
    injection: InjectionReport
    plan: ImagePlan
    answer: ImageAnswer
    lineage: dict[str, Any]


# ---------------------------------------------------------------- answer schemas


class Description(BaseModel):
    description: str
    objects: list[str] = Field(default_factory=list)


class KindAnswer(BaseModel):
    kind: ImageKind
    reason: str


class TextAnswer(BaseModel):
    text: str


class ChartSeries(BaseModel):
    name: str
    labels: list[str]
    values: list[float]


class ChartAnswer(BaseModel):
    chart_type: str
    title: str | None = None
    x_label: str | None = None
    y_label: str | None = None
    series: list[ChartSeries] = Field(default_factory=list)


class Synthesis(BaseModel):
    """The reduce step over several images' answers (text only)."""

    summary: str
    common_points: list[str] = Field(default_factory=list)
    differences: list[str] = Field(default_factory=list)


TASK_SCHEMA: dict[ImageTask, type[BaseModel]] = {
    ImageTask.DESCRIBE: Description,
    ImageTask.CLASSIFY: KindAnswer,
    ImageTask.EXTRACT_TEXT: TextAnswer,
    ImageTask.CHART: ChartAnswer,
}

TASK_PROMPT: dict[ImageTask, str] = {
    ImageTask.DESCRIBE: "Describe this image in two or three sentences and list its main objects.",
    ImageTask.CLASSIFY: (
        "Classify this image as document (invoice, receipt, letter, form), chart, screenshot "
        "or photo, and say why in one sentence."
    ),
    ImageTask.EXTRACT_TEXT: "Transcribe all text in this image exactly, line by line.",
    ImageTask.CHART: (
        "Read this chart: its type, title, axis labels, and every series with its category "
        "labels and numeric values as plotted. Use null where the chart does not show a value."
    ),
}


# ---------------------------------------------------------------- plain step functions


def validate_image(sha256: str, *, uri: str, limits: ValidationLimits) -> ValidatedInput:
    data = read_input(uri, max_bytes=limits.max_bytes)  # size judged before reading
    if sha256_of(data) != sha256:
        raise RuntimeError(f"{uri} changed while it was being processed; run it again")
    return validate_bytes(data, uri, limits)


def _png(image: Image.Image, level: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=level)
    return buffer.getvalue()


def normalise_image(
    source: ValidatedInput, *, options: NormaliseOptions, pdf_dpi: int
) -> ImagePage:
    """One upright 8-bit image: a raster's first frame, or a PDF's first page rendered."""
    data = read_input(source.uri)
    flags: list[str] = []
    if source.media_type == PDF_MEDIA_TYPE:
        with pymupdf.open(stream=data, filetype="pdf") as pdf:
            image, rotation = upright(render_page(pdf, 0, pdf_dpi))
        notes = [f"PDF page 1 rendered at {pdf_dpi} dpi"]
        if rotation:
            notes.append(f"turned {rotation}° clockwise: text was not upright")
        if source.pages > 1:
            flags.append(FLAG_PDF_FIRST_PAGE)
            notes.append(f"only page 1 of {source.pages} is analysed; use the invoice flow")
        return ImagePage(
            width=image.width,
            height=image.height,
            image_png=_png(image, options.png_compress_level),
            notes=notes,
            flags=flags,
        )
    page = normalise_document(data, source, options).pages[0]
    if source.pages > 1:
        flags.append(FLAG_FIRST_FRAME)
    assert page.image_png is not None  # raster pages always carry their image
    return ImagePage(
        width=int(page.width),
        height=int(page.height),
        image_png=page.image_png,
        notes=page.notes,
        flags=flags,
    )


def read_image_text(page: ImagePage, *, engine: OcrEngine, max_side: int) -> ImageText:
    """OCR words with boxes in the normalised image's pixels (read from a capped copy)."""
    image = page.open()
    factor = min(1.0, max_side / max(image.size))
    if factor < 1.0:
        size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    read: PageText = ocr_image(image, 1, engine)
    words = read.words
    if factor < 1.0:
        words = [w.model_copy(update={"bbox": tuple(v / factor for v in w.bbox)}) for w in words]
    lines: dict[int, list[str]] = {}
    for index, word in enumerate(words):
        lines.setdefault(word.line if word.line is not None else index, []).append(word.text)
    return ImageText(
        text="\n".join(" ".join(parts) for parts in lines.values()),
        words=words,
        mean_conf=round(float(np.mean([w.conf for w in words])), 4) if words else 0.0,
        engine=read.engine,
    )


def classify_page(page: ImagePage, text: ImageText) -> KindResult:
    return classify_image(page.open(), text.words)


def scan_page_text(text: ImageText) -> InjectionReport:
    return scan_text(text.text)


# ---------------------------------------------------------------- tier and cost


def fitted(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Size after scaling down (never up) to fit `max_side` — what is actually sent."""
    factor = min(1.0, max_side / max(width, height))
    return max(1, round(width * factor)), max(1, round(height * factor))


def choose_tier(
    kind: KindResult, text: ImageText, task: ImageTask, options: ImageOptions
) -> tuple[Tier, str]:
    """The cheapest tier that can answer `task` for an image of this kind, and why."""
    readable = text.mean_conf >= options.ocr_confidence and len(text.words) >= options.min_words
    if task is ImageTask.CLASSIFY:
        if kind.confidence >= options.kind_confidence:
            return Tier.NONE, f"local classifier is sure ({kind.confidence:.2f}): {kind.kind}"
        return Tier.LOW, f"local classifier unsure ({kind.confidence:.2f}); the gist suffices"
    if task is ImageTask.DESCRIBE:
        return Tier.LOW, "a description needs the gist, not fine detail"
    if task is ImageTask.EXTRACT_TEXT:
        if kind.kind is ImageKind.CHART:
            return Tier.STANDARD, "chart labels need high detail; 1024 px holds them"
        if readable:
            return Tier.NONE, (
                f"OCR read {len(text.words)} words at mean confidence {text.mean_conf:.2f}"
            )
        if not text.words and kind.kind is ImageKind.PHOTO:
            return Tier.LOW, "OCR found no text in the photo; a low-detail look confirms it"
        return Tier.FINE, (
            f"OCR is unsure (mean confidence {text.mean_conf:.2f} over {len(text.words)} "
            "words): fine text at high detail"
        )
    # ImageTask.CHART
    if kind.kind is ImageKind.CHART:
        return Tier.STANDARD, "reading values off a chart needs high detail at 1024 px"
    return Tier.LOW, f"the image looks like a {kind.kind}, not a chart: low detail to confirm"


def cost_lines(width: int, height: int) -> list[CostLine]:
    """Every model of the price table, at every detail it has, for one image of this size."""
    table = price_table()
    lines = []
    for model, row in table.models.items():
        details: list[Detail | None] = ["low", "high"] if row.image_scheme == "tile" else [None]
        for detail in details:
            tokens = model_image_tokens(model, width, height, detail or "high")
            input_tokens = tokens + table.vision_call.prompt_tokens
            output_tokens = table.vision_call.output_tokens
            lines.append(
                CostLine(
                    model=model,
                    family=row.family.value,
                    detail=detail,
                    width=width,
                    height=height,
                    image_tokens=tokens,
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    cost_usd=estimate_cost(model, input_tokens, output_tokens),
                )
            )
    return lines


REFERENCE_MODEL = "gpt-4o"  # the plan's token figures are in this model's tokens


def plan_image(
    page: ImagePage,
    text: ImageText,
    kind: KindResult,
    *,
    options: ImageOptions,
) -> ImagePlan:
    """Tier by kind and task; the crop for fine text; costs of the whole image and the plan."""
    tier, reason = choose_tier(kind, text, options.task, options)
    full = cost_lines(page.width, page.height)
    full_high = model_image_tokens(REFERENCE_MODEL, page.width, page.height, "high")
    if tier is Tier.NONE:
        return ImagePlan(
            task=options.task,
            tier=tier,
            route=Route.OCR,
            detail=None,
            send_width=0,
            send_height=0,
            reason=reason,
            image_tokens=0,
            full_high_tokens=full_high,
            costs_full=full,
            costs_planned=[],
        )
    crop = None
    width, height = page.width, page.height
    if tier is Tier.FINE:
        crop = text_region(text.words, page.width, page.height)
        if crop is not None:
            width, height = crop.width, crop.height
            reason += f"; only the text region is sent ({crop.reason})"
    detail = TIER_DETAIL[tier]
    send_w, send_h = fitted(width, height, TIER_MAX_SIDE[tier])
    return ImagePlan(
        task=options.task,
        tier=tier,
        route=Route.VISION,
        detail=detail,
        send_width=send_w,
        send_height=send_h,
        crop=crop,
        reason=reason,
        image_tokens=model_image_tokens(REFERENCE_MODEL, send_w, send_h, detail),
        full_high_tokens=full_high,
        costs_full=full,
        costs_planned=cost_lines(send_w, send_h),
    )


def planned_image(page: ImagePage, plan: ImagePlan) -> Image.Image:
    """The pixels the plan sends: cropped when it says so, fitted into the tier's size."""
    image = page.open()
    if plan.crop is not None:
        image = crop_image(image, plan.crop)
    if (image.width, image.height) != (plan.send_width, plan.send_height):
        image = image.resize((plan.send_width, plan.send_height), Image.Resampling.LANCZOS)
    return image


# ---------------------------------------------------------------- answers


def offline_answer(
    task: ImageTask, kind: KindResult, text: ImageText, note: str = ""
) -> ImageAnswer:
    """What the local pipeline can answer by itself (the end of every fallback chain)."""
    value: dict[str, Any] | None
    if task is ImageTask.EXTRACT_TEXT:
        value = TextAnswer(text=text.text).model_dump(mode="json")
    elif task is ImageTask.CLASSIFY:
        value = KindAnswer(kind=kind.kind, reason=kind.reason).model_dump(mode="json")
    else:
        value = None
        note = (note + "; " if note else "") + (
            f"a {task.value} answer needs a vision provider; the kind and OCR text are local"
        )
    return ImageAnswer(source="offline:ocr", value=value, note=note)


def vision_prompt(task: ImageTask, text: ImageText, injection: InjectionReport) -> str:
    """The task prompt, plus the OCR text as fenced, untrusted data (a hint, never orders)."""
    prompt = TASK_PROMPT[task]
    if text.text.strip():
        prompt += "\n\nOCR of the same image, for reference:\n" + quote_untrusted(
            text.text, injection, "the image by OCR"
        )
    return prompt


def ask_vision(
    page: ImagePage,
    plan: ImagePlan,
    kind: KindResult,
    text: ImageText,
    injection: InjectionReport,
    provider: Provider | None,
    budget: Budget | None,
) -> ImageAnswer:
    """The vision call at the planned tier, falling back to the offline result on any
    provider failure (budget refusal, circuit open, retries exhausted, schema failed twice)."""
    from mmflow.tasks.provider.fallback import run_fallback_chain

    if plan.tier is Tier.NONE or plan.detail is None:
        return offline_answer(plan.task, kind, text, f"no vision call: {plan.reason}")
    if provider is None:
        return offline_answer(plan.task, kind, text, "no provider configured (offline run)")
    schema = TASK_SCHEMA[plan.task]
    detail: Detail = plan.detail
    label = provider.label

    def call() -> ImageAnswer:
        result = provider.extract_from_images(
            [planned_image(page, plan)],
            vision_prompt(plan.task, text, injection),
            schema,
            detail,
            budget=budget,
        )
        return ImageAnswer(
            source=label,
            detail=result.detail,
            value=result.value.model_dump(mode="json"),
            cost_usd=result.cost_usd,
            estimate_usd=result.estimate.cost_usd,
            attempts=result.attempts,
            cached=result.cached,
            downgraded=result.downgraded,
        )

    outcome = run_fallback_chain(
        [(label, call)],
        ("offline:ocr", lambda: offline_answer(plan.task, kind, text, "provider fell back")),
    )
    if not outcome.failures:
        return outcome.value
    failures = [
        {"step": name, "error": f"{type(exc).__name__}: {exc}"} for name, exc in outcome.failures
    ]
    return outcome.value.model_copy(update={"failures": failures})


def synthesis_prompt(task: ImageTask, answers: Mapping[str, ImageAnswer]) -> str:
    """One text-only request over every image's answer; each answer is fenced as data."""
    parts = [
        f"Several images were analysed one by one (task: {task.value}). Combine the results "
        "into one summary, with what the images have in common and how they differ."
    ]
    for name, answer in answers.items():
        body = answer.model_dump_json(include={"value", "note"})
        parts.append(f"Result for {name}:\n" + quote_untrusted(body, label=name))
    return "\n\n".join(parts)


# ---------------------------------------------------------------- steps


def _ocr_engine(params: Mapping[str, Any]) -> str:
    return engine_version(params["engine"])


VALIDATE = Step(
    "validate",
    validate_image,
    lambda p: f"pymupdf {installed_version('pymupdf')}",
)
NORMALISE = Step(
    "normalise",
    normalise_image,
    lambda p: f"pillow {installed_version('pillow')}",
)
OCR = Step("ocr", read_image_text, _ocr_engine)
CLASSIFY = Step("classify", classify_page)
SCAN = Step("injection-scan", scan_page_text)
PLAN = Step(
    "plan",
    plan_image,
    lambda p: REFERENCE_MODEL,
)
STEPS = (VALIDATE, NORMALISE, OCR, CLASSIFY, SCAN, PLAN)
