"""A document's page loop: route every page, then read each page the way it was routed."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager

from PIL import Image

from mmflow.tasks.inputs import read_input
from mmflow.tasks.models import DocumentText, NormalisedDocument, PageRoute, PageText, Route
from mmflow.tasks.normalise import render_page, upright
from mmflow.tasks.ocr import OcrEngine, looks_upright, ocr_image
from mmflow.tasks.pdf_library import pymupdf
from mmflow.tasks.route import RouteOptions, page_signals, route_page
from mmflow.tasks.textlayer import read_text_layer


@contextmanager
def _open_pdf(document: NormalisedDocument) -> Iterator[pymupdf.Document | None]:
    if document.source.media_type != "application/pdf":
        yield None
        return
    pdf = pymupdf.open(stream=read_input(document.source.uri), filetype="pdf")
    try:
        yield pdf
    finally:
        pdf.close()


def route_document(document: NormalisedDocument, options: RouteOptions) -> list[PageRoute]:
    """One routing decision per page, with its reason and every alternative's estimate."""
    with _open_pdf(document) as pdf:
        return [
            route_page(page_signals(pdf[page.index] if pdf else None, page), page, options)
            for page in document.pages
        ]


def _ocr_upright(image: Image.Image, number: int, engine: OcrEngine, dpi: int) -> PageText:
    """OCR a rendered scan; only a page that reads wrong pays for orientation detection."""
    page = ocr_image(image, number, engine, scale=72 / dpi)
    if looks_upright(page):
        return page
    turned, rotation = upright(image)
    return ocr_image(turned, number, engine, scale=72 / dpi) if rotation else page


def read_document(
    document: NormalisedDocument,
    routes: list[PageRoute],
    ocr_engine: OcrEngine = OcrEngine.RAPIDOCR,
    dpi: int = 200,
) -> DocumentText:
    """Words with boxes for every page: from the text layer, or by OCR of the page image."""
    pages: list[PageText] = []
    with _open_pdf(document) as pdf:
        for page, route in zip(document.pages, routes, strict=True):
            number = page.index + 1
            if pdf is not None and route.route is Route.TEXT_LAYER:
                pages.append(read_text_layer(pdf[page.index], number))
            elif pdf is not None:
                image = render_page(pdf, page.index, dpi)
                pages.append(_ocr_upright(image, number, ocr_engine, dpi))
            else:
                if page.image_png is None:
                    raise ValueError(f"page {number} of a raster input has no normalised image")
                image = Image.open(io.BytesIO(page.image_png))
                pages.append(ocr_image(image, number, ocr_engine))
    return DocumentText(pages=pages)
