"""Pydantic models that cross task boundaries or leave the program (docs/contracts.md)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, WithJsonSchema, field_validator

from mmflow.tasks.errors import printable
from mmflow.tasks.redaction import redact

Usd = Annotated[Decimal, Field(ge=0), WithJsonSchema({"type": "number", "minimum": 0})]
"""An amount of US dollars: a Decimal in code, a plain number in forms (not "number | string")."""

BBox = tuple[float, float, float, float]
"""x0, y0, x1, y1 in the page's own unit (PDF points, or pixels of the normalised image)."""


class Status(StrEnum):
    OK = "ok"
    REJECTED = "rejected"
    FAILED = "failed"


class Route(StrEnum):
    TEXT_LAYER = "text_layer"
    OCR = "ocr"
    VISION = "vision"


class CheckStatus(StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    SKIPPED = "skipped"


# ---------------------------------------------------------------- input side


class ValidatedInput(BaseModel):
    """What validate learned from the bytes; later steps re-read the bytes by `uri`."""

    uri: str
    sha256: str
    size: int
    media_type: str  # e.g. application/pdf, image/png, image/tiff
    pages: int
    flags: list[str] = Field(default_factory=list)  # e.g. pdf_javascript, pdf_embedded_files


class NormalisedPage(BaseModel):
    """One page ready for routing: geometry, and an image when the input was raster."""

    index: int  # 0-based
    width: float
    height: float
    unit: Literal["pt", "px"]
    rotation: int = 0  # degrees applied to make the text upright (0, 90, 180, 270)
    tier: str = ""  # resolution tier name (docs/contracts.md)
    image_png: bytes | None = None  # normalised raster page (raster inputs only)
    notes: list[str] = Field(default_factory=list)  # what normalise changed and why


class NormalisedDocument(BaseModel):
    source: ValidatedInput
    pages: list[NormalisedPage]


class Estimate(BaseModel):
    """Pre-flight estimate of one way to read a page."""

    alternative: str  # text_layer | ocr:rapidocr | vision:openai | vision:anthropic | vision:gemini
    input_tokens: int = 0
    cost_usd: Decimal = Decimal("0")
    seconds: float = 0.0
    note: str = ""


class PageRoute(BaseModel):
    page: int  # 1-based
    route: Route
    reason: str
    signals: dict[str, float] = Field(default_factory=dict)
    estimates: list[Estimate] = Field(default_factory=list)


# ---------------------------------------------------------------- text side


class Word(BaseModel):
    text: str
    bbox: BBox
    conf: float = 1.0
    line: int | None = None  # engine's own line/block id when it gives one


class PageText(BaseModel):
    page: int  # 1-based
    width: float
    height: float
    unit: Literal["pt", "px"]
    route: Route
    engine: str  # pymupdf | rapidocr | tesseract
    words: list[Word]

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)


class DocumentText(BaseModel):
    pages: list[PageText]


# ---------------------------------------------------------------- extraction side

FIELD_NAMES: tuple[str, ...] = (
    "invoice_number",
    "issue_date",
    "due_date",
    "issuer_name",
    "issuer_address",
    "buyer_name",
    "currency",
    "subtotal",
    "tax_amount",
    "total",
)
ADDED_FIELD_NAMES: tuple[str, ...] = (
    "document_type",
    "buyer_address",
    "issuer_tax_id",
    "buyer_tax_id",
    "iban",
    "bic",
    "purchase_order",
    "payment_terms",
    "referenced_invoice",
)
"""Fields added to the contract after the first ten (docs/contracts.md): same shape, in `fields`."""
ALL_FIELD_NAMES: tuple[str, ...] = FIELD_NAMES + ADDED_FIELD_NAMES
AMOUNT_FIELDS: tuple[str, ...] = ("subtotal", "tax_amount", "total")
DATE_FIELDS: tuple[str, ...] = ("issue_date", "due_date")


class DocumentType(StrEnum):
    """What a document is; a credit note's amounts are negative and it refers to an invoice."""

    INVOICE = "invoice"
    CREDIT_NOTE = "credit_note"
    RECEIPT = "receipt"
    PROFORMA = "proforma"
    OTHER = "other"


