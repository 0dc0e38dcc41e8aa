"""The project's own sample invoices: rendered here, so the demo and tests need no shared data.

Each sample is a fictional invoice whose numbers add up, written in one of the forms invoices
arrive in (born-digital PDF, image-only scan, phone photo, multi-page fax TIFF, sideways scan),
with `<stem>.truth.json` beside it holding the field values a correct pipeline must report and
the strings as printed on the page. Generation is seeded and takes well under a second per file.

`make_sample_set` writes a larger generated set for measuring the extractor on documents its
rules were not written from: six languages (German, French, Dutch, Spanish, Italian, Polish),
three layouts, label wordings drawn from several per field (tasks/sample_vocabulary.py), two
VAT rates, credit notes, bank and tax identifiers with valid check digits, and PDFs holding two
or three documents one after another (their truth lists each with its pages).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageFilter
from stdnum import iban as stdnum_iban
from stdnum import numdb
from stdnum.eu import vat as eu_vat

from mmflow.tasks.pdf_library import pymupdf
from mmflow.tasks.sample_vocabulary import (
    COMPANIES,
    COUNTRY,
    GOODS,
    MONTH_NAMES,
    REDUCED_GOODS,
    SET_LANGUAGES,
    TAX_RATES,
    VOCABULARY,
    SetLanguage,
)

Language = Literal["en", "de", "fr", "nl", "es", "it", "pl"]
DocumentKind = Literal["invoice", "credit_note"]
Layout = Literal["classic", "header_row", "window"]

A4 = (595.0, 842.0)  # points
CENT = Decimal("0.01")
EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class Party:
    name: str
    address: tuple[str, ...]


@dataclass(frozen=True)
class LineSpec:
    description: str
    quantity: Decimal
    unit_price: Decimal
    tax_rate: Decimal | None = None  # percent; None: the invoice's own rate

    @property
    def amount(self) -> Decimal:
        return (self.quantity * self.unit_price).quantize(CENT, ROUND_HALF_UP)


@dataclass(frozen=True)
class InvoiceSpec:
    """Everything printed on one fictional invoice; amounts are derived, so they always add up."""

    language: Language
    issuer: Party
    buyer: Party
    number: str
    issue_date: date
    due_date: date
    currency: str  # ISO 4217
    tax_rate: Decimal  # percent
    items: tuple[LineSpec, ...]
    payment: tuple[str, ...] = ()
    terms_page: tuple[str, ...] = field(default=())  # a second page of terms, when given
    # The generated set's documents (make_sample_set) say more; the classic samples leave these.
    kind: DocumentKind = "invoice"
    layout: Layout = "classic"
    labels: dict[str, str] = field(default_factory=dict)  # chosen wording, sample_vocabulary
    issuer_tax_id: str | None = None  # as printed
    buyer_tax_id: str | None = None
    iban: str | None = None
    bic: str | None = None
    purchase_order: str | None = None
    payment_terms: str | None = None
    referenced_invoice: str | None = None
    signed: bool = False  # a credit note printing its amounts with a minus sign
    long_dates: bool = False  # dates with the month's name ("3. März 2026")

    def rate_of(self, item: LineSpec) -> Decimal:
        return self.tax_rate if item.tax_rate is None else item.tax_rate

    @property
    def tax_lines(self) -> list[tuple[Decimal, Decimal, Decimal]]:
        """(rate, base, tax) per rate in order of first use; tax rounded per rate."""
        bases: dict[Decimal, Decimal] = {}
        for item in self.items:
            rate = self.rate_of(item)
            bases[rate] = bases.get(rate, Decimal("0")) + item.amount
        return [
            (rate, base, (base * rate / 100).quantize(CENT, ROUND_HALF_UP))
            for rate, base in bases.items()
        ]

    @property
    def subtotal(self) -> Decimal:
        return sum((i.amount for i in self.items), Decimal("0"))

    @property
    def tax_amount(self) -> Decimal:
        return sum((tax for _, _, tax in self.tax_lines), Decimal("0"))

    @property
    def total(self) -> Decimal:
        return self.subtotal + self.tax_amount

    @property
    def sign(self) -> int:
        """-1 for a credit note: its amounts are credits, whether printed with a sign or not."""
        return -1 if self.kind == "credit_note" else 1


LABELS: dict[Language, dict[str, str]] = {
    "en": {
        "title": "INVOICE",
        "number": "Invoice number",
        "issue": "Invoice date",
        "due": "Due date",
        "bill_to": "Bill to",
        "description": "Description",
        "quantity": "Qty",
        "unit_price": "Unit price",
        "amount": "Amount",
        "subtotal": "Subtotal",
        "tax": "VAT {rate}%",
        "total": "Total due",
        "page": "Page {n} of {of}",
    },
    "de": {
        "title": "RECHNUNG",
        "number": "Rechnungsnummer",
        "issue": "Rechnungsdatum",
        "due": "Fällig am",
        "bill_to": "Rechnungsempfänger",
        "description": "Beschreibung",
        "quantity": "Menge",
        "unit_price": "Einzelpreis",
        "amount": "Betrag",
        "subtotal": "Zwischensumme",
        "tax": "MwSt. {rate} %",
        "total": "Gesamtbetrag",
        "page": "Seite {n} von {of}",
    },
    "fr": {
        "title": "FACTURE",
        "number": "N° de facture",
        "issue": "Date de facture",
        "due": "Date d'échéance",
        "bill_to": "Facturé à",
        "description": "Désignation",
        "quantity": "Qté",
        "unit_price": "Prix unitaire",
        "amount": "Montant",
        "subtotal": "Total HT",
        "tax": "TVA {rate} %",
        "total": "Total TTC",
        "page": "Page {n} sur {of}",
    },
}

CURRENCY_SYMBOL = {"GBP": "£", "EUR": "€", "USD": "$", "PLN": "zł"}
MONTHS_EN = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def format_amount(value: Decimal, language: Language) -> str:
    """An amount as that locale prints it: 1,234.56 (en), 1.234,56 (de, nl, es, it),
    1 234,56 (fr, pl)."""
    plain = f"{value.quantize(CENT):,.2f}"  # 1,234.56
    if language == "en":
        return plain
    thousands = " " if language in ("fr", "pl") else "."
    return plain.replace(",", "\x00").replace(".", ",").replace("\x00", thousands)


def format_money(value: Decimal, currency: str, language: Language) -> str:
    symbol = CURRENCY_SYMBOL.get(currency, currency)
    if language == "en":
        return f"{symbol}{format_amount(value, language)}"
    if language in ("nl", "it"):
        return f"{symbol} {format_amount(value, language)}"
    return f"{format_amount(value, language)} {symbol}"


def format_quantity(value: Decimal, language: Language) -> str:
    text = f"{value.normalize():f}"
    return text if language == "en" else text.replace(".", ",")


NUMERIC_DATES: dict[str, str] = {
    "de": "%d.%m.%Y",
    "fr": "%d/%m/%Y",
    "nl": "%d-%m-%Y",
    "es": "%d/%m/%Y",
    "it": "%d/%m/%Y",
    "pl": "%d.%m.%Y",
}


def format_date(value: date, language: Language, long: bool = False) -> str:
    if language == "en":
        return f"{value.day} {MONTHS_EN[value.month - 1]} {value.year}"
    if long:
        month = MONTH_NAMES[language][value.month - 1]
        day = f"{value.day}." if language == "de" else str(value.day)
        joiner = " de " if language == "es" else " "
        return f"{day}{joiner}{month}{joiner}{value.year}"
    return value.strftime(NUMERIC_DATES[language])


# ---------------------------------------------------------------- the sample invoices

NORTHWIND = Party(
    "Northwind Office Supplies Ltd",
    ("14 Harbour Street", "Bristol BS1 4QA", "United Kingdom", "VAT No. GB 284 9317 24"),
)
BRENNER = Party(
    "Brenner & Söhne GmbH",
    ("Industriestraße 42", "70565 Stuttgart", "Deutschland", "USt-IdNr. DE 281 447 302"),
)
LUMIERE = Party(
    "Atelier Lumière SARL",
    ("7 rue des Tanneurs", "69002 Lyon", "France", "TVA FR 23 843 219 775"),
)

SPECS: dict[str, InvoiceSpec] = {
    "northwind-invoice": InvoiceSpec(
        language="en",
        issuer=NORTHWIND,
        buyer=Party("Harper & Cole Architects", ("3 Queen Square", "Bath BA1 2HE")),
        number="NW-2026-0418",
        issue_date=date(2026, 3, 14),
        due_date=date(2026, 4, 13),
        currency="GBP",
        tax_rate=Decimal("20"),
        items=(
            LineSpec("A4 copier paper, 80 g, box of 5 reams", Decimal("6"), Decimal("24.50")),
            LineSpec("Ballpoint pens, blue, pack of 50", Decimal("3"), Decimal("11.99")),
            LineSpec("Lever arch files, A4", Decimal("20"), Decimal("2.35")),
            LineSpec("Desk organiser, bamboo", Decimal("4"), Decimal("18.75")),
        ),
        payment=(
            "Payment within 30 days by bank transfer.",
            "Sort code 20-45-77  Account 4481 9902",
        ),
    ),
    "brenner-rechnung-scan": InvoiceSpec(
        language="de",
        issuer=BRENNER,
        buyer=Party("Kaiser Maschinenbau AG", ("Hafenweg 9", "28217 Bremen")),
        number="RE-26-00731",
        issue_date=date(2026, 2, 3),
        due_date=date(2026, 3, 5),
        currency="EUR",
        tax_rate=Decimal("19"),
        items=(
            LineSpec("Hydraulikschlauch DN12, 2 m", Decimal("12"), Decimal("38.40")),
            LineSpec("Kugellager 6205-2RS", Decimal("40"), Decimal("4.85")),
            LineSpec("Wartung Pressenanlage (Stunden)", Decimal("6.5"), Decimal("92.00")),
        ),
        payment=("Zahlbar innerhalb von 30 Tagen ohne Abzug.", "IBAN DE29 6005 0101 0004 2817 93"),
    ),
    "lumiere-facture-photo": InvoiceSpec(
        language="fr",
        issuer=LUMIERE,
        buyer=Party("Café des Arts", ("12 place Bellecour", "69002 Lyon")),
        number="F-2026-0093",
        issue_date=date(2026, 5, 20),
        due_date=date(2026, 6, 19),
        currency="EUR",
        tax_rate=Decimal("20"),
        items=(
            LineSpec("Suspension laiton, modèle Orsay", Decimal("3"), Decimal("245.00")),
            LineSpec("Ampoules LED filament 4 W", Decimal("12"), Decimal("6.90")),
            LineSpec("Installation et réglage", Decimal("1"), Decimal("180.00")),
        ),
        payment=("Paiement à 30 jours par virement.", "IBAN FR14 3000 4008 2800 0123 4567 890"),
    ),
    "northwind-invoice-2page": InvoiceSpec(
        language="en",
        issuer=NORTHWIND,
        buyer=Party("Severn Valley Surgery", ("Riverside Road", "Worcester WR1 3JT")),
        number="NW-2026-0533",
        issue_date=date(2026, 6, 2),
        due_date=date(2026, 7, 2),
        currency="GBP",
        tax_rate=Decimal("20"),
        items=(
            LineSpec("Printer toner, black, HP 59A", Decimal("2"), Decimal("89.00")),
            LineSpec("Sticky notes, 76 x 76 mm, pack of 12", Decimal("5"), Decimal("7.40")),
            LineSpec("Office chair, mesh back", Decimal("1"), Decimal("149.99")),
        ),
        payment=(
            "Payment within 30 days by bank transfer.",
            "Sort code 20-45-77  Account 4481 9902",
        ),
        terms_page=(
            "Terms and conditions",
            "1. Goods remain our property until paid in full.",
            "2. Report damaged or missing items within 7 days of delivery.",
            "3. Late payments accrue interest at 8% above the Bank of England base rate.",
            "4. Returns are accepted within 30 days in the original packaging.",
        ),
    ),
    "brenner-rechnung-rotated": InvoiceSpec(
        language="de",
        issuer=BRENNER,
        buyer=Party("Stadtwerke Esslingen", ("Fleischmannstraße 50", "73728 Esslingen")),
        number="RE-26-00802",
        issue_date=date(2026, 4, 17),
        due_date=date(2026, 5, 17),
        currency="EUR",
        tax_rate=Decimal("19"),
        items=(
            LineSpec("Absperrschieber DN80", Decimal("4"), Decimal("212.50")),
            LineSpec("Dichtungssatz EPDM", Decimal("10"), Decimal("14.20")),
        ),
        payment=("Zahlbar innerhalb von 30 Tagen ohne Abzug.", "IBAN DE29 6005 0101 0004 2817 93"),
    ),
}


# ---------------------------------------------------------------- rendering


def invoice_pdf(spec: InvoiceSpec) -> bytes:
    """A born-digital invoice PDF with a real text layer (fonts embedded, reproducible bytes)."""
    doc = pymupdf.open()
    pages = 2 if spec.terms_page else 1
    _draw_invoice_page(doc.new_page(width=A4[0], height=A4[1]), spec, pages)
    if spec.terms_page:
        _draw_terms_page(doc.new_page(width=A4[0], height=A4[1]), spec, pages)
    doc.set_metadata({"title": f"{spec.issuer.name} {spec.number}", "producer": "mmflow samples"})
    doc.subset_fonts()
    data = doc.tobytes(garbage=3, deflate=True, no_new_id=True)
    doc.close()
    return data


class _Pen:
    """Writes text at absolute positions, right-aligned when asked, in Helvetica with €/£."""

    def __init__(self, page: pymupdf.Page) -> None:
        self.page = page
        self.writer = pymupdf.TextWriter(page.rect)
        self.regular = pymupdf.Font("helv")
        self.bold = pymupdf.Font("hebo")

    def text(
        self,
        x: float,
        y: float,
        text: str,
        size: float = 9.5,
        bold: bool = False,
        right: bool = False,
    ) -> None:
        font = self.bold if bold else self.regular
        if right:
            x -= font.text_length(text, fontsize=size)
        self.writer.append((x, y), text, font=font, fontsize=size)

    def rule(self, y: float, x0: float = 50, x1: float = 545, width: float = 0.6) -> None:
        self.page.draw_line((x0, y), (x1, y), color=(0.3, 0.3, 0.3), width=width)

    def finish(self) -> None:
        self.writer.write_text(self.page)


def _draw_invoice_page(page: pymupdf.Page, spec: InvoiceSpec, pages: int) -> None:
    labels = LABELS[spec.language]
    lang = spec.language
    pen = _Pen(page)
    pen.text(50, 72, spec.issuer.name, size=16, bold=True)
    for n, line in enumerate(spec.issuer.address):
        pen.text(50, 90 + 12 * n, line, size=9)
    pen.text(545, 72, labels["title"], size=22, bold=True, right=True)

    meta = (
        (labels["number"], spec.number),
        (labels["issue"], format_date(spec.issue_date, lang)),
        (labels["due"], format_date(spec.due_date, lang)),
    )
    for n, (label, value) in enumerate(meta):
        y = 160.0 + 15 * n
        pen.text(330, y, f"{label}:", size=9.5)
        pen.text(545, y, value, size=9.5, bold=True, right=True)

    pen.text(50, 160, labels["bill_to"], size=9.5, bold=True)
    pen.text(50, 175, spec.buyer.name, size=9.5)
    for n, line in enumerate(spec.buyer.address):
        pen.text(50, 188 + 12 * n, line, size=9)

    top = 260.0
    pen.text(50, top, labels["description"], bold=True)
    pen.text(345, top, labels["quantity"], bold=True, right=True)
    pen.text(445, top, labels["unit_price"], bold=True, right=True)
    pen.text(545, top, labels["amount"], bold=True, right=True)
    pen.rule(top + 6)
    y = top + 22
    for item in spec.items:
        pen.text(50, y, item.description)
        pen.text(345, y, format_quantity(item.quantity, lang), right=True)
        pen.text(445, y, format_amount(item.unit_price, lang), right=True)
        pen.text(545, y, format_amount(item.amount, lang), right=True)
        y += 18
    pen.rule(y - 8)

    y += 10
    totals = (
        (labels["subtotal"], format_money(spec.subtotal, spec.currency, lang), False),
        (
            labels["tax"].format(rate=format_quantity(spec.tax_rate, lang)),
            format_money(spec.tax_amount, spec.currency, lang),
            False,
        ),
        (labels["total"], format_money(spec.total, spec.currency, lang), True),
    )
    for label, value, bold in totals:
        pen.text(360, y, label, bold=bold, size=10.5 if bold else 9.5)
        pen.text(545, y, value, bold=bold, size=10.5 if bold else 9.5, right=True)
        y += 17

    for n, line in enumerate(spec.payment):
        pen.text(50, 740 + 13 * n, line, size=8.5)
    if pages > 1:
        pen.text(545, 800, labels["page"].format(n=1, of=pages), size=8, right=True)
    pen.finish()


def _draw_terms_page(page: pymupdf.Page, spec: InvoiceSpec, pages: int) -> None:
    pen = _Pen(page)
    pen.text(50, 72, spec.issuer.name, size=12, bold=True)
    pen.text(50, 110, spec.terms_page[0], size=13, bold=True)
    for n, line in enumerate(spec.terms_page[1:]):
        pen.text(50, 140 + 18 * n, line, size=9.5)
    pen.text(545, 800, LABELS[spec.language]["page"].format(n=2, of=pages), size=8, right=True)
    pen.finish()


def rasterise(pdf: bytes, dpi: int, grey: bool = True) -> list[Image.Image]:
    """Render every page of a PDF to a Pillow image (greyscale by default, like a scanner)."""
    images = []
    with pymupdf.open(stream=pdf, filetype="pdf") as doc:
        for page in doc:
            pix = page.get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY if grey else pymupdf.csRGB)
            mode = "L" if grey else "RGB"
            images.append(Image.frombytes(mode, (pix.width, pix.height), pix.samples))
    return images


def scanned(image: Image.Image, rng: np.random.Generator, skew_deg: float = 0.5) -> Image.Image:
    """A flatbed scan of a clean page: slight skew, toner blur, paper noise, off-white paper
    (also the base of the evaluation's degraded scans, tasks/eval/degrade.py)."""
    tilted = image.convert("L").rotate(skew_deg, resample=Image.Resampling.BILINEAR, fillcolor=255)
    blurred = tilted.filter(ImageFilter.GaussianBlur(0.6))
    pixels = np.asarray(blurred, dtype=np.float32) * 0.93 + 8
    pixels += rng.normal(0.0, 7.0, pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L")


def _photographed(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A phone-camera look: page on a desk, keystone perspective, uneven light, sensor noise."""
    paper = image.convert("RGB")
    w, h = paper.size
    canvas_size = (int(w * 1.12), int(h * 1.08))
    # Keystone: the top edge looks narrower than the bottom, as when the phone is tilted back.
    # QUAD names the source corners (tl, bl, br, tr) that land on the output's corners.
    inset = 0.045 * w
    source_quad = (-inset, 0.0, 0.0, float(h), float(w), float(h), w + inset, 0.0)
    warped = paper.transform(
        (w, h),
        Image.Transform.QUAD,
        source_quad,
        resample=Image.Resampling.BILINEAR,
        fillcolor=(96, 78, 60),
    )
    desk = Image.new("RGB", canvas_size, (96, 78, 60))
    desk.paste(warped, ((canvas_size[0] - w) // 2, (canvas_size[1] - h) // 2))
    pixels = np.asarray(desk, dtype=np.float32)
    yy, xx = np.mgrid[0 : canvas_size[1], 0 : canvas_size[0]].astype(np.float32)
    light = 1.0 - 0.28 * (xx / canvas_size[0]) - 0.12 * (yy / canvas_size[1])  # lamp on the left
    pixels = pixels * light[:, :, None] * np.array([1.0, 0.97, 0.9], dtype=np.float32)
    pixels += rng.normal(0.0, 5.0, pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="RGB")


def _image_pdf(images: list[Image.Image], page_size: tuple[float, float], quality: int) -> bytes:
    """An image-only PDF (no text layer), one JPEG per page: what a scanner's 'scan to PDF' does."""
    doc = pymupdf.open()
    for image in images:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        page = doc.new_page(width=page_size[0], height=page_size[1])
        page.insert_image(page.rect, stream=buffer.getvalue())
    doc.set_metadata({"producer": "mmflow samples scanner"})
    data = doc.tobytes(garbage=3, deflate=True, no_new_id=True)
    doc.close()
    return data


# ---------------------------------------------------------------- ground truth


def compact_identifier(text: str) -> str:
    """An identifier as the contract reports it: no spaces, dots, dashes; upper case."""
    return re.sub(r"[\s.\-/]", "", text).upper()


def _rate_text(rate: Decimal) -> str:
    return format(rate.normalize(), "f")


def truth_of(spec: InvoiceSpec) -> dict[str, Any]:
    """Field values as the invoice contract (docs/contracts.md) reports them, plus the strings
    as printed.

    A credit note's amounts are negative (as printed, or implied by the document type); the
    generated set's documents state every added field, null where the document has none.
    """
    lang = spec.language
    sign = Decimal(spec.sign)
    generated = bool(spec.labels)
    truth: dict[str, Any] = {
        "document_type": spec.kind,
        "invoice_number": spec.number,
        "issue_date": spec.issue_date.isoformat(),
        "due_date": None if spec.kind == "credit_note" else spec.due_date.isoformat(),
        "issuer_name": spec.issuer.name,
        "issuer_address": ", ".join(spec.issuer.address if generated else spec.issuer.address[:3]),
        "buyer_name": spec.buyer.name,
        "buyer_address": ", ".join(spec.buyer.address),
        "currency": spec.currency,
        "subtotal": str(spec.subtotal * sign),
        "tax_amount": str(spec.tax_amount * sign),
        "total": str(spec.total * sign),
        "tax_lines": [
            {"rate": _rate_text(rate), "base": str(base * sign), "amount": str(tax * sign)}
            for rate, base, tax in spec.tax_lines
        ],
        "line_items": [
            {
                "description": item.description,
                "quantity": str(item.quantity),
                "unit_price": str(item.unit_price * sign),
                "amount": str(item.amount * sign),
            }
            for item in spec.items
        ],
        "language": lang,
    }
    if generated:
        truth |= {
            "issuer_tax_id": _compact_or_none(spec.issuer_tax_id),
            "buyer_tax_id": _compact_or_none(spec.buyer_tax_id),
            "iban": _compact_or_none(spec.iban),
            "bic": spec.bic,
            "purchase_order": spec.purchase_order,
            "payment_terms": spec.payment_terms,
            "referenced_invoice": spec.referenced_invoice,
        }
    else:  # the classic samples print a tax ID under the address and an IBAN in the footer
        printed_id = re.search(r"[A-Z]{2}[\d ]+$", spec.issuer.address[3])
        truth["issuer_tax_id"] = compact_identifier(printed_id.group()) if printed_id else None
        ibans = [line.removeprefix("IBAN ") for line in spec.payment if line.startswith("IBAN")]
        if ibans:
            truth["iban"] = compact_identifier(ibans[0])
        truth["printed"] = {
            "invoice_number": spec.number,
            "issue_date": format_date(spec.issue_date, lang),
            "due_date": format_date(spec.due_date, lang),
            "subtotal": format_amount(spec.subtotal, lang),
            "tax_amount": format_amount(spec.tax_amount, lang),
            "total": format_amount(spec.total, lang),
        }
    return truth


def _compact_or_none(text: str | None) -> str | None:
    return None if text is None else compact_identifier(text)


def truth_path(sample: Path) -> Path:
    return sample.with_name(f"{sample.stem}.truth.json")


def sample_truth(path: Path) -> dict[str, Any]:
    """The ground truth written beside a sample by `make_samples`."""
    result: dict[str, Any] = json.loads(truth_path(path).read_text(encoding="utf-8"))
    return result


# ---------------------------------------------------------------- writing the set


def make_samples(out_dir: Path) -> list[Path]:
    """Write the sample inputs and their `.truth.json` files; returns the sample paths.

    Forms: born-digital PDF (en), image-only scan PDF (de), phone photo JPEG stored sideways
    with an EXIF orientation tag (fr), two-page bilevel fax TIFF (en), scan stored rotated
    90 degrees with no tag (de). `rotation` in the truth is the clockwise turn that makes the
    stored pixels upright (after any EXIF orientation is applied).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20260314)
    written: list[Path] = []

    def write(name: str, data: bytes, extra: dict[str, Any]) -> None:
        path = out_dir / name
        path.write_bytes(data)
        truth = truth_of(SPECS[path.stem]) | extra
        truth_path(path).write_text(
            json.dumps(truth, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        written.append(path)

    spec = SPECS["northwind-invoice"]
    write("northwind-invoice.pdf", invoice_pdf(spec), {"form": "text_pdf", "pages": 1})

    spec = SPECS["brenner-rechnung-scan"]
    scan = scanned(rasterise(invoice_pdf(spec), dpi=200)[0], rng, skew_deg=0.7)
    write(
        "brenner-rechnung-scan.pdf",
        _image_pdf([scan], A4, quality=75),
        {"form": "scan_pdf", "pages": 1, "rotation": 0},
    )

    spec = SPECS["lumiere-facture-photo"]
    photo = _photographed(rasterise(invoice_pdf(spec), dpi=150, grey=False)[0], rng)
    # Phones store the sensor's landscape frame and tag how to turn it (6: turn 90° clockwise).
    stored = photo.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    buffer = io.BytesIO()
    stored.save(buffer, format="JPEG", quality=82, exif=exif)
    write(
        "lumiere-facture-photo.jpg",
        buffer.getvalue(),
        {"form": "photo_jpeg", "pages": 1, "exif_orientation": 6, "rotation": 0},
    )

    spec = SPECS["northwind-invoice-2page"]
    frames = [
        page.point(lambda v: 255 if v > 150 else 0).convert("1")
        for page in rasterise(invoice_pdf(spec), dpi=200)
    ]
    buffer = io.BytesIO()
    frames[0].save(
        buffer,
        format="TIFF",
        compression="group4",
        save_all=True,
        append_images=frames[1:],
        dpi=(200, 200),
    )
    write(
        "northwind-invoice-2page.tiff",
        buffer.getvalue(),
        {"form": "fax_tiff", "pages": 2, "rotation": 0},
    )

    spec = SPECS["brenner-rechnung-rotated"]
    upright_scan = scanned(rasterise(invoice_pdf(spec), dpi=150)[0], rng, skew_deg=-0.4)
    sideways = upright_scan.transpose(Image.Transpose.ROTATE_90)  # text runs bottom to top
    buffer = io.BytesIO()
    sideways.save(buffer, format="PNG", optimize=False)
    write(
        "brenner-rechnung-rotated.png",
        buffer.getvalue(),
        {"form": "rotated_scan_png", "pages": 1, "rotation": 90},
    )
    return written


def numbered_invoices(count: int, start: int = 10000) -> Iterator[tuple[str, bytes]]:
    """`count` distinct born-digital invoices (distinct numbers, so distinct hashes), for
    batches, benchmarks and load tests: (file name, PDF bytes)."""
    base = SPECS["northwind-invoice"]
    for number in range(start, start + count):
        yield f"invoice-{number}.pdf", invoice_pdf(replace(base, number=f"NW-{number}"))


def scanned_invoices(count: int, start: int = 500) -> Iterator[tuple[str, bytes]]:
    """`count` image-only PDFs (the OCR route), each a 200-dpi greyscale raster of a distinct
    invoice, for benchmarks: (file name, PDF bytes)."""
    base = SPECS["brenner-rechnung-scan"]
    for number in range(start, start + count):
        image = rasterise(invoice_pdf(replace(base, number=f"BR-{number}")), dpi=200)[0]
        yield f"scan-{number}.pdf", _image_pdf([image], A4, quality=80)


def write_files(folder: Path, files: Iterable[tuple[str, bytes]]) -> list[Path]:
    """Write generated (file name, bytes) pairs into a new `folder`; returns their paths."""
    folder.mkdir(parents=True)
    paths = []
    for name, data in files:
        (folder / name).write_bytes(data)
        paths.append(folder / name)
    return paths


# ---------------------------------------------------------------- the generated set


def _valid_identifier(rng: np.random.Generator, template: str, valid: Callable[[str], bool]) -> str:
    """`template` with each `#` a random digit, redrawn until `valid` accepts it (check digits)."""
    for _ in range(5000):
        candidate = "".join(str(rng.integers(10)) if c == "#" else c for c in template)
        if valid(candidate):
            return candidate
    raise RuntimeError(f"no valid identifier found for {template}")


VAT_TEMPLATES: dict[str, str] = {
    "DE": "DE#########",
    "FR": "FR###########",
    "NL": "NL#########B0#",
    "ES": "ESB########",
    "IT": "IT###########",
    "PL": "PL##########",
}
VAT_PRINTED: dict[str, Callable[[str], str]] = {
    "DE": lambda v: f"DE {v[2:5]} {v[5:8]} {v[8:]}",
    "FR": lambda v: f"FR {v[2:4]} {v[4:7]} {v[7:10]} {v[10:]}",
    "NL": lambda v: v,
    "ES": lambda v: v[2:],  # Spanish invoices print the NIF without the ES prefix
    "IT": lambda v: v[2:],  # and Italian ones the partita IVA's 11 digits
    "PL": lambda v: f"{v[2:5]}-{v[5:8]}-{v[8:10]}-{v[10:]}",  # and Polish ones the NIP
}


def generated_vat_id(rng: np.random.Generator, country: str) -> str:
    """A VAT number of `country` with valid check digits, as that country prints it."""
    return VAT_PRINTED[country](_valid_identifier(rng, VAT_TEMPLATES[country], eu_vat.is_valid))


def generated_iban(rng: np.random.Generator, country: str) -> str:
    """An IBAN of `country` with valid check digits (and national ones), printed in fours."""
    structure = numdb.get("iban").info(f"{country}00")[0][1]["bban"]
    for _ in range(5000):
        bban = ""
        for count, kind in re.findall(r"(\d+)!?([nac])", structure):
            alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if kind == "a" else "0123456789"
            bban += "".join(alphabet[rng.integers(len(alphabet))] for _ in range(int(count)))
        number = f"{country}{stdnum_iban.calc_check_digits(f'{country}00{bban}')}{bban}"
        if stdnum_iban.is_valid(number):
            return " ".join(number[i : i + 4] for i in range(0, len(number), 4))
    raise RuntimeError(f"no valid IBAN found for {country}")


def generated_bic(rng: np.random.Generator, country: str) -> str:
    letters = "ABCDEFGHIJKLMNOPRSTUVWXYZ"
    bank = "".join(letters[rng.integers(len(letters))] for _ in range(4))
    branch = "XXX" if rng.random() < 0.5 else ""
    return f"{bank}{country}{rng.integers(2, 10)}{letters[rng.integers(len(letters))]}{branch}"


@dataclass(frozen=True)
class SetDocument:
    """One generated file: its documents (one, or several one after another) and its name."""

    name: str
    specs: tuple[InvoiceSpec, ...]


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _labels(rng: np.random.Generator, language: SetLanguage) -> dict[str, str]:
    return {key: _pick(rng, options) for key, options in VOCABULARY[language].items()}


def _party(entry: tuple[str, str, str, str]) -> Party:
    name, street, town, country = entry
    return Party(name, (street, town, country))


def _number(rng: np.random.Generator, language: SetLanguage, kind: DocumentKind) -> str:
    year = 2026
    serial = int(rng.integers(10, 9999))
    forms = {
        "de": (f"RE-{year}-{serial:05d}", f"{year}{serial:06d}", f"R{serial:06d}"),
        "fr": (f"F{year}-{serial:04d}", f"FA-{serial:06d}", f"{year}/{serial:05d}"),
        "nl": (f"{year}-{serial:04d}", f"F{serial:07d}", f"NL{year}{serial:05d}"),
        "es": (f"A-{year}-{serial:04d}", f"{year}/{serial:04d}", f"FAC{serial:06d}"),
        "it": (f"{serial}/{year}", f"FT-{year}-{serial:04d}", f"{serial:05d}/A"),
        "pl": (f"FV/{serial}/{year}", f"{serial}/03/{year}", f"FS-{serial:04d}/{year}"),
    }[language]
    number = _pick(rng, forms)
    if kind == "credit_note":
        credit = {"de": "GS", "fr": "AV", "nl": "CN", "es": "R", "it": "NC", "pl": "KOR"}
        number = f"{credit[language]}-{serial:05d}"
    return number


def generated_spec(
    rng: np.random.Generator,
    language: SetLanguage,
    layout: Layout,
    kind: DocumentKind = "invoice",
    two_rates: bool = False,
    issuer_index: int | None = None,
    pages: int = 1,
    serial: int = 0,
) -> InvoiceSpec:
    """One document of the generated set; every choice drawn from `rng`."""
    companies = COMPANIES[language]
    issuer_at = int(rng.integers(len(companies))) if issuer_index is None else issuer_index
    buyer_at = (issuer_at + 1 + int(rng.integers(len(companies) - 1))) % len(companies)
    standard, reduced = (Decimal(r) for r in TAX_RATES[language])
    goods = GOODS[language]
    count = int(rng.integers(2, 6))
    picks = [int(i) for i in rng.choice(len(goods), size=count, replace=False)]
    if two_rates and not any(i in REDUCED_GOODS[language] for i in picks):
        picks[-1] = min(REDUCED_GOODS[language])
    items = tuple(
        LineSpec(
            goods[i],
            Decimal(int(rng.integers(1, 13))),
            Decimal(int(rng.integers(150, 48000))) / 100,
            tax_rate=(reduced if two_rates and i in REDUCED_GOODS[language] else standard),
        )
        for i in picks
    )
    issue = date(2026, int(rng.integers(1, 13)), int(rng.integers(1, 29)))
    country = COUNTRY[language]
    buyer_country = country if rng.random() < 0.7 else _pick(rng, tuple(VAT_TEMPLATES))
    labels = _labels(rng, language)
    referenced = _number(rng, language, "invoice") if kind == "credit_note" else None
    terms_page: tuple[str, ...] = ()
    if pages > 1:
        terms_page = (
            labels["conditions"],
            *[f"{n + 1}. {goods[n]}: {labels['terms_text']}." for n in range(3)],
        )
    return InvoiceSpec(
        language=language,
        issuer=_party(companies[issuer_at]),
        buyer=_party(companies[buyer_at]),
        number=_number(rng, language, kind),
        issue_date=issue,
        due_date=date.fromordinal(issue.toordinal() + int(rng.choice([14, 30, 45, 60]))),
        currency="PLN" if language == "pl" and rng.random() < 0.7 else "EUR",
        tax_rate=standard,
        items=items,
        terms_page=terms_page,
        kind=kind,
        layout=layout,
        labels=labels,
        issuer_tax_id=generated_vat_id(rng, country),
        buyer_tax_id=generated_vat_id(rng, buyer_country) if rng.random() < 0.4 else None,
        iban=generated_iban(rng, country),
        bic=generated_bic(rng, country) if rng.random() < 0.8 else None,
        purchase_order=f"PO-{int(rng.integers(1000, 99999))}" if rng.random() < 0.5 else None,
        payment_terms=labels["terms_text"] if kind == "invoice" and rng.random() < 0.6 else None,
        referenced_invoice=referenced,
        signed=kind == "credit_note" and rng.random() < 0.5,
        long_dates=rng.random() < 0.3,
    )


def sample_set_documents(seed: int = 12) -> list[SetDocument]:
    """The generated set: per language eight single documents (two with two VAT rates, two
    credit notes, one of two pages) and two files of several documents."""
    rng = np.random.default_rng(seed)
    layouts: tuple[Layout, ...] = ("classic", "header_row", "window")
    files: list[SetDocument] = []
    for language in SET_LANGUAGES:
        plan: list[tuple[DocumentKind, bool, int]] = [
            ("invoice", False, 1),
            ("invoice", True, 1),
            ("invoice", False, 1),
            ("invoice", True, 1),
            ("credit_note", False, 1),
            ("credit_note", True, 1),
            ("invoice", False, 2),
            ("invoice", False, 1),
        ]
        for n, (kind, two_rates, pages) in enumerate(plan):
            layout = layouts[(n + SET_LANGUAGES.index(language)) % len(layouts)]
            spec = generated_spec(rng, language, layout, kind, two_rates, pages=pages)
            files.append(SetDocument(f"{language}-{n + 1:02d}-{kind}", (spec,)))
        # two invoices of one issuer in one scan batch: same layout, same header
        same = int(rng.integers(len(COMPANIES[language])))
        layout = layouts[SET_LANGUAGES.index(language) % len(layouts)]
        pair = tuple(
            generated_spec(rng, language, layout, "invoice", k == 1, issuer_index=same)
            for k in range(2)
        )
        files.append(SetDocument(f"{language}-09-two-invoices", pair))
        # an invoice of two pages, a credit note and an invoice of other issuers
        mixed = (
            generated_spec(rng, language, layouts[0], "invoice", pages=2),
            generated_spec(rng, language, layouts[1], "credit_note"),
            generated_spec(rng, language, layouts[2], "invoice", True),
        )
        files.append(SetDocument(f"{language}-10-three-documents", mixed))
    return files


def documents_pdf(specs: tuple[InvoiceSpec, ...]) -> bytes:
    """One PDF holding the documents one after another, as a scan batch or an e-mail would."""
    doc = pymupdf.open()
    for spec in specs:
        with pymupdf.open(stream=generated_pdf(spec), filetype="pdf") as part:
            doc.insert_pdf(part)
    doc.set_metadata({"producer": "mmflow samples"})
    data = doc.tobytes(garbage=3, deflate=True, no_new_id=True)
    doc.close()
    return data


def make_sample_set(out_dir: Path, seed: int = 12) -> list[Path]:
    """Write the generated set (born-digital PDFs) and a `.truth.json` beside each file.

    A file of several documents has truth `{"documents": [...]}`, each document with its
    `pages` (first, last; 1-based).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for entry in sample_set_documents(seed):
        path = out_dir / f"{entry.name}.pdf"
        path.write_bytes(documents_pdf(entry.specs))
        if len(entry.specs) == 1:
            truth: dict[str, Any] = truth_of(entry.specs[0]) | {"form": "generated_pdf"}
        else:
            documents, first = [], 1
            for spec in entry.specs:
                last = first + (2 if spec.terms_page else 1) - 1
                documents.append(truth_of(spec) | {"pages": [first, last]})
                first = last + 1
            truth = {"form": "generated_pdf", "documents": documents}
        truth_path(path).write_text(
            json.dumps(truth, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        written.append(path)
    return written


# ---------------------------------------------------------------- the generated set's layouts


def generated_pdf(spec: InvoiceSpec) -> bytes:
    """A born-digital PDF of one generated document in its layout (one or two pages)."""
    doc = pymupdf.open()
    pages = 2 if spec.terms_page else 1
    draw = {"classic": _draw_classic, "header_row": _draw_header_row, "window": _draw_window}
    draw[spec.layout](doc.new_page(width=A4[0], height=A4[1]), spec, pages)
    if spec.terms_page:
        page = doc.new_page(width=A4[0], height=A4[1])
        pen = _Pen(page)
        pen.text(50, 72, spec.issuer.name, size=12, bold=True)
        pen.text(50, 110, spec.terms_page[0], size=13, bold=True)
        for n, line in enumerate(spec.terms_page[1:]):
            pen.text(50, 140 + 18 * n, line, size=9.5)
        pen.text(545, 800, spec.labels["page"].format(n=2, of=pages), size=8, right=True)
        pen.finish()
    doc.subset_fonts()
    data = doc.tobytes(garbage=3, deflate=True, no_new_id=True)
    doc.close()
    return data


def _money(spec: InvoiceSpec, value: Decimal, symbol: bool = True) -> str:
    shown = -value if spec.signed else value
    if symbol:
        return format_money(shown, spec.currency, spec.language).replace("€ -", "-€ ")
    return format_amount(shown, spec.language)


def _date(spec: InvoiceSpec, value: date) -> str:
    return format_date(value, spec.language, spec.long_dates)


def _title(spec: InvoiceSpec) -> str:
    return spec.labels["credit_title" if spec.kind == "credit_note" else "title"]


def _meta(spec: InvoiceSpec) -> list[tuple[str, str]]:
    """Label and value of every document detail the header shows."""
    labels = spec.labels
    number = labels["credit_number" if spec.kind == "credit_note" else "number"]
    rows = [(number, spec.number), (labels["issue"], _date(spec, spec.issue_date))]
    if spec.kind == "invoice":
        rows.append((labels["due"], _date(spec, spec.due_date)))
    if spec.purchase_order:
        rows.append((labels["po"], spec.purchase_order))
    if spec.referenced_invoice:
        rows.append((labels["reference"], spec.referenced_invoice))
    return rows


def _tax_label(spec: InvoiceSpec, rate: Decimal) -> str:
    return spec.labels["tax"].format(rate=format_quantity(rate, spec.language))


def _buyer_lines(spec: InvoiceSpec) -> list[str]:
    lines = [spec.buyer.name, *spec.buyer.address]
    if spec.buyer_tax_id:
        lines.append(f"{spec.labels['buyer_tax_id']}: {spec.buyer_tax_id}")
    return lines


def _table(pen: _Pen, spec: InvoiceSpec, top: float, rate_column: bool) -> float:
    """The items table from `top`; returns the y below it."""
    labels, lang = spec.labels, spec.language
    pen.text(50, top, labels["description"], bold=True)
    pen.text(330, top, labels["quantity"], bold=True, right=True)
    pen.text(420, top, labels["unit_price"], bold=True, right=True)
    if rate_column:
        pen.text(465, top, labels["rate_header"], bold=True, right=True)
    pen.text(545, top, labels["amount"], bold=True, right=True)
    pen.rule(top + 6)
    y = top + 22
    for item in spec.items:
        pen.text(50, y, item.description)
        pen.text(330, y, format_quantity(item.quantity, lang), right=True)
        pen.text(420, y, _money(spec, item.unit_price, symbol=False), right=True)
        if rate_column:
            pen.text(465, y, f"{format_quantity(spec.rate_of(item), lang)}%", right=True)
        pen.text(545, y, _money(spec, item.amount, symbol=False), right=True)
        y += 18
    pen.rule(y - 8)
    return y + 10


def _totals(pen: _Pen, spec: InvoiceSpec, y: float, x: float = 330) -> float:
    """Subtotal, one line per tax rate ("VAT 7% on 100.00"), total; returns the y below."""
    labels = spec.labels
    pen.text(x, y, labels["subtotal"])
    pen.text(545, y, _money(spec, spec.subtotal), right=True)
    y += 16
    several = len(spec.tax_lines) > 1
    for rate, base, tax in spec.tax_lines:
        label = _tax_label(spec, rate)
        if several:
            label += f" {labels['tax_on']} {_money(spec, base, symbol=False)}"
        pen.text(x, y, label)
        pen.text(545, y, _money(spec, tax), right=True)
        y += 16
    pen.text(x, y, labels["total"], bold=True, size=10.5)
    pen.text(545, y, _money(spec, spec.total), bold=True, size=10.5, right=True)
    return y + 24


def _tax_summary(pen: _Pen, spec: InvoiceSpec, y: float) -> float:
    """A rate / base / tax table, as many invoices print beside or under the totals."""
    labels = spec.labels
    pen.text(50, y, labels["rate_header"], bold=True, size=8.5)
    pen.text(170, y, labels["base_header"], bold=True, size=8.5, right=True)
    pen.text(250, y, labels["tax_header"], bold=True, size=8.5, right=True)
    y += 13
    for rate, base, tax in spec.tax_lines:
        pen.text(50, y, f"{format_quantity(rate, spec.language)} %", size=8.5)
        pen.text(170, y, _money(spec, base, symbol=False), size=8.5, right=True)
        pen.text(250, y, _money(spec, tax, symbol=False), size=8.5, right=True)
        y += 12
    return y


def _bank_and_terms(pen: _Pen, spec: InvoiceSpec, y: float) -> None:
    labels = spec.labels
    if spec.payment_terms:
        pen.text(50, y, f"{labels['terms']}: {spec.payment_terms}", size=8.5)
        y += 12
    bank = f"IBAN: {spec.iban}"
    if spec.bic:
        bank += f"   BIC: {spec.bic}"
    pen.text(50, y, bank, size=8.5)


def _draw_classic(page: pymupdf.Page, spec: InvoiceSpec, pages: int) -> None:
    """Issuer top left, title top right, details in a label/value column, buyer under a label."""
    labels = spec.labels
    pen = _Pen(page)
    pen.text(50, 72, spec.issuer.name, size=15, bold=True)
    for n, line in enumerate(spec.issuer.address):
        pen.text(50, 90 + 12 * n, line, size=9)
    pen.text(
        50, 90 + 12 * len(spec.issuer.address), f"{labels['tax_id']}: {spec.issuer_tax_id}", size=9
    )
    pen.text(545, 72, _title(spec), size=20, bold=True, right=True)
    meta = _meta(spec)
    for n, (label, value) in enumerate(meta):
        pen.text(330, 160 + 15 * n, f"{label}:", size=9.5)
        pen.text(545, 160 + 15 * n, value, size=9.5, bold=True, right=True)
    pen.text(50, 160, labels["bill_to"], size=9.5, bold=True)
    for n, line in enumerate(_buyer_lines(spec)):
        pen.text(50, 175 + 13 * n, line, size=9.5)
    top = max(270.0, 175 + 15 * len(meta) + 30)
    y = _table(pen, spec, top, rate_column=len(spec.tax_lines) > 1)
    _totals(pen, spec, y)
    _bank_and_terms(pen, spec, 750)
    if pages > 1:
        pen.text(545, 800, labels["page"].format(n=1, of=pages), size=8, right=True)
    pen.finish()


def _draw_header_row(page: pymupdf.Page, spec: InvoiceSpec, pages: int) -> None:
    """Title top left, issuer block right-aligned, details as a header row with values under
    it, a rate/base/tax summary under the totals, and a three-column footer."""
    labels = spec.labels
    pen = _Pen(page)
    pen.text(50, 70, _title(spec), size=20, bold=True)
    pen.text(545, 60, spec.issuer.name, size=12, bold=True, right=True)
    for n, line in enumerate(spec.issuer.address):
        pen.text(545, 75 + 12 * n, line, size=9, right=True)
    meta = _meta(spec)
    width = 495 / len(meta)
    for n, (label, value) in enumerate(meta):
        pen.text(50 + n * width, 170, label, size=8.5, bold=True)
        pen.text(50 + n * width, 184, value, size=9.5)
    pen.text(50, 225, labels["bill_to"], size=9.5, bold=True)
    for n, line in enumerate(_buyer_lines(spec)):
        pen.text(50, 240 + 13 * n, line, size=9.5)
    y = _table(pen, spec, 330, rate_column=False)
    end = _totals(pen, spec, y)
    _tax_summary(pen, spec, end)
    if spec.payment_terms:
        pen.text(50, 730, f"{labels['terms']}: {spec.payment_terms}", size=8.5)
    pen.rule(748, width=0.4)
    pen.text(50, 762, spec.issuer.name, size=7.5)
    pen.text(50, 772, ", ".join(spec.issuer.address[:2]), size=7.5)
    pen.text(230, 762, f"IBAN {spec.iban}", size=7.5)
    if spec.bic:
        pen.text(230, 772, f"BIC {spec.bic}", size=7.5)
    pen.text(420, 762, f"{labels['tax_id']} {spec.issuer_tax_id}", size=7.5)
    if pages > 1:
        pen.text(545, 800, labels["page"].format(n=1, of=pages), size=8, right=True)
    pen.finish()


def _draw_window(page: pymupdf.Page, spec: InvoiceSpec, pages: int) -> None:
    """A letter: the issuer's name over a sender line, the buyer in the envelope window, the
    details in a block to the right, the title with the number above the table."""
    labels = spec.labels
    pen = _Pen(page)
    pen.text(50, 62, spec.issuer.name, size=17, bold=True)
    for n, line in enumerate(spec.issuer.address):
        pen.text(545, 50 + 11 * n, line, size=8.5, right=True)
    pen.text(
        545,
        50 + 11 * len(spec.issuer.address),
        f"{labels['tax_id']}: {spec.issuer_tax_id}",
        size=8.5,
        right=True,
    )
    sender = " · ".join([spec.issuer.name, *spec.issuer.address[:2]])
    pen.text(50, 128, sender, size=6.5)
    pen.rule(131, x0=50, x1=290, width=0.3)
    window_top = 150.0
    if spec.language != "de":  # German letters leave the window unlabelled (DIN 5008)
        pen.text(50, 145, labels["bill_to"], size=8, bold=True)
        window_top = 160.0
    for n, line in enumerate(_buyer_lines(spec)):
        pen.text(50, window_top + 13 * n, line, size=10)
    meta = _meta(spec)
    for n, (label, value) in enumerate(meta):
        pen.text(350, 150 + 14 * n, label, size=8.5)
        pen.text(545, 150 + 14 * n, value, size=8.5, right=True)
    number_label = labels["credit_number" if spec.kind == "credit_note" else "number"]
    pen.text(50, 280, f"{_title(spec)}", size=14, bold=True)
    pen.text(50, 296, f"{number_label} {spec.number}", size=9.5)
    y = _table(pen, spec, 330, rate_column=len(spec.tax_lines) > 1)
    _totals(pen, spec, y, x=300)
    _bank_and_terms(pen, spec, 760)
    if pages > 1:
        pen.text(545, 800, labels["page"].format(n=1, of=pages), size=8, right=True)
    pen.finish()
