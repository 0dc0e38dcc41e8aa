"""A document's pages are routed and read: text layer, or OCR of the page turned upright."""

from __future__ import annotations

import io

import pymupdf
import pytest

from mmflow.tasks.document import read_document, route_document
from mmflow.tasks.normalise import normalise_document
from mmflow.tasks.route import RouteOptions
from mmflow.tasks.samples import SPECS, invoice_pdf, rasterise, truth_of
from mmflow.tasks.validate import validate_bytes


def _scan_pdf(turn: int) -> bytes:
    """An image-only PDF of a German invoice, its page image turned `turn` degrees."""
    image = rasterise(invoice_pdf(SPECS["brenner-rechnung-scan"]), 150)[0].rotate(turn, expand=True)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    doc = pymupdf.open()
    page = doc.new_page(width=image.width * 72 / 150, height=image.height * 72 / 150)
    page.insert_image(page.rect, stream=buffer.getvalue())
    return bytes(doc.tobytes())


def _read(data: bytes, tmp_path, name: str):
    path = tmp_path / name
    path.write_bytes(data)
    validated = validate_bytes(data, str(path))
    normalised = normalise_document(data, validated)
    routes = route_document(normalised, RouteOptions(render_dpi=150))
    return routes, read_document(normalised, routes, dpi=150)


def test_born_digital_pdf_is_read_from_its_text_layer(tmp_path) -> None:
    routes, text = _read(invoice_pdf(SPECS["northwind-invoice"]), tmp_path, "text.pdf")
    assert [r.route.value for r in routes] == ["text_layer"]
    assert text.pages[0].engine == "pymupdf"
    assert SPECS["northwind-invoice"].number in text.pages[0].text


@pytest.mark.slow
@pytest.mark.parametrize("turn", [0, 180, 90])
def test_scanned_page_is_ocred_upright_whichever_way_it_was_scanned(tmp_path, turn) -> None:
    routes, text = _read(_scan_pdf(turn), tmp_path, f"scan{turn}.pdf")
    assert [r.route.value for r in routes] == ["ocr"]
    page = text.pages[0]
    assert page.engine == "rapidocr"
    truth = truth_of(SPECS["brenner-rechnung-scan"])
    assert truth["invoice_number"] in page.text
    title = next(w for w in page.words if w.text == "RECHNUNG")
    assert title.bbox[1] < page.height / 4  # read upright: the title is at the top
