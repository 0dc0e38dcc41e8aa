"""The project's own sample invoices: rendered here, so the demo and tests need no shared data.

Each sample is a fictional invoice whose numbers add up, written in one of the forms invoices
arrive in (born-digital PDF, image-only scan, phone photo, multi-page fax TIFF, sideways scan),
with `<stem>.truth.json` beside it holding the field values a correct pipeline must report and
the strings as printed on the page. Generation is seeded and takes well under a second per file.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pymupdf
from PIL import Image, ImageFilter

Language = Literal["en", "de", "fr"]

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

    @property
    def subtotal(self) -> Decimal:
        return sum((i.amount for i in self.items), Decimal("0"))

    @property
    def tax_amount(self) -> Decimal:
        return (self.subtotal * self.tax_rate / 100).quantize(CENT, ROUND_HALF_UP)

    @property
    def total(self) -> Decimal:
        return self.subtotal + self.tax_amount


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

CURRENCY_SYMBOL = {"GBP": "£", "EUR": "€", "USD": "$"}
MONTHS_EN = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def format_amount(value: Decimal, language: Language) -> str:
    """An amount as that locale prints it: 1,234.56 (en), 1.234,56 (de), 1 234,56 (fr)."""
    plain = f"{value.quantize(CENT):,.2f}"  # 1,234.56
    if language == "en":
        return plain
    thousands = "." if language == "de" else " "
    return plain.replace(",", "\x00").replace(".", ",").replace("\x00", thousands)


def format_money(value: Decimal, currency: str, language: Language) -> str:
    symbol = CURRENCY_SYMBOL.get(currency, currency)
    if language == "en":
        return f"{symbol}{format_amount(value, language)}"
    return f"{format_amount(value, language)} {symbol}"


def format_quantity(value: Decimal, language: Language) -> str:
    text = f"{value.normalize():f}"
    return text if language == "en" else text.replace(".", ",")


def format_date(value: date, language: Language) -> str:
    if language == "en":
        return f"{value.day} {MONTHS_EN[value.month - 1]} {value.year}"
    if language == "de":
        return value.strftime("%d.%m.%Y")
    return value.strftime("%d/%m/%Y")


# ---------------------------------------------------------------- the sample invoices

NORTHWIND = Party(
    "Northwind Office Supplies Ltd",
    ("14 Harbour Street", "Bristol BS1 4QA", "United Kingdom", "VAT No. GB 284 9317 52"),
)
BRENNER = Party(
    "Brenner & Söhne GmbH",
    ("Industriestraße 42", "70565 Stuttgart", "Deutschland", "USt-IdNr. DE 281 447 305"),
)
LUMIERE = Party(
    "Atelier Lumière SARL",
    ("7 rue des Tanneurs", "69002 Lyon", "France", "TVA FR 52 843 219 774"),
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
        payment=("Zahlbar innerhalb von 30 Tagen ohne Abzug.", "IBAN DE44 6005 0101 0004 2817 93"),
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
        payment=("Paiement à 30 jours par virement.", "IBAN FR76 3000 4008 2800 0123 4567 890"),
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
        payment=("Zahlbar innerhalb von 30 Tagen ohne Abzug.", "IBAN DE44 6005 0101 0004 2817 93"),
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


def _scanned(image: Image.Image, rng: np.random.Generator, skew_deg: float) -> Image.Image:
    """A flatbed look: slight skew, toner blur, paper noise, grey not quite white."""
    tilted = image.rotate(skew_deg, resample=Image.Resampling.BILINEAR, fillcolor=255)
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


def truth_of(spec: InvoiceSpec) -> dict[str, Any]:
    """Field values as DESIGN.md's contract reports them, plus the strings as printed."""
    lang = spec.language
    return {
        "invoice_number": spec.number,
        "issue_date": spec.issue_date.isoformat(),
        "due_date": spec.due_date.isoformat(),
        "issuer_name": spec.issuer.name,
        "issuer_address": ", ".join(spec.issuer.address[:3]),
        "buyer_name": spec.buyer.name,
        "currency": spec.currency,
        "subtotal": str(spec.subtotal),
        "tax_amount": str(spec.tax_amount),
        "total": str(spec.total),
        "line_items": [
            {
                "description": item.description,
                "quantity": str(item.quantity),
                "unit_price": str(item.unit_price),
                "amount": str(item.amount),
            }
            for item in spec.items
        ],
        "language": lang,
        "printed": {
            "invoice_number": spec.number,
            "issue_date": format_date(spec.issue_date, lang),
            "due_date": format_date(spec.due_date, lang),
            "subtotal": format_amount(spec.subtotal, lang),
            "tax_amount": format_amount(spec.tax_amount, lang),
            "total": format_amount(spec.total, lang),
        },
    }


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
    scan = _scanned(rasterise(invoice_pdf(spec), dpi=200)[0], rng, skew_deg=0.7)
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
    upright_scan = _scanned(rasterise(invoice_pdf(spec), dpi=150)[0], rng, skew_deg=-0.4)
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
