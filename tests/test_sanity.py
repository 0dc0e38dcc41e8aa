"""Numeric sanity checks report differences honestly and never touch the numbers."""

from __future__ import annotations

from decimal import Decimal

from mmflow.tasks.models import Check, CheckStatus, Extraction, FieldValue, LineItem
from mmflow.tasks.sanity import numeric_sanity


def _extraction(lines: list[tuple[str, str, str, str]] | None = None, **fields: str) -> Extraction:
    items = [
        LineItem(
            description=description,
            quantity=Decimal(quantity) if quantity else None,
            unit_price=Decimal(price) if price else None,
            amount=Decimal(amount) if amount else None,
        )
        for description, quantity, price, amount in (lines or [])
    ]
    return Extraction(
        fields={name: FieldValue(value=value) for name, value in fields.items()}, line_items=items
    )


def _check(checks: list[Check], name: str) -> Check:
    matches = [c for c in checks if c.name == name]
    assert len(matches) == 1, [c.name for c in checks]
    return matches[0]


# Coolblue 1 as printed: prices include 21% VAT, and the home-copy levy line (4.24) is already
# counted inside the iPad's price, so the lines add up to 4.24 more than the total.
COOLBLUE_LINES = [
    ("Apple iPad Air Wifi 16 GB Zilver", "1", "399.00", "399.00"),
    ("Decoded Leather Slim Cover Apple iPad Air 2 Zwart", "1", "69.99", "69.99"),
    ("Nintendo 3DS XL Wit + Blauw", "1", "189.00", "189.00"),
    ("Nintendo AC-adapter", "1", "14.99", "14.99"),
    ("Mario Kart 7 3DS", "1", "44.99", "44.99"),
    ("Incl. Thuiskopieheffing: Thuiskopie €3.50", "1", "4.24", "4.24"),
]


def test_coolblue_levy_is_reported_as_a_warning_with_its_difference() -> None:
    extraction = _extraction(COOLBLUE_LINES, subtotal="593.36", tax_amount="124.61", total="717.97")
    check = _check(numeric_sanity(extraction), "line_items_sum")
    assert check.status is CheckStatus.WARN
    assert check.difference == Decimal("4.24")
    assert "722.21" in check.detail and "total is 717.97" in check.detail


def test_sanity_never_alters_the_numbers() -> None:
    extraction = _extraction(COOLBLUE_LINES, subtotal="593.36", tax_amount="124.61", total="717.97")
    before = extraction.model_dump()
    numeric_sanity(extraction)
    assert extraction.model_dump() == before


def test_net_line_amounts_that_add_up_to_subtotal_pass() -> None:
    extraction = _extraction(
        [("Chair", "2", "120.00", "240.00"), ("Lamp", "1", "39.84", "39.84")],
        subtotal="279.84",
        tax_amount="53.17",
        total="333.01",
    )
    checks = numeric_sanity(extraction)
    line_sum = _check(checks, "line_items_sum")
    assert line_sum.status is CheckStatus.PASS
    assert line_sum.difference == Decimal("0")
    assert "subtotal is 279.84" in line_sum.detail
    assert _check(checks, "subtotal_plus_tax").status is CheckStatus.PASS
    assert _check(checks, "tax_rate").status is CheckStatus.PASS  # 53.17 / 279.84 = 19.00%


def test_line_sum_compares_with_total_when_there_is_no_subtotal() -> None:
    extraction = _extraction([("Coffee", "2", "3.50", "7.00")], total="7.00")
    check = _check(numeric_sanity(extraction), "line_items_sum")
    assert check.status is CheckStatus.PASS
    assert "total is 7.00" in check.detail


def test_line_sum_far_off_fails() -> None:
    extraction = _extraction([("Coffee", "2", "3.50", "7.00")], subtotal="70.00")
    check = _check(numeric_sanity(extraction), "line_items_sum")
    assert check.status is CheckStatus.FAIL
    assert check.difference == Decimal("-63.00")


def test_difference_within_tolerance_passes_and_tolerance_is_a_parameter() -> None:
    extraction = _extraction(subtotal="100.00", tax_amount="20.00", total="120.01")
    assert _check(numeric_sanity(extraction), "subtotal_plus_tax").status is CheckStatus.PASS
    strict = numeric_sanity(extraction, tolerance=Decimal("0.001"))
    assert _check(strict, "subtotal_plus_tax").status is CheckStatus.WARN


def test_subtotal_plus_tax_off_by_more_than_five_percent_fails() -> None:
    extraction = _extraction(subtotal="100.00", tax_amount="20.00", total="150.00")
    check = _check(numeric_sanity(extraction), "subtotal_plus_tax")
    assert check.status is CheckStatus.FAIL
    assert check.difference == Decimal("-30.00")


def test_missing_inputs_are_skipped_not_failed() -> None:
    checks = numeric_sanity(_extraction(total="10.00"))
    for name in (
        "line_items_sum",
        "subtotal_plus_tax",
        "tax_rate",
        "due_date_not_before_issue_date",
    ):
        assert _check(checks, name).status is CheckStatus.SKIPPED
    assert _check(checks, "total_positive").status is CheckStatus.PASS


def test_quantity_times_unit_price_is_checked_per_line() -> None:
    extraction = _extraction(
        [
            ("Hours", "3.5", "45.00", "157.50"),
            ("Licence", "2", "10.00", "21.00"),  # 5% off: warn
            ("Misread", "1", "19.99", "91.99"),
            ("No price", "1", "", "5.00"),
        ]
    )
    checks = numeric_sanity(extraction)
    assert _check(checks, "line_item_arithmetic:1").status is CheckStatus.PASS
    second = _check(checks, "line_item_arithmetic:2")
    assert second.status is CheckStatus.WARN and second.difference == Decimal("1.00")
    third = _check(checks, "line_item_arithmetic:3")
    assert third.status is CheckStatus.FAIL and third.difference == Decimal("72.00")
    fourth = _check(checks, "line_item_arithmetic:4")
    assert fourth.status is CheckStatus.SKIPPED and "unit_price" in fourth.detail


