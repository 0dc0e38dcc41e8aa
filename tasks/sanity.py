"""Numeric sanity: do the extracted numbers agree with each other? Report, never repair.

A model's (or an extractor's) numbers are untrusted until arithmetic backs them. Each check
states pass / warn / fail / skipped with the difference it measured, and the numbers are left
exactly as extracted: some real invoices do not add up (coolblue1/2 count a levy line inside
other prices), and hiding that would be worse than reporting it.

Thresholds, for every comparison of an observed value with the value it should equal:
- pass: |difference| <= tolerance (0.01 by default: rounding of printed amounts);
- warn: |difference| <= 5% of the expected value (a levy, a rounding policy, a missed line);
- fail: anything larger (a wrong field, a misread digit).

Tax per rate: each tax line's base × rate must give its amount, the lines' amounts must add up
to the tax amount and their bases to the subtotal. Tax is often computed per item line and
rounded there, so these comparisons allow half a cent per line item on top of the tolerance.
A credit note's amounts are negative; its checks compare magnitudes where a sign would only
get in the way (the tax rate), and a negative total is what it should have.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation

from mmflow.tasks.models import Check, CheckStatus, DocumentType, Extraction, TaxLine

WARN_SHARE = Decimal("0.05")
"""Differences up to this share of the expected value warn; larger ones fail."""

COMMON_TAX_RATES: tuple[Decimal, ...] = tuple(
    Decimal(r)
    for r in (
        "0", "2.1", "2.5", "2.6", "3", "3.7", "3.8", "4", "5", "5.5", "6", "7", "7.7", "8",
        "8.1", "9", "10", "11", "12", "13", "13.5", "14", "15", "16", "17", "18", "19", "20",
        "21", "22", "23", "24", "25", "25.5", "27",
    )
)  # fmt: skip
"""Standard and reduced VAT/GST/sales-tax rates in percent seen across the EU, UK, CH, NO,
India, Malaysia, Singapore, Australia, Canada (GST/HST) and Japan; 0-27%."""

MAX_PLAUSIBLE_RATE = Decimal("27")
PER_LINE_ROUNDING = Decimal("0.005")
"""What rounding the tax of each item line can add to a per-rate or summed tax amount."""
RATE_SLACK = Decimal("0.0005")
"""A rate matches when tax is within max(tolerance, 0.05% of subtotal) of subtotal x rate:
per-line rounding of the tax can move the overall rate a little off the nominal one."""


def _amount(extraction: Extraction, name: str) -> tuple[Decimal | None, str | None]:
    """(value, problem): the field as a Decimal, or why it cannot be read as one."""
    field = extraction.fields.get(name)
    if field is None or field.value is None:
        return None, None
    try:
        value = Decimal(field.value)
    except InvalidOperation:
        return None, f"{name} {field.value!r} is not a decimal amount"
    if not value.is_finite():
        return None, f"{name} {field.value!r} is not a finite amount"
    return value, None


def _date(extraction: Extraction, name: str) -> tuple[date | None, str | None]:
    field = extraction.fields.get(name)
    if field is None or field.value is None:
        return None, None
    try:
        return date.fromisoformat(field.value), None
    except ValueError:
        return None, f"{name} {field.value!r} is not an ISO 8601 date"


def _grade(difference: Decimal, expected: Decimal, tolerance: Decimal) -> CheckStatus:
    if abs(difference) <= tolerance:
        return CheckStatus.PASS
    if abs(difference) <= abs(expected) * WARN_SHARE:
        return CheckStatus.WARN
    return CheckStatus.FAIL


def _skipped(name: str, detail: str) -> Check:
    return Check(name=name, status=CheckStatus.SKIPPED, detail=detail)


def _unreadable(name: str, problems: list[str]) -> Check:
    return Check(name=name, status=CheckStatus.FAIL, detail="; ".join(problems))


def check_line_sum(extraction: Extraction, tolerance: Decimal) -> Check:
    """Sum of line amounts vs subtotal, or vs total when lines are tax-inclusive or no subtotal."""
    name = "line_items_sum"
    subtotal, p1 = _amount(extraction, "subtotal")
    total, p2 = _amount(extraction, "total")
    if p1 or p2:
        return _unreadable(name, [p for p in (p1, p2) if p])
    amounts = [item.amount for item in extraction.line_items if item.amount is not None]
    if not amounts:
        return _skipped(name, "no line item has an amount")
    references = [
        (label, value)
        for label, value in (("subtotal", subtotal), ("total", total))
        if value is not None
    ]
    if not references:
        return _skipped(name, "neither subtotal nor total was found")
    line_sum = sum(amounts, Decimal(0))
    # Lines may be net (sum = subtotal) or gross (sum = total): compare with the closer one.
    label, expected = min(references, key=lambda ref: abs(line_sum - ref[1]))
    difference = line_sum - expected
    missing = len(extraction.line_items) - len(amounts)
    note = f"; {missing} line(s) without an amount not counted" if missing else ""
    status = _grade(difference, expected, tolerance)
    verdict = "agree" if status is CheckStatus.PASS else f"differ by {difference:+}"
    return Check(
        name=name,
        status=status,
        detail=(
            f"{len(amounts)} line amounts sum to {line_sum}, {label} is {expected}: {verdict}{note}"
        ),
        difference=difference,
    )


def check_subtotal_tax_total(extraction: Extraction, tolerance: Decimal) -> Check:
    name = "subtotal_plus_tax"
    values = {n: _amount(extraction, n) for n in ("subtotal", "tax_amount", "total")}
    problems = [p for _, p in values.values() if p]
    if problems:
        return _unreadable(name, problems)
    subtotal, tax, total = (values[n][0] for n in ("subtotal", "tax_amount", "total"))
    if subtotal is None or tax is None or total is None:
        missing = [n for n in values if values[n][0] is None]
        return _skipped(name, f"missing {', '.join(missing)}")
    difference = subtotal + tax - total
    status = _grade(difference, total, tolerance)
    verdict = "agree" if status is CheckStatus.PASS else f"differ by {difference:+}"
    return Check(
        name=name,
        status=status,
        detail=f"subtotal {subtotal} + tax {tax} = {subtotal + tax}, total is {total}: {verdict}",
        difference=difference,
    )


def check_line_arithmetic(extraction: Extraction, tolerance: Decimal) -> list[Check]:
    """quantity x unit_price vs amount, one check per line (skipped when an input is missing)."""
    checks = []
    for number, item in enumerate(extraction.line_items, start=1):
        name = f"line_item_arithmetic:{number}"
        if item.quantity is None or item.unit_price is None or item.amount is None:
            missing = [n for n in ("quantity", "unit_price", "amount") if getattr(item, n) is None]
            checks.append(_skipped(name, f"line {number}: missing {', '.join(missing)}"))
            continue
        product = item.quantity * item.unit_price
        difference = item.amount - product
        status = _grade(difference, product, tolerance)
        verdict = "agree" if status is CheckStatus.PASS else f"differ by {difference:+}"
        checks.append(
            Check(
                name=name,
                status=status,
                detail=(
                    f"line {number}: {item.quantity} x {item.unit_price} = {product}, "
                    f"amount is {item.amount}: {verdict}"
                ),
                difference=difference,
            )
        )
    return checks


def _is_credit_note(extraction: Extraction) -> bool:
    field = extraction.fields.get("document_type")
    return field is not None and field.value == DocumentType.CREDIT_NOTE.value


def _rounding_allowance(extraction: Extraction, tolerance: Decimal) -> Decimal:
    return tolerance + PER_LINE_ROUNDING * max(1, len(extraction.line_items))


def check_tax_lines(extraction: Extraction, tolerance: Decimal) -> list[Check]:
    """Each rate's base × rate vs its amount, then the lines against tax_amount and subtotal."""
    lines = extraction.tax_lines
    if not lines:
        return []
    allowance = _rounding_allowance(extraction, tolerance)
    checks = [_check_tax_line(number, line, allowance) for number, line in enumerate(lines, 1)]
    checks.append(
        _check_lines_sum(extraction, "tax_amount", [x.amount for x in lines], "amount", allowance)
    )
    checks.append(
        _check_lines_sum(extraction, "subtotal", [x.base for x in lines], "base", allowance)
    )
    return checks


