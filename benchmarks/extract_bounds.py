"""CPU one crafted page costs the extractor, next to an ordinary invoice page (issue 9, 16).

    nice -n 10 .venv/bin/python benchmarks/extract_bounds.py

Crafted text layers: one line of 30,000 number tokens, one row of 28,000 separate text objects
(263 s and 385 s of CPU for one page before the work per page was bounded). Prints, per page:
words in the text layer, words read after the bound, CPU seconds to read the text layer, to
extract and to verify, and the ratio to an ordinary one-page invoice.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import pymupdf
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmflow.tasks.crafted_pages import numbers_line_pdf, segments_row_pdf
from mmflow.tasks.extract import extract_invoice
from mmflow.tasks.extraction.bounds import bound_page
from mmflow.tasks.models import DocumentText
from mmflow.tasks.samples import SPECS, invoice_pdf
from mmflow.tasks.textlayer import read_text_layer
from mmflow.tasks.verify import verify_extraction


def measure(pdf: bytes) -> tuple[int, int, float, float, float]:
    started = time.process_time()
    with pymupdf.open(stream=pdf, filetype="pdf") as doc:
        text = DocumentText(pages=[read_text_layer(p, i + 1) for i, p in enumerate(doc)])
    read = time.process_time()
    extraction = extract_invoice(text)
    extracted = time.process_time()
    verify_extraction(extraction, text)
    verified = time.process_time()
    words = sum(len(p.words) for p in text.pages)
    kept = sum(len(bound_page(p).page.words) for p in text.pages)
    return words, kept, read - started, extracted - read, verified - extracted


def main() -> None:
    cases: list[tuple[str, Callable[[], bytes]]] = [
        ("ordinary invoice (northwind)", lambda: invoice_pdf(SPECS["northwind-invoice"])),
        ("one line of 30,000 numbers", numbers_line_pdf),
        ("one row of 28,000 text objects", segments_row_pdf),
    ]
    table = Table(title="CPU per page: crafted text layers vs an ordinary invoice")
    for column in ("page", "words", "read", "text layer s", "extract s", "verify s", "× ordinary"):
        table.add_column(column, justify="right" if column != "page" else "left")
    baseline = None
    for label, make in cases:
        words, kept, read_s, extract_s, verify_s = measure(make())
        total = read_s + extract_s + verify_s
        baseline = baseline or total
        table.add_row(
            label,
            str(words),
            str(kept),
            f"{read_s:.2f}",
            f"{extract_s:.2f}",
            f"{verify_s:.2f}",
            f"{total / baseline:.1f}",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
