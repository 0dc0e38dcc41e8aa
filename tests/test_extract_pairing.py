"""Label-value pairing on small pages of words built by hand, as OCR would deliver them."""

from __future__ import annotations

from decimal import Decimal

from mmflow.tasks.extract import extract_invoice
from mmflow.tasks.extraction.amounts import choose_amounts
from mmflow.tasks.extraction.labels import OTHER, match_labels
from mmflow.tasks.extraction.layout import build_rows
from mmflow.tasks.extraction.pairing import Candidate
from mmflow.tasks.extraction.text import fold
from mmflow.tasks.models import DocumentText, PageText, Route, Word

WordSpec = tuple[str, float, float]  # text, x0, y0 (height 20 px, 12 px per character)


def page(*words: WordSpec, line_ids: bool = False) -> DocumentText:
    built = [
        Word(
            text=text,
            bbox=(x, y, x + 12 * len(text), y + 20),
            conf=0.95,
            line=0 if line_ids else None,  # one engine line for all words
        )
        for text, x, y in words
    ]
    return DocumentText(
        pages=[
            PageText(
                page=1,
                width=800,
                height=1200,
                unit="px",
                route=Route.OCR,
                engine="rapidocr",
                words=built,
            )
        ]
    )


def fields(doc: DocumentText) -> dict[str, str | None]:
    return {name: f.value for name, f in extract_invoice(doc).fields.items()}


def labels(text: str) -> list[tuple[str, str]]:
    folded = fold(text)
    return [(m.field, folded[m.start : m.end]) for m in match_labels(folded)]


def test_longest_label_wins_so_invoice_date_is_not_an_invoice_number() -> None:
    assert labels("Invoice Date:") == [("issue_date", "invoice date")]
    assert labels("Rechnungsnr.") == [("invoice_number", "rechnungsnr")]
    assert labels("Date limite de paiement") == [("due_date", "date limite de paiement")]
    assert labels("Total Qty:") == [(OTHER, "total qty")]
    assert labels("Montant TTC") == [("total", "montant ttc")]
    assert labels("Base imponible") == [("subtotal", "base imponible")]
    assert labels("Zwischensumme") == [("subtotal", "zwischensumme")]


def test_labels_are_not_found_inside_words_or_identifiers() -> None:
    assert labels("invoice_number_1") == []
    assert labels("Totality") == []
    assert labels("Klantnummer:") == [(OTHER, "klantnummer")]


def test_value_right_of_its_label_on_the_same_row() -> None:
    doc = page(("TOTAL", 40, 500), ("RM", 420, 502), ("12.50", 460, 501))
    assert fields(doc)["total"] == "12.50"


def test_value_below_its_label_when_the_row_has_none() -> None:
    doc = page(("Date", 40, 300), ("25/12/2018", 40, 326))
    got = extract_invoice(doc).fields["issue_date"]
    assert got.value == "2018-12-25"
    assert got.source == "label:below"


def test_right_search_stops_at_the_next_label() -> None:
    # "Exclusief BTW € 593,36 … Subtotaal € 717,97" share one row
    doc = page(
        ("Exclusief", 40, 100),
        ("BTW", 160, 100),
        ("€", 220, 100),
        ("593,36", 240, 100),
        ("Subtotaal", 460, 100),
        ("€", 580, 100),
        ("717,97", 600, 100),
    )
    got = fields(doc)
    assert got["subtotal"] == "593.36"


def test_value_of_a_tilted_photo_is_found_on_the_neighbouring_row() -> None:
    # the value sits 13 px lower than its label: another row, but within the label's height
    doc = page(("TOTAL", 40, 500), ("49.40", 560, 513), ("CASH", 40, 540), ("50.00", 560, 553))
    got = extract_invoice(doc).fields["total"]
    assert got.value == "49.40"
    assert got.source == "label:right"


def test_rows_group_words_without_engine_line_ids() -> None:
    doc = page(("Sub", 40, 100), ("Total", 90, 101), ("8.00", 500, 99))
    rows = build_rows(doc.pages[0])
    assert len(rows) == 1
    assert [s.text for s in rows[0].segments] == ["Sub Total", "8.00"]


