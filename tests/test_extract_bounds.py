"""An upload cannot buy minutes of CPU: the work per page is bounded, and says so.

Crafted text layers (one line of 30,000 numbers, one row of 28,000 text pieces) took 263 s and
385 s of CPU for one page before the bound. Here they must finish, read at most the bounded
number of words, and carry a `too_complex` warn check. Timings: benchmarks/extract_bounds.py.
"""

from __future__ import annotations

import pymupdf
import pytest

from mmflow.tasks.crafted_pages import numbers_line_pdf, segments_row_pdf
from mmflow.tasks.extract import extract_invoice
from mmflow.tasks.extraction.bounds import MAX_WORDS_PER_PAGE, MAX_WORDS_PER_ROW, bound_page
from mmflow.tasks.models import CheckStatus, DocumentText
from mmflow.tasks.textlayer import read_text_layer
from mmflow.tasks.verify import verify_extraction


def read(pdf: bytes) -> DocumentText:
    with pymupdf.open(stream=pdf, filetype="pdf") as doc:
        return DocumentText(pages=[read_text_layer(p, i + 1) for i, p in enumerate(doc)])


@pytest.mark.parametrize(
    ("pdf", "words"),
    [(numbers_line_pdf, 30000), (segments_row_pdf, 28000)],
    ids=["numbers", "segments"],
)
def test_a_crafted_page_is_read_within_the_bound_and_flagged_too_complex(
    pdf: object, words: int
) -> None:
    text = read(pdf())  # type: ignore[operator]
    assert len(text.pages[0].words) >= words * 0.99  # the reader really sees them all
    bounded = bound_page(text.pages[0])
    assert len(bounded.page.words) <= MAX_WORDS_PER_ROW
    extraction = extract_invoice(text)
    checks = {c.name: c for c in extraction.checks}
    assert checks["too_complex"].status is CheckStatus.WARN
    assert "left unread" in checks["too_complex"].detail
    _, verified_checks = verify_extraction(extraction, text)
    assert "too_complex" in {c.name for c in verified_checks}  # reaches the result


def test_an_ordinary_page_is_read_whole_without_a_warning() -> None:
    from mmflow.tasks.samples import SPECS, invoice_pdf

    text = read(invoice_pdf(SPECS["northwind-invoice"]))
    assert bound_page(text.pages[0]).dropped == 0
    assert extract_invoice(text).checks == []


def test_a_page_of_too_many_words_keeps_the_first_in_reading_order() -> None:
    lines = [f"line {i} " + "word " * 20 for i in range(500)]
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=14000)
    for i, line in enumerate(lines):
        page.insert_text((10, 10 + i * 20), line, fontsize=2)
    text = read(doc.tobytes())
    bounded = bound_page(text.pages[0])
    assert len(bounded.page.words) == MAX_WORDS_PER_PAGE
    assert bounded.page.words[0].text == "line"
    assert bounded.note is not None and f"more than {MAX_WORDS_PER_PAGE} words" in bounded.note
