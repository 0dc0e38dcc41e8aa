"""Routing on PDFs the tests build with PyMuPDF, and on the shared invoices when present."""

from __future__ import annotations

import io
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pymupdf
import pytest
from PIL import Image, ImageDraw

from mmflow.tasks.estimate import ProviderFamily, estimate_image_tokens, price_table
from mmflow.tasks.models import NormalisedPage, PageRoute, Route
from mmflow.tasks.route import RouteOptions, garbled_share, page_pixels, page_signals, route_page

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
A4 = (595.0, 842.0)
INVOICE_LINES = [
    "ACME Supplies GmbH, Hauptstrasse 12, 10115 Berlin",
    "Invoice number: INV-2023-0042",
    "Invoice date: 20/03/2023   Due date: 19/04/2023",
    "Bill to: Pino Bluebird, Sessamestreet 32, Amsterdam",
    "Description              Qty   Unit price   Amount",
    "Office chair              2      120.00      240.00",
    "Desk lamp                 1       39.84       39.84",
    "Subtotal                                     279.84",
    "VAT 19%                                       53.17",
    "Total due                                    333.01 EUR",
]


def _normalised(page: pymupdf.Page) -> NormalisedPage:
    return NormalisedPage(
        index=page.number, width=page.rect.width, height=page.rect.height, unit="pt"
    )


def _scan_png(width: int = 1240, height: int = 1754) -> bytes:
    """A grey 'scan' with dark bars where lines of print would be."""
    image = Image.new("RGB", (width, height), (236, 236, 230))
    draw = ImageDraw.Draw(image)
    for row in range(12, 60):
        right = 100 + (row * 137) % 900 + 100
        draw.rectangle((100, row * 28, right, row * 28 + 12), fill=(40, 40, 40))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _scan_of_invoice() -> bytes:
    """The text invoice page as a 150-dpi picture: what a scanner would produce."""
    with pymupdf.open() as source:
        return _text_page(source).get_pixmap(dpi=150).tobytes("png")


def _route(page: pymupdf.Page, options: RouteOptions | None = None) -> PageRoute:
    normalised = _normalised(page)
    return route_page(page_signals(page, normalised), normalised, options or RouteOptions())


@pytest.fixture
def doc() -> Iterator[pymupdf.Document]:
    document = pymupdf.open()
    yield document
    document.close()


def _text_page(doc: pymupdf.Document) -> pymupdf.Page:
    page = doc.new_page(width=A4[0], height=A4[1])
    for i, line in enumerate(INVOICE_LINES):
        page.insert_text((60, 80 + i * 22), line, fontname="helv", fontsize=10)
    return page


def _garbled_page(doc: pymupdf.Document) -> pymupdf.Page:
    """Text in a font with a custom glyph-name encoding and no ToUnicode map."""
    page = doc.new_page(width=A4[0], height=A4[1])
    font = doc.get_new_xref()
    names = " ".join(f"/g{code}" for code in range(32, 123))
    doc.update_object(
        font,
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica "
        f"/Encoding << /Type /Encoding /Differences [ 32 {names} ] >> >>",
    )
    content = doc.get_new_xref()
    doc.update_object(content, "<< >>")
    lines = [
        f"BT /FX 10 Tf 60 {760 - i * 22} Td ({line.replace('(', '').replace(')', '')}) Tj ET"
        for i, line in enumerate(INVOICE_LINES)
    ]
    doc.update_stream(content, "\n".join(lines).encode("latin-1"))
    doc.xref_set_key(page.xref, "Contents", f"{content} 0 R")
    doc.xref_set_key(page.xref, "Resources", f"<< /Font << /FX {font} 0 R >> >>")
    return page


def test_text_pdf_routes_to_text_layer(doc: pymupdf.Document) -> None:
    decision = _route(_text_page(doc))
    assert decision.route is Route.TEXT_LAYER
    assert decision.reason.startswith("text layer: ")
    assert "0.0% garbled" in decision.reason


def test_image_only_pdf_routes_to_ocr(doc: pymupdf.Document) -> None:
    page = doc.new_page(width=A4[0], height=A4[1])
    page.insert_image(page.rect, stream=_scan_of_invoice())
    decision = _route(page)
    assert decision.route is Route.OCR
    assert decision.reason == "OCR: page is a full-page image with no text layer"
    assert decision.signals["image_coverage"] > 0.9


