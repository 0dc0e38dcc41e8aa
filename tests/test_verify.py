"""Grounding of extracted values in the page words, and the line-items pandera schema."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow.parquet
import pymupdf
import pytest

from mmflow.tasks.extract import extract_invoice
from mmflow.tasks.extraction.parsing import amount_readings, currency_readings, date_readings
from mmflow.tasks.models import (
    BBox,
    Check,
    CheckStatus,
    DocumentText,
    Extraction,
    FieldValue,
    LineItem,
    PageText,
    Route,
    Word,
)
from mmflow.tasks.schemas import (
    DocumentItems,
    line_items_frame,
    line_items_table,
)
from mmflow.tasks.textlayer import read_text_layer
from mmflow.tasks.verify import MISPLACED_FACTOR, UNGROUNDED_FACTOR, verify_extraction

SHA = "ab" * 32
TOTAL_BOX: BBox = (400, 300, 450, 310)
NUMBER_BOX: BBox = (142, 80, 220, 90)


def _page() -> PageText:
    words = [
        ("Invoice", (60, 80, 100, 90)),
        ("number:", (102, 80, 140, 90)),
        ("INV-2023-0042", NUMBER_BOX),
        ("Date:", (60, 100, 85, 110)),
        ("20/03/2023", (87, 100, 140, 110)),
        ("Office", (60, 200, 90, 210)),
        ("chair", (92, 200, 120, 210)),
        ("2", (300, 200, 305, 210)),
        ("120,00", (340, 200, 370, 210)),
        ("240,00", (400, 200, 440, 210)),
        ("Total", (60, 300, 90, 310)),
        ("279,84", (400, 300, 440, 310)),
        ("€", (442, 300, 450, 310)),
    ]
    return _page_of(words)


def _page_of(words: list[tuple[str, BBox]]) -> PageText:
    return PageText(
        page=1,
        width=595,
        height=842,
        unit="pt",
        route=Route.TEXT_LAYER,
        engine="pymupdf",
        words=[Word(text=t, bbox=b) for t, b in words],
    )


TEXT = DocumentText(pages=[_page()])


def _field(
    value: str | None, evidence: str | None, box: BBox | None, page: int | None = 1
) -> FieldValue:
    return FieldValue(value=value, confidence=0.9, page=page, bbox=box, evidence=evidence)


def _verify(**fields: FieldValue) -> tuple[Extraction, list[Check]]:
    return verify_extraction(Extraction(fields=fields), TEXT)


def _status(checks: list[Check], name: str) -> Check:
    return next(c for c in checks if c.name == name)


def test_amount_with_locale_formatting_is_grounded() -> None:
    result, checks = _verify(total=_field("279.84", "279,84 €", TOTAL_BOX))
    assert _status(checks, "grounding:total").status is CheckStatus.PASS
    assert result.fields["total"].confidence == 0.9


def test_date_in_day_first_format_is_grounded() -> None:
    result, checks = _verify(issue_date=_field("2023-03-20", "20/03/2023", (87, 100, 140, 110)))
    assert _status(checks, "grounding:issue_date").status is CheckStatus.PASS
    assert result.fields["issue_date"].confidence == 0.9


def test_currency_symbol_grounds_iso_code() -> None:
    _, checks = _verify(currency=_field("EUR", "€", (442, 300, 450, 310)))
    assert _status(checks, "grounding:currency").status is CheckStatus.PASS


def test_identifier_is_grounded_verbatim() -> None:
    _, checks = _verify(invoice_number=_field("INV-2023-0042", "INV-2023-0042", NUMBER_BOX))
    assert _status(checks, "grounding:invoice_number").status is CheckStatus.PASS


def test_value_that_contradicts_its_evidence_fails_and_loses_confidence() -> None:
    result, checks = _verify(total=_field("297.84", "279,84 €", TOTAL_BOX))
    check = _status(checks, "grounding:total")
    assert check.status is CheckStatus.FAIL and "total" in check.detail
    assert result.fields["total"].confidence == pytest.approx(0.9 * UNGROUNDED_FACTOR)


def test_evidence_not_on_the_page_fails() -> None:
    result, checks = _verify(invoice_number=_field("INV-9999", "INV-9999", NUMBER_BOX))
    check = _status(checks, "grounding:invoice_number")
    assert check.status is CheckStatus.FAIL and "not found on page 1" in check.detail
    assert result.fields["invoice_number"].confidence == pytest.approx(0.9 * UNGROUNDED_FACTOR)


def test_evidence_elsewhere_on_the_page_warns() -> None:
    result, checks = _verify(total=_field("279.84", "279,84 €", (60, 80, 100, 90)))
    check = _status(checks, "grounding:total")
    assert check.status is CheckStatus.WARN and "not at the recorded box" in check.detail
    assert result.fields["total"].confidence == pytest.approx(0.9 * MISPLACED_FACTOR)


def test_value_without_evidence_fails() -> None:
    result, checks = _verify(total=_field("279.84", None, None))
    check = _status(checks, "grounding:total")
    assert check.status is CheckStatus.FAIL
    assert "no evidence, bbox recorded" in check.detail
    assert result.fields["total"].confidence == pytest.approx(0.9 * UNGROUNDED_FACTOR)


def test_evidence_on_a_page_without_text_fails() -> None:
    _, checks = _verify(total=_field("279.84", "279,84 €", TOTAL_BOX, page=3))
    assert "page 3 has no text" in _status(checks, "grounding:total").detail


def test_null_values_are_left_alone() -> None:
    result, checks = _verify(due_date=FieldValue())
    assert result.fields["due_date"] == FieldValue()
    assert not [c for c in checks if c.name == "grounding:due_date"]


def test_verify_returns_a_new_extraction_and_never_changes_values() -> None:
    original = Extraction(
        fields={
            "total": _field("297.84", "279,84 €", TOTAL_BOX),
            "invoice_number": _field("INV-2023-0042", "INV-2023-0042", NUMBER_BOX),
        },
        line_items=[LineItem(description="Ghost", amount=Decimal("5"), confidence=0.8)],
    )
    before = original.model_dump()
    result, _ = verify_extraction(original, TEXT)
    assert original.model_dump() == before
    assert result is not original
    assert {n: f.value for n, f in result.fields.items()} == {
        n: f.value for n, f in original.fields.items()
    }
    assert result.line_items[0].amount == Decimal("5")


def test_grounded_line_items_pass() -> None:
    item = LineItem(
        description="Office chair",
        quantity=Decimal("2"),
        unit_price=Decimal("120.00"),
        amount=Decimal("240.00"),
        page=1,
        bbox=(60, 200, 440, 210),
        evidence="Office chair 2 120,00 240,00",
        confidence=0.8,
    )
    result, checks = verify_extraction(Extraction(fields={}, line_items=[item]), TEXT)
    assert _status(checks, "grounding:line_items").status is CheckStatus.PASS
    assert _status(checks, "line_items_schema").status is CheckStatus.PASS
    assert result.line_items[0].confidence == 0.8


def test_ungrounded_line_items_lose_confidence() -> None:
    items = [LineItem(description="Ghost", amount=Decimal("5"), confidence=0.8)]
    result, checks = verify_extraction(Extraction(fields={}, line_items=items), TEXT)
    assert _status(checks, "grounding:line_items").status is CheckStatus.FAIL
    assert result.line_items[0].confidence == pytest.approx(0.8 * UNGROUNDED_FACTOR)


def test_line_items_failing_the_schema_fail_the_schema_check() -> None:
    items = [LineItem(description="   ", amount=Decimal("1.00"), confidence=1.5)]
    _, checks = verify_extraction(Extraction(fields={}, line_items=items), TEXT)
    check = _status(checks, "line_items_schema")
    assert check.status is CheckStatus.FAIL
    assert "description" in check.detail and "confidence" in check.detail


def test_amount_readings_cover_common_locales() -> None:
    assert Decimal("1234.56") in amount_readings("1.234,56 EUR")
    assert Decimal("1234.56") in amount_readings("$1,234.56")
    assert Decimal("1234.56") in amount_readings("1 234,56 €")
    assert Decimal("1234.56") in amount_readings("CHF 1'234.56")


def test_date_readings_cover_month_names_in_five_languages() -> None:
    day = date(2023, 3, 20)
    for text in (
        "March 20, 2023",
        "20. März 2023",
        "20 mars 2023",
        "20 maart 2023",
        "20 de marzo de 2023",
    ):
        assert day in date_readings(text), text
    assert date(2014, 4, 19) in date_readings("Factuurdatum: 19 april 2014")


def test_date_with_a_space_before_the_comma_is_grounded() -> None:
    page = _page_of(
        [
            ("August", (400, 130, 430, 137)),
            ("3", (432, 130, 436, 137)),
            (",", (437, 130, 439, 137)),
            ("2014", (441, 130, 460, 137)),
        ]
    )
    field = _field("2014-08-03", "August 3 , 2014", (400, 130, 460, 137))
    result, checks = verify_extraction(
        Extraction(fields={"issue_date": field}), DocumentText(pages=[page])
    )
    assert _status(checks, "grounding:issue_date").status is CheckStatus.PASS
    assert result.fields["issue_date"].confidence == 0.9


def test_a_shared_dollar_sign_grounds_any_dollar_currency() -> None:
    assert {"USD", "CAD", "SGD"} <= currency_readings("$ 12.00")
    assert currency_readings("12,00 €") == {"EUR"}


def test_a_bare_integer_reads_as_an_amount() -> None:
    assert Decimal("280") in amount_readings("Total 280")


# ---------------------------------------------------------------- the pandera table


def _valid_frame_items() -> list[LineItem]:
    return [
        LineItem(description="Chair", quantity=Decimal("2"), unit_price=Decimal("120.00"),
                 amount=Decimal("240.00"), page=1, confidence=0.9),
        LineItem(description="Levy", amount=Decimal("-9.32"), confidence=0.5),
    ]  # fmt: skip


def _valid_frame() -> pd.DataFrame:
    return line_items_frame(_valid_frame_items(), SHA, "invoices/a.pdf")


def test_line_items_frame_keeps_exact_decimals_as_numbers() -> None:
    frame = _valid_frame()
    assert list(frame["amount"]) == [Decimal("240.00"), Decimal("-9.32")]
    assert frame["amount"].sum() == Decimal("230.68")
    assert frame["quantity"].isna().tolist() == [False, True]
    assert list(frame["line_no"]) == [1, 2]


def test_line_items_frame_round_trips_through_parquet_as_decimals(tmp_path: Path) -> None:
    frame = line_items_table(
        [
            DocumentItems(
                _valid_frame_items(),
                SHA,
                "a.pdf",
                document=2,
                document_type="credit_note",
                currency="EUR",
            )
        ]
    )
    path = tmp_path / "line_items.parquet"
    frame.to_parquet(path)
    assert str(pyarrow.parquet.read_schema(path).field("amount").type) == "decimal128(24, 6)"
    back = pd.read_parquet(path)
    assert back["amount"].sum() == Decimal("230.68")  # Decimal values, summed without casting
    assert set(back["currency"]) == {"EUR"} and set(back["document_type"]) == {"credit_note"}
    assert list(back["document"]) == [2, 2]


# ---------------------------------------------------------------- a real page


@pytest.fixture
def coolblue_text() -> DocumentText:
    path = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "invoices"
    path = path / "invoice2data" / "coolblue1.pdf"
    if not path.is_file():
        pytest.skip("../shared/data is not present")
    with pymupdf.open(path) as document:
        return DocumentText(pages=[read_text_layer(document[0], 1)])


def test_values_read_from_a_real_invoice_are_grounded(coolblue_text: DocumentText) -> None:
    extraction = Extraction(
        fields={
            "total": _field("717.97", "€ 717,97", (518.3, 578.8, 549.8, 589.7)),
            "issue_date": _field("2014-04-19", "19 april 2014", (104.3, 184.0, 152.6, 194.8)),
            "invoice_number": _field("993548900", "993548900", (111.7, 155.5, 152.7, 166.4)),
        }
    )
    _, checks = verify_extraction(extraction, coolblue_text)
    assert [c.status for c in checks if c.name.startswith("grounding:")] == [
        CheckStatus.PASS,
        CheckStatus.PASS,
        CheckStatus.PASS,
        CheckStatus.SKIPPED,  # no line items
    ]


def test_the_extracted_aws_invoice_is_grounded_in_full(shared_data: Path) -> None:
    path = shared_data / "invoices" / "invoice2data" / "AmazonWebServices.pdf"
    with pymupdf.open(path) as document:
        text = DocumentText(pages=[read_text_layer(p, i + 1) for i, p in enumerate(document)])
    extraction = extract_invoice(text)
    assert extraction.fields["issue_date"].value == "2014-08-03"
    _, checks = verify_extraction(extraction, text)
    assert _status(checks, "grounding:issue_date").status is CheckStatus.PASS
    failed = [c.name for c in checks if c.status is CheckStatus.FAIL]
    assert failed == []


def test_a_misread_total_on_a_real_invoice_is_flagged(coolblue_text: DocumentText) -> None:
    extraction = Extraction(
        fields={"total": _field("717.79", "€ 717,97", (518.3, 578.8, 549.8, 589.7))}
    )
    result, checks = verify_extraction(extraction, coolblue_text)
    assert _status(checks, "grounding:total").status is CheckStatus.FAIL
    assert result.fields["total"].value == "717.79"


def test_one_input_with_a_blank_description_does_not_stop_the_folders_table(
    tmp_path: Path,
) -> None:
    """Degraded scans gave a line item whose description OCR left blank: its input ends `ok`
    with a failed `line_items_schema` check, and the table once refused the whole run's rows
    (the run crashed after every input had ended). Now that input is left out, with the
    reason, and every other input's rows are written."""
    import pyarrow.parquet as pq

    from mmflow.tasks.line_items_table import FILENAME, reconcile
    from mmflow.tasks.models import ManifestEntry, Status
    from mmflow.tasks.persist import Manifest

    out = str(tmp_path)
    good, blank = ("in/good.pdf", "a" * 64), ("in/blank.pdf", "b" * 64)
    manifest = Manifest(out)
    for uri, sha in (good, blank):
        manifest.append(
            ManifestEntry(uri=uri, sha256=sha, status=Status.OK, output=f"{out}/{sha}.json")
        )
    fresh = {
        good: [{"description": "Consulting", "amount": "240.00", "confidence": 0.9}],
        blank: [{"description": "  ", "amount": "12.00", "confidence": 0.4}],
    }
    reconciled = reconcile(out, fresh)
    assert reconciled.rows == 1
    assert reconciled.invalid == {
        "in/blank.pdf": "line items fail the table's rules: "
        "line 1: description must not be blank (got '  ')"
    }
    table = pq.read_table(tmp_path / FILENAME).to_pydict()
    assert table["uri"] == ["in/good.pdf"]