def test_uncommon_tax_rate_warns() -> None:
    check = _check(numeric_sanity(_extraction(subtotal="100.00", tax_amount="11.50")), "tax_rate")
    assert check.status is CheckStatus.WARN
    assert "11.50%" in check.detail


def test_implausible_tax_rate_fails() -> None:
    check = _check(numeric_sanity(_extraction(subtotal="100.00", tax_amount="45.00")), "tax_rate")
    assert check.status is CheckStatus.FAIL


def test_malaysian_gst_rate_passes() -> None:
    check = _check(numeric_sanity(_extraction(subtotal="82.50", tax_amount="4.95")), "tax_rate")
    assert check.status is CheckStatus.PASS and "6%" in check.detail


def test_due_date_before_issue_date_fails_with_days() -> None:
    checks = numeric_sanity(_extraction(issue_date="2023-03-20", due_date="2023-03-10"))
    check = _check(checks, "due_date_not_before_issue_date")
    assert check.status is CheckStatus.FAIL
    assert check.difference == Decimal("-10")


def test_due_date_after_issue_date_passes() -> None:
    checks = numeric_sanity(_extraction(issue_date="2023-03-20", due_date="2023-04-19"))
    assert _check(checks, "due_date_not_before_issue_date").status is CheckStatus.PASS


def test_negative_total_warns_as_possible_credit_note() -> None:
    check = _check(numeric_sanity(_extraction(total="-9.32")), "total_positive")
    assert check.status is CheckStatus.WARN
    assert "credit note" in check.detail


def test_unreadable_values_fail_instead_of_crashing() -> None:
    checks = numeric_sanity(
        _extraction(total="12,50", issue_date="20/03/2023", due_date="2023-04-01")
    )
    assert _check(checks, "total_positive").status is CheckStatus.FAIL
    assert _check(checks, "due_date_not_before_issue_date").status is CheckStatus.FAIL


def test_a_check_failed_outright_marks_the_result_for_review_a_warning_does_not() -> None:
    from mmflow.flows.invoice import InvoicePipeline
    from mmflow.tasks.invoice import InvoiceOptions, review_reasons
    from mmflow.tasks.models import InvoiceResult, SourceInfo

    failing = numeric_sanity(_extraction(subtotal="100.00", tax_amount="19.00", total="150.00"))
    # a levy inside other prices: the lines exceed the subtotal by a little, a warning
    warning = numeric_sanity(
        _extraction(
            [("Chair", "1", "", "104.24")], subtotal="100.00", tax_amount="19.00", total="119.00"
        )
    )
    assert any(c.status is CheckStatus.FAIL for c in failing)
    reasons = review_reasons(failing)
    assert reasons and reasons[0].startswith("subtotal_plus_tax:")
    assert review_reasons(warning) == []

    result = InvoiceResult(
        source=SourceInfo(uri="a.pdf", sha256="0" * 64, media_type="application/pdf", pages=1),
        route=[],
        fields={},
        line_items=[],
        checks=failing,
        lineage={},
        review=True,
        review_reasons=reasons,
    )
    details = InvoicePipeline(InvoiceOptions()).details(result)
    assert details["review"] is True and details["review_reasons"] == reasons


def test_each_tax_rate_is_reconciled_with_per_line_rounding_allowed() -> None:
    from mmflow.tasks.models import TaxLine

    def with_lines(*lines: tuple[str, str, str], tax: str) -> list[Check]:
        item = _extraction([(f"item {n}", "", "", "10.00") for n in range(4)])
        fields = {
            "subtotal": FieldValue(value="140.00"),
            "tax_amount": FieldValue(value=tax),
            "total": FieldValue(value=str(Decimal("140.00") + Decimal(tax))),
        }
        rates = [TaxLine(rate=Decimal(r), base=Decimal(b), amount=Decimal(a)) for r, b, a in lines]
        return numeric_sanity(item.model_copy(update={"fields": fields, "tax_lines": rates}))

    checks = with_lines(("19", "100.00", "19.02"), ("7", "40.00", "2.80"), tax="21.82")
    # 19.02 is 2 cents off 19.00: within half a cent per line of 4 lines plus the tolerance
    assert _check(checks, "tax_line:19%").status is CheckStatus.PASS
    assert _check(checks, "tax_lines_sum").status is CheckStatus.PASS
    assert _check(checks, "tax_lines_base_sum").status is CheckStatus.PASS
    assert _check(checks, "tax_rate").status is CheckStatus.SKIPPED  # several rates
    wrong = with_lines(("19", "100.00", "17.00"), ("7", "40.00", "2.80"), tax="19.80")
    assert _check(wrong, "tax_line:19%").status is CheckStatus.FAIL


def test_taxed_bases_below_the_subtotal_warn_as_exempt_items_not_fail() -> None:
    from mmflow.tasks.models import TaxLine

    fields = {
        "subtotal": FieldValue(value="262.90"),
        "tax_amount": FieldValue(value="16.94"),
        "total": FieldValue(value="279.84"),
    }
    rates = [TaxLine(rate=Decimal("15"), base=Decimal("112.90"), amount=Decimal("16.94"))]
    checks = numeric_sanity(Extraction(fields=fields, tax_lines=rates))
    base = _check(checks, "tax_lines_base_sum")
    assert base.status is CheckStatus.WARN and "exempt" in base.detail