def _check_tax_line(number: int, line: TaxLine, allowance: Decimal) -> Check:
    label = f"{line.rate}%" if line.rate is not None else f"line {number}"
    name = f"tax_line:{label}"
    if line.rate is None or line.base is None or line.amount is None:
        missing = [n for n in ("rate", "base", "amount") if getattr(line, n) is None]
        return _skipped(name, f"tax line {label}: missing {', '.join(missing)}")
    expected = line.base * line.rate / 100
    difference = line.amount - expected
    status = _grade(difference, expected, allowance)
    verdict = "agree" if status is CheckStatus.PASS else f"differ by {difference:+.4f}"
    return Check(
        name=name,
        status=status,
        detail=(
            f"{line.rate}% of {line.base} = {expected.quantize(Decimal('0.0001'))}, "
            f"amount is {line.amount}: {verdict}"
        ),
        difference=difference,
    )


def _check_lines_sum(
    extraction: Extraction,
    field: str,
    parts: list[Decimal | None],
    what: str,
    allowance: Decimal,
) -> Check:
    name = "tax_lines_sum" if what == "amount" else f"tax_lines_{what}_sum"
    expected, problem = _amount(extraction, field)
    if problem:
        return _unreadable(name, [problem])
    known = [p for p in parts if p is not None]
    if expected is None or len(known) < len(parts):
        return _skipped(name, f"needs {field} and every tax line's {what}")
    total = sum(known, Decimal(0))
    difference = total - expected
    status = _grade(difference, expected, allowance)
    verdict = "agree" if status is CheckStatus.PASS else f"differ by {difference:+}"
    if what == "base" and status is CheckStatus.FAIL and abs(total) < abs(expected):
        # items with no printed rate (exempt, zero-rated) make the subtotal more than the
        # taxed bases: worth a look, not a wrong number
        status = CheckStatus.WARN
        verdict += ": part of the subtotal carries no printed rate (exempt or zero-rated?)"
    return Check(
        name=name,
        status=status,
        detail=f"{len(parts)} tax line {what}s sum to {total}, {field} is {expected}: {verdict}",
        difference=difference,
    )


