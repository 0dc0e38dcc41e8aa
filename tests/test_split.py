"""Several documents in one file: split before extraction, every boundary scored with reasons."""

from __future__ import annotations

import numpy as np
import pymupdf

from mmflow.tasks.extract import extract_invoice
from mmflow.tasks.models import CheckStatus, DocumentText, Word
from mmflow.tasks.samples import documents_pdf, generated_spec
from mmflow.tasks.split import part_text, split_document
from mmflow.tasks.textlayer import read_text_layer


def read(pdf: bytes) -> DocumentText:
    with pymupdf.open(stream=pdf, filetype="pdf") as doc:
        return DocumentText(pages=[read_text_layer(p, i + 1) for i, p in enumerate(doc)])


def test_two_invoices_of_one_issuer_in_one_pdf_are_two_documents() -> None:
    rng = np.random.default_rng(21)
    first = generated_spec(rng, "fr", "classic", issuer_index=2)
    second = generated_spec(rng, "fr", "classic", "invoice", True, issuer_index=2)
    text = read(documents_pdf((first, second)))
    split = split_document(text)
    assert split.parts == [(1, 1), (2, 2)]
    boundary = split.boundaries[0]
    assert boundary.starts and any("invoice number" in r for r in boundary.reasons)
    numbers = [
        extract_invoice(part_text(text, split, i)).fields["invoice_number"].value for i in (0, 1)
    ]
    totals = [extract_invoice(part_text(text, split, i)).fields["total"].value for i in (0, 1)]
    assert numbers == [first.number, second.number]
    assert totals == [str(first.total), str(second.total)]  # never the first's number and the
    # second's totals, as one mixed result


def test_a_two_page_invoice_stays_one_document() -> None:
    spec = generated_spec(np.random.default_rng(4), "de", "window", pages=2)
    split = split_document(read(documents_pdf((spec,))))
    assert split.parts == [(1, 2)]
    assert not split.boundaries[0].starts
    assert any("continues" in r for r in split.boundaries[0].reasons)
    assert split.checks[0].status is CheckStatus.PASS


def test_an_unsure_boundary_is_flagged_with_a_split_warning() -> None:
    rng = np.random.default_rng(8)
    spec = generated_spec(rng, "nl", "classic")
    text = read(documents_pdf((spec,)))
    # a second page that only says "page 1 of 1": a restart, but nothing else of a document
    words = [
        Word(text=text_, bbox=(x, 790.0, x + 20, 800.0), line=1)
        for x, text_ in ((500, "Pagina"), (522, "1"), (530, "van"), (552, "1"))
    ]
    blank = text.pages[0].model_copy(update={"page": 2, "words": words})
    split = split_document(DocumentText(pages=[text.pages[0], blank]))
    assert split.checks[0].status is CheckStatus.WARN
    assert "unsure" in split.checks[0].detail and "page 2" in split.checks[0].detail


def test_a_single_page_is_one_document_without_boundaries() -> None:
    spec = generated_spec(np.random.default_rng(1), "it", "header_row")
    split = split_document(read(documents_pdf((spec,))))
    assert split.parts == [(1, 1)] and split.boundaries == [] and split.checks == []
