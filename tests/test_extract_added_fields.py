"""The added fields on documents rendered for the test, read back through the text layer:
credit notes, tax per rate, identifiers, names without their address, other languages."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

import numpy as np
import pymupdf
import pytest

from mmflow.tasks.extract import extract_invoice
from mmflow.tasks.models import CheckStatus, DocumentText, Extraction
from mmflow.tasks.samples import generated_pdf, generated_spec, generated_vat_id
from mmflow.tasks.sanity import numeric_sanity
from mmflow.tasks.textlayer import read_text_layer
from tests.test_extract_documents import render


def read(pdf: bytes) -> DocumentText:
    with pymupdf.open(stream=pdf, filetype="pdf") as doc:
        return DocumentText(pages=[read_text_layer(p, i + 1) for i, p in enumerate(doc)])


def values(extraction: Extraction) -> dict[str, str | None]:
    return {name: field.value for name, field in extraction.fields.items()}


CREDIT_NOTE = [
    (50, 50, "Acme Widgets Ltd"),
    (50, 64, "12 High Street, Leeds LS1 4AB"),
    (400, 50, "CREDIT NOTE"),
    (350, 100, "Credit note no:"),
    (450, 100, "CN-0042"),
    (350, 114, "Date:"),
    (450, 114, "14/03/2026"),
    (350, 128, "Relates to invoice:"),
    (450, 128, "INV-2026-0117"),
    (50, 120, "Bill to:"),
    (50, 134, "Globex Corporation"),
    (370, 260, "Subtotal"),
    (480, 260, "£100.00"),
    (370, 274, "VAT 20%"),
    (480, 274, "£20.00"),
    (370, 288, "Total"),
    (480, 288, "£120.00"),
]


def test_a_credit_note_keeps_its_own_number_and_names_the_invoice_it_refers_to() -> None:
    found = values(extract_invoice(render(CREDIT_NOTE)))
    assert found["document_type"] == "credit_note"
    assert found["invoice_number"] == "CN-0042"
    assert found["referenced_invoice"] == "INV-2026-0117"


def test_a_credit_note_printed_without_signs_reports_negative_amounts() -> None:
    extraction = extract_invoice(render(CREDIT_NOTE))
    found = values(extraction)
    assert (found["subtotal"], found["tax_amount"], found["total"]) == (
        "-100.00",
        "-20.00",
        "-120.00",
    )
    assert [(x.rate, x.base, x.amount) for x in extraction.tax_lines] == [
        (Decimal("20"), Decimal("-100.00"), Decimal("-20.00"))
    ]
    checks = {c.name: c for c in numeric_sanity(extraction)}
    assert checks["total_positive"].status is CheckStatus.PASS  # negative, as a credit note's
    assert checks["subtotal_plus_tax"].status is CheckStatus.PASS


def test_a_buyer_name_never_carries_its_address() -> None:
    lines = [
        (50, 50, "Acme Widgets Ltd"),
        (50, 120, "Bill to: Globex Corporation, 12 Main Street, Springfield"),
    ]
    extraction = extract_invoice(render(lines))
    assert extraction.fields["buyer_name"].value == "Globex Corporation"
    assert extraction.fields["buyer_address"].value == "12 Main Street Springfield"


def test_two_vat_rates_give_a_tax_line_each_and_their_sum_as_the_tax_amount() -> None:
    spec = generated_spec(np.random.default_rng(3), "de", "classic", two_rates=True)
    extraction = extract_invoice(read(generated_pdf(spec)))
    expected = {(rate, base, tax) for rate, base, tax in spec.tax_lines}
    assert len(expected) == 2
    assert {(x.rate, x.base, x.amount) for x in extraction.tax_lines} == expected
    assert extraction.fields["tax_amount"].value == str(spec.tax_amount)
    assert all(line.evidence and line.page == 1 for line in extraction.tax_lines)
    checks = {c.name: c.status for c in numeric_sanity(extraction)}
    assert checks["tax_lines_sum"] is CheckStatus.PASS
    assert checks["tax_lines_base_sum"] is CheckStatus.PASS


@pytest.mark.parametrize("language", ["de", "fr", "nl", "es", "it", "pl"])
def test_identifiers_are_read_and_assigned_to_issuer_or_buyer(language: str) -> None:
    rng = np.random.default_rng(7)
    spec = generated_spec(rng, language, "header_row")
    spec = replace(spec, buyer_tax_id=generated_vat_id(rng, "NL"))  # a buyer across the border
    found = values(extract_invoice(read(generated_pdf(spec))))
    compact = lambda text: text.replace(" ", "").replace("-", "").replace(".", "")  # noqa: E731
    assert found["issuer_tax_id"] == compact(spec.issuer_tax_id)
    assert found["buyer_tax_id"] == compact(spec.buyer_tax_id)
    assert found["iban"] == compact(spec.iban or "")


def test_italian_and_polish_month_names_are_dates() -> None:
    for language, printed in (("it", "8 febbraio 2026"), ("pl", "8 lutego 2026")):
        spec = generated_spec(np.random.default_rng(5), language, "classic")
        spec = replace(
            spec, issue_date=date(2026, 2, 8), due_date=date(2026, 3, 10), long_dates=True
        )
        pdf = generated_pdf(spec)
        assert printed in read(pdf).pages[0].text
        assert values(extract_invoice(read(pdf)))["issue_date"] == "2026-02-08"


def test_document_type_comes_from_the_title() -> None:
    assert (
        values(extract_invoice(render([(50, 50, "PRO FORMA INVOICE"), (50, 80, "Acme Ltd")])))[
            "document_type"
        ]
        == "proforma"
    )
    assert (
        values(extract_invoice(render([(50, 50, "CASH RECEIPT"), (50, 80, "Kedai Acme")])))[
            "document_type"
        ]
        == "receipt"
    )
    assert (
        values(extract_invoice(render([(50, 50, "Gutschrift"), (50, 80, "Acme GmbH")])))[
            "document_type"
        ]
        == "credit_note"
    )