def test_garbled_text_layer_routes_to_ocr(doc: pymupdf.Document) -> None:
    page = _garbled_page(doc)
    signals = page_signals(page, _normalised(page))
    assert signals["text_chars"] > 200  # there IS a text layer, it is just unreadable
    assert signals["fonts_without_tounicode"] == 1
    decision = _route(page)
    assert decision.route is Route.OCR
    assert decision.reason.startswith("OCR: text layer is garbled (")
    assert "unreadable glyphs" in decision.reason


def test_scan_with_tiny_text_header_routes_to_ocr(doc: pymupdf.Document) -> None:
    page = doc.new_page(width=A4[0], height=A4[1])
    page.insert_image(page.rect, stream=_scan_of_invoice())
    page.insert_text((40, 24), "Scanned by ACME Document Services, page 1 of 1", fontsize=8)
    signals = page_signals(page, _normalised(page))
    assert signals["text_chars"] >= RouteOptions().min_chars  # enough text to look usable
    decision = _route(page)
    assert decision.route is Route.OCR
    assert decision.reason.startswith("OCR: images with print but no text layer over it cover")
    assert decision.signals["unread_image_share"] > 0.9


def test_scan_with_invisible_ocr_text_layer_routes_to_text_layer(doc: pymupdf.Document) -> None:
    """A 'sandwich' PDF (a scan plus the OCR text laid invisibly over its print) is readable."""
    page = doc.new_page(width=A4[0], height=A4[1])
    page.insert_image(page.rect, stream=_scan_of_invoice())
    for i, line in enumerate(INVOICE_LINES):
        page.insert_text((60, 80 + i * 22), line, fontname="helv", fontsize=10, render_mode=3)
    decision = _route(page)
    assert decision.route is Route.TEXT_LAYER
    assert decision.signals["image_coverage"] > 0.9
    assert decision.signals["unread_image_share"] == 0.0


def test_invoice_with_a_pasted_table_image_routes_to_ocr(doc: pymupdf.Document) -> None:
    """Born-digital text, but the line items are a picture the text layer knows nothing of."""
    page = _text_page(doc)
    page.insert_image(pymupdf.Rect(40, 330, 555, 700), stream=_scan_png())
    decision = _route(page)
    assert decision.route is Route.OCR
    assert decision.reason.startswith("OCR: images with print but no text layer over it cover")


def test_small_logo_does_not_force_ocr(doc: pymupdf.Document) -> None:
    page = _text_page(doc)
    page.insert_image(pymupdf.Rect(440, 20, 560, 70), stream=_scan_png(240, 100))
    decision = _route(page)
    assert decision.route is Route.TEXT_LAYER
    assert 0 < decision.signals["image_coverage"] < 0.1


def test_too_little_text_routes_to_ocr(doc: pymupdf.Document) -> None:
    page = doc.new_page(width=A4[0], height=A4[1])
    page.insert_text((60, 80), "Page 2", fontsize=10)
    decision = _route(page)
    assert decision.route is Route.OCR
    assert decision.reason == "OCR: text layer has only 5 characters (minimum 30)"


def test_raster_input_always_routes_to_ocr() -> None:
    normalised = NormalisedPage(index=0, width=1000, height=1000, unit="px")
    decision = route_page(page_signals(None, normalised), normalised, RouteOptions())
    assert decision.route is Route.OCR
    assert decision.page == 1
    assert decision.reason == "OCR: raster image input has no text layer"


def test_estimates_cover_every_alternative_at_rendered_size(doc: pymupdf.Document) -> None:
    decision = _route(_text_page(doc), RouteOptions(render_dpi=150))
    names = {e.alternative for e in decision.estimates}
    assert names == {
        "text_layer",
        "ocr:rapidocr",
        "vision:openai:high",
        "vision:openai:low",
        "vision:anthropic",
        "vision:gemini",
    }
    # A4 at 150 dpi is 1240x1754 px
    assert page_pixels(_normalised(doc[0]), 150) == (1240, 1754)
    by_name = {e.alternative: e for e in decision.estimates}
    prompt = price_table().vision_call.prompt_tokens
    assert by_name["vision:openai:high"].input_tokens == 1105 + prompt
    assert by_name["vision:gemini"].input_tokens == 1548 + prompt
    assert by_name["text_layer"].input_tokens == 0
    assert all(e.cost_usd > 0 for e in decision.estimates if e.alternative.startswith("vision"))