def check_tax_rate(extraction: Extraction, tolerance: Decimal) -> Check:
    name = "tax_rate"
    subtotal, p1 = _amount(extraction, "subtotal")
    tax, p2 = _amount(extraction, "tax_amount")
    if p1 or p2:
        return _unreadable(name, [p for p in (p1, p2) if p])
    if subtotal is None or tax is None:
        return _skipped(name, "needs both subtotal and tax_amount")
    if len({line.rate for line in extraction.tax_lines}) > 1:
        rates = ", ".join(f"{line.rate}%" for line in extraction.tax_lines)
        return _skipped(name, f"several rates ({rates}): checked per tax line")
    if subtotal < 0 and tax <= 0 and _is_credit_note(extraction):
        subtotal, tax = -subtotal, -tax  # a credit note's rate is its invoice's
    if subtotal <= 0:
        return _skipped(name, f"subtotal {subtotal} is not positive; no rate to compute")
    rate = tax / subtotal * 100
    nearest = min(COMMON_TAX_RATES, key=lambda r: abs(rate - r))
    difference = tax - subtotal * nearest / 100
    shown = f"{rate.quantize(Decimal('0.01'))}%"
    if abs(difference) <= max(tolerance, subtotal * RATE_SLACK):
        return Check(
            name=name,
            status=CheckStatus.PASS,
            detail=f"tax {tax} is {shown} of subtotal {subtotal}: the common rate {nearest}%",
            difference=difference,
        )
    if rate < 0 or rate > MAX_PLAUSIBLE_RATE:
        return Check(
            name=name,
            status=CheckStatus.FAIL,
            detail=f"tax {tax} is {shown} of subtotal {subtotal}: outside 0-{MAX_PLAUSIBLE_RATE}%",
            difference=difference,
        )
    return Check(
        name=name,
        status=CheckStatus.WARN,
        detail=(
            f"tax {tax} is {shown} of subtotal {subtotal}: not a common single rate "
            f"(nearest {nearest}%); mixed rates, a local sales tax, or a misread amount"
        ),
        difference=difference,
    )


def check_due_after_issue(extraction: Extraction) -> Check:
    name = "due_date_not_before_issue_date"
    issued, p1 = _date(extraction, "issue_date")
    due, p2 = _date(extraction, "due_date")
    if p1 or p2:
        return _unreadable(name, [p for p in (p1, p2) if p])
    if issued is None or due is None:
        return _skipped(name, "needs both issue_date and due_date")
    days = (due - issued).days
    if days < 0:
        return Check(
            name=name,
            status=CheckStatus.FAIL,
            detail=f"due date {due} is {-days} day(s) before issue date {issued}",
            difference=Decimal(days),
        )
    return Check(
        name=name,
        status=CheckStatus.PASS,
        detail=f"due {days} day(s) after issue ({issued} to {due})",
        difference=Decimal(days),
    )


def check_total_positive(extraction: Extraction) -> Check:
    """A positive total, or for a credit note a negative one."""
    name = "total_positive"
    total, problem = _amount(extraction, "total")
    if problem:
        return _unreadable(name, [problem])
    if total is None:
        return _skipped(name, "no total was found")
    if _is_credit_note(extraction):
        if total <= 0:
            return Check(
                name=name,
                status=CheckStatus.PASS,
                detail=f"total {total} of a credit note: not positive, as it should be",
            )
        return Check(
            name=name,
            status=CheckStatus.WARN,
            detail=f"total {total} is positive on a credit note: a misread sign or document type",
            difference=total,
        )
    if total > 0:
        return Check(name=name, status=CheckStatus.PASS, detail=f"total {total} is positive")
    return Check(
        name=name,
        status=CheckStatus.WARN,
        detail=f"total {total} is not positive: a credit note, or a misread amount",
        difference=total,
    )


def numeric_sanity(extraction: Extraction, tolerance: Decimal = Decimal("0.01")) -> list[Check]:
    """All arithmetic checks of one extraction; the extraction itself is never modified."""
    return [
        check_line_sum(extraction, tolerance),
        check_subtotal_tax_total(extraction, tolerance),
        *check_line_arithmetic(extraction, tolerance),
        *check_tax_lines(extraction, tolerance),
        check_tax_rate(extraction, tolerance),
        check_due_after_issue(extraction),
        check_total_positive(extraction),
    ]