def test_engine_lines_split_at_wide_gaps_into_segments() -> None:
    doc = page(("Total", 40, 100), ("Due", 110, 100), ("27.54", 600, 100), line_ids=True)
    segments = build_rows(doc.pages[0])[0].segments
    assert [s.text for s in segments] == ["Total Due", "27.54"]


def test_receipt_company_from_first_lines_joined_when_split() -> None:
    doc = page(
        ("POPULAR", 100, 60),
        ("BOOK", 200, 60),
        ("CO.", 90, 84),
        ("(M)", 140, 84),
        ("SDN", 190, 84),
        ("BHD", 240, 84),
        ("(Co.", 120, 120),
        ("No.", 170, 120),
        ("113825-W)", 210, 120),
        ("No", 40, 150),
        ("8,", 80, 150),
        ("Jalan", 110, 150),
        ("7/118B", 180, 150),
        ("56000", 40, 176),
        ("Kuala", 110, 176),
        ("Lumpur", 180, 176),
        ("Tel:", 40, 202),
        ("03-9201", 100, 202),
    )
    got = fields(doc)
    assert got["issuer_name"] == "POPULAR BOOK CO. (M) SDN BHD"
    assert got["issuer_address"] == "No 8, Jalan 7/118B 56000 Kuala Lumpur"


def candidate(field: str, value: str, confidence: float, y: float) -> Candidate:
    return Candidate(
        field=field,
        value=value,
        confidence=confidence,
        page=1,
        bbox=(400, y, 460, y + 10),
        evidence=value,
        source="label:right",
        order=int(y),
    )


def test_arithmetic_picks_the_total_that_subtotal_plus_tax_explains() -> None:
    labelled = [
        candidate("total", "3.12", 0.72, 500),  # "TOTAL : 52.00 3.12" in a tax summary
        candidate("total", "55.12", 0.72, 300),
        candidate("subtotal", "52.00", 0.9, 260),
        candidate("tax_amount", "3.12", 0.81, 280),
    ]
    chosen = choose_amounts(labelled, [], None)
    assert {k: v.value if v else None for k, v in chosen.items()} == {
        "subtotal": "52.00",
        "tax_amount": "3.12",
        "total": "55.12",
    }


def test_arithmetic_prefers_the_subtotal_that_adds_up_over_a_stronger_label() -> None:
    labelled = [
        candidate("subtotal", "717.97", 0.9, 100),
        candidate("subtotal", "593.36", 0.85, 120),
        candidate("tax_amount", "124.61", 0.81, 140),
        candidate("total", "717.97", 0.9, 160),
    ]
    chosen = choose_amounts(labelled, [], None)
    assert chosen["subtotal"] is not None
    assert chosen["subtotal"].amount == Decimal("593.36")


def test_arithmetic_derives_tax_only_when_the_difference_is_printed() -> None:
    labelled = [candidate("subtotal", "100.00", 0.9, 100), candidate("total", "119.00", 0.9, 140)]
    printed = [candidate("amount", "19.00", 0.0, 120)]
    chosen = choose_amounts(labelled, printed, None)
    assert chosen["tax_amount"] is not None
    assert chosen["tax_amount"].value == "19.00"
    assert chosen["tax_amount"].source == "arithmetic"
    assert chosen["tax_amount"].confidence < chosen["total"].confidence  # type: ignore[union-attr]
    assert choose_amounts(labelled, [], None)["tax_amount"] is None


def test_receipt_item_takes_its_description_from_the_line_above() -> None:
    doc = page(
        ("CODE/DESC", 30, 500),
        ("PRICE", 200, 500),
        ("AMOUNT", 380, 500),
        ("KF", 160, 560),
        ("MODELLING", 200, 560),
        ("CLAY", 330, 560),
        ("1", 70, 590),
        ("PC", 90, 590),
        ("9.000", 200, 590),
        ("9.00", 400, 590),
        ("Total", 240, 630),
        ("9.00", 400, 630),
        ("CASH", 200, 660),
        ("10.00", 400, 660),
    )
    items = extract_invoice(doc).line_items
    assert [(i.description, i.unit_price, i.amount) for i in items] == [
        ("KF MODELLING CLAY", Decimal("9.000"), Decimal("9.00"))
    ]
