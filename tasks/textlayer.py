"""Text layer: the words a born-digital PDF already carries, with their boxes."""

from __future__ import annotations

from mmflow.tasks.models import PageText, Route, Word
from mmflow.tasks.pdf_library import pymupdf

ENGINE = "pymupdf"


def read_text_layer(page: pymupdf.Page, page_number: int) -> PageText:
    """Words of one PDF page in reading order, boxes in PDF points (origin top-left)."""
    words = [
        Word(text=text, bbox=(x0, y0, x1, y1), conf=1.0, line=block * 1000 + line)
        for x0, y0, x1, y1, text, block, line, _ in page.get_text("words", sort=True)
        if text.strip()
    ]
    rect = page.rect
    return PageText(
        page=page_number,
        width=rect.width,
        height=rect.height,
        unit="pt",
        route=Route.TEXT_LAYER,
        engine=ENGINE,
        words=words,
    )