class FieldValue(BaseModel):
    """One extracted field with its grounding; `value` is null when not found."""

    value: str | None = None  # dates ISO 8601, currency ISO 4217, amounts "279.84"
    confidence: float = 0.0
    page: int | None = None
    bbox: BBox | None = None
    evidence: str | None = None  # the page text the value was read from
    source: str | None = None  # how it was found, e.g. "label:same_line", "arithmetic"


class LineItem(BaseModel):
    description: str
    quantity: Decimal | None = None
    unit_price: Decimal | None = None
    amount: Decimal | None = None
    page: int | None = None
    bbox: BBox | None = None
    evidence: str | None = None
    confidence: float = 0.0


class TaxLine(BaseModel):
    """The tax of one rate: `rate` in percent ("19", "7.7"), its `base` and tax `amount`."""

    rate: Decimal | None = None
    base: Decimal | None = None
    amount: Decimal | None = None
    page: int | None = None
    bbox: BBox | None = None
    evidence: str | None = None
    confidence: float = 0.0
    source: str | None = None


class Extraction(BaseModel):
    fields: dict[str, FieldValue]
    line_items: list[LineItem] = Field(default_factory=list)
    tax_lines: list[TaxLine] = Field(default_factory=list)
    checks: list[Check] = Field(default_factory=list)  # what the extractor itself found amiss

    def amount(self, name: str) -> Decimal | None:
        value = self.fields.get(name, FieldValue()).value
        return Decimal(value) if value is not None else None

    def date(self, name: str) -> date | None:
        value = self.fields.get(name, FieldValue()).value
        return date.fromisoformat(value) if value is not None else None


class Check(BaseModel):
    name: str
    status: CheckStatus
    detail: str = ""
    difference: Decimal | None = None


class SplitBoundary(BaseModel):
    """Whether a new document starts on `page`, how strongly the page signals say so, and why."""

    page: int  # 1-based
    score: float  # > 0.5: a new document starts here
    starts: bool
    reasons: list[str] = Field(default_factory=list)


class DocumentSplit(BaseModel):
    """The documents one input holds, as page ranges (first, last; 1-based, inclusive)."""

    parts: list[tuple[int, int]]
    boundaries: list[SplitBoundary] = Field(default_factory=list)
    checks: list[Check] = Field(default_factory=list)


# ---------------------------------------------------------------- output side


class LineageStep(BaseModel):
    name: str
    version: str  # hash of the step's source
    engine: str = ""
    cache_key: str = ""
    cached: bool = False
    duration_s: float = 0.0


class SourceInfo(BaseModel):
    uri: str
    sha256: str
    media_type: str
    pages: int  # of the input file
    # When the input held several documents: which one this is (1-based), of how many, and
    # its pages (first, last; 1-based, inclusive). A single document spans every page.
    document: int = 1
    documents: int = 1
    page_range: tuple[int, int] | None = None


class InvoiceResult(BaseModel):
    """`<stem>.json` of the invoice scenario."""

    source: SourceInfo
    route: list[PageRoute]
    fields: dict[str, FieldValue]
    line_items: list[LineItem]
    checks: list[Check]
    lineage: dict[str, Any]
    tax_lines: list[TaxLine] = Field(default_factory=list)
    review: bool = False  # a check failed outright: a person should look before it is paid
    review_reasons: list[str] = Field(default_factory=list)


class InvoiceDocuments(BaseModel):
    """What the invoice scenario makes of one input: a result per document it holds, in page
    order (most inputs hold one)."""

    results: list[InvoiceResult]


class ErrorInfo(BaseModel):
    code: str
    message: str

    @field_validator("message")
    @classmethod
    def _json_safe(cls, message: str) -> str:
        """An exception's text may quote a file name that is not UTF-8 (JSON refuses those) or
        a secret (a provider echoing its key, a URL with a password): neither is kept."""
        return redact(printable(message))


class ManifestEntry(BaseModel):
    """One line of `manifest.jsonl`."""

    uri: str
    sha256: str | None
    status: Status
    error: ErrorInfo | None = None
    output: str | None = None
    # An input holding several documents has one result file each: `output` is the first,
    # `outputs` all of them in page order, `documents` how many.
    outputs: list[str] | None = None
    documents: int | None = None
    # Every file written for the input and its size then: a resumed batch tells a result that
    # was deleted or cut short (a full disk, a copy that stopped) from one listing of OUT.
    output_bytes: dict[str, int] | None = None