def test_raster_estimates_use_the_image_pixels() -> None:
    normalised = NormalisedPage(index=2, width=1024, height=1024, unit="px")
    decision = route_page(page_signals(None, normalised), normalised, RouteOptions())
    by_name = {e.alternative: e for e in decision.estimates}
    image_tokens = estimate_image_tokens(ProviderFamily.ANTHROPIC, 1024, 1024)
    assert (
        by_name["vision:anthropic"].input_tokens
        == image_tokens + price_table().vision_call.prompt_tokens
    )


def test_vision_is_never_chosen_by_default(doc: pymupdf.Document) -> None:
    page = doc.new_page(width=A4[0], height=A4[1])
    page.insert_image(page.rect, stream=_scan_png())
    assert _route(page, RouteOptions(max_vision_cost_usd=Decimal("100"))).route is Route.OCR


def test_vision_is_chosen_when_allowed_and_within_budget(doc: pymupdf.Document) -> None:
    page = doc.new_page(width=A4[0], height=A4[1])
    page.insert_image(page.rect, stream=_scan_png())
    decision = _route(page, RouteOptions(allow_vision=True, max_vision_cost_usd=Decimal("0.05")))
    assert decision.route is Route.VISION
    assert "vision:openai:high" in decision.reason


def test_vision_downgrades_to_low_detail_then_to_ocr_by_budget(doc: pymupdf.Document) -> None:
    page = doc.new_page(width=A4[0], height=A4[1])
    page.insert_image(page.rect, stream=_scan_png())
    # gpt-4o high on A4 costs ~$0.0108, low ~$0.0082
    low = _route(page, RouteOptions(allow_vision=True, max_vision_cost_usd=Decimal("0.009")))
    assert low.route is Route.VISION and "vision:openai:low" in low.reason
    none = _route(page, RouteOptions(allow_vision=True, max_vision_cost_usd=Decimal("0.001")))
    assert none.route is Route.OCR and "over the $0.001 page budget" in none.reason


def test_vision_is_not_used_when_the_text_layer_is_good(doc: pymupdf.Document) -> None:
    decision = _route(_text_page(doc), RouteOptions(allow_vision=True))
    assert decision.route is Route.TEXT_LAYER


def test_force_overrides_and_keeps_the_router_reason(doc: pymupdf.Document) -> None:
    decision = _route(_text_page(doc), RouteOptions(force=Route.OCR))
    assert decision.route is Route.OCR
    assert decision.reason.startswith("ocr: forced by options (the router chose text layer:")


def test_garbled_share_is_zero_for_ordinary_invoice_words() -> None:
    words = ["Factuurnummer:", "993548900", "BTW", "21%", "€", "399,00", "N°12345"]
    words += ["ci−dessous", "GmbH", "Apple®", "IBAN", "Thuiskopieheffing:", "(incl."]
    assert garbled_share(words) == 0.0


@pytest.mark.parametrize(
    "words",
    [
        ["\ufffd\ufffd\ufffd\ufffd", "\ufffd\ufffd"],
        ["\ue000\ue001\ue002", "\ue010\ue011"],
        ["(cid:12)(cid:5)(cid:44)", "(cid:7)"],
        ["ënvoi∑đ", "num∂đr", "tot£l"],
        ["3+(/,", "%$#!"],
        ["xkcdtrzw", "bcdfgh"],
    ],
)
def test_garbled_share_flags_unreadable_glyphs(words: list[str]) -> None:
    assert garbled_share(words) == 1.0


@pytest.fixture
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED


def test_shared_born_digital_invoices_route_to_text_layer(shared_data: Path) -> None:
    folder = shared_data / "invoices" / "invoice2data"
    for path in sorted(folder.glob("*.pdf")):
        if path.name == "saeco.pdf":
            continue
        with pymupdf.open(path) as document:
            for page in document:
                assert _route(page).route is Route.TEXT_LAYER, path.name


def test_shared_invoice_with_company_details_as_a_picture_routes_to_ocr(
    shared_data: Path,
) -> None:
    """saeco.pdf prints its issuer's address, VAT and IBAN only inside a footer image."""
    with pymupdf.open(shared_data / "invoices" / "invoice2data" / "saeco.pdf") as document:
        decision = _route(document[0])
    assert decision.route is Route.OCR
    assert decision.reason.startswith("OCR: images with print but no text layer over it cover")
