"""Tax per rate: one line per VAT/GST rate, with its base and its tax, as the page prints them.

Pages print tax per rate in a few ways: a totals row that names the rate ("MwSt. 19 % auf
1.756,72   333,78", "Tax 15% on $ 112.90   $ 16.94"), a summary table (rate | base | tax
[| gross]), a receipt's GST summary ("SR @ 6%  8.49  0.51"). What they share is arithmetic:
a percentage and amounts on one row where base × rate gives the tax. Rows where it holds are
tax lines, whatever their labels; a row whose label names a tax and a rate but prints only the
tax (the usual single-rate totals block) takes the subtotal as its base when it is the only
rate. Line-item rows are never tax lines, even when they print a VAT percentage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from mmflow.tasks.extraction.labels import match_labels
from mmflow.tasks.extraction.layout import Row, union
from mmflow.tasks.extraction.pairing import Candidate
from mmflow.tasks.extraction.parsing import find_amounts
from mmflow.tasks.models import BBox, LineItem, TaxLine

ARITHMETIC_CONFIDENCE = 0.85  # base × rate = tax on the row itself
SUM_CONFIDENCE = 0.6  # the tax amount as the sum of the rates' taxes
SUM_JOINER = " + "  # evidence of a sum: each part as printed (verify grounds every part)
SUBTOTAL_BASE_CONFIDENCE = 0.6  # the rate and tax printed, the base taken from the subtotal
_RATE = re.compile(r"(?<![\d.,])(\d{1,2}(?:[.,]\d{1,2})?)\s?%")
MAX_RATE = Decimal("30")


@dataclass(frozen=True)
class _Printed:
    value: Decimal
    evidence: str
    bbox: BBox


@dataclass(frozen=True)
class _RowReading:
    rate: Decimal
    printed: list[_Printed]
    row: Row
    labelled: bool  # the row names a tax ("VAT", "MwSt.", "IVA")

    @property
    def amounts(self) -> list[Decimal]:
        return [p.value for p in self.printed]


@dataclass(frozen=True)
class FoundTaxLine:
    """A tax line and where its tax amount itself is printed (for a sum of the rates)."""

    line: TaxLine
    tax: _Printed


def _rate_of(text: str) -> Decimal | None:
    match = _RATE.search(text)
    if match is None:
        return None
    try:
        rate = Decimal(match.group(1).replace(",", "."))
    except InvalidOperation:
        return None
    # "20.00" → 20, never 2E+1: normalising drops trailing zeros, formatting keeps it plain
    return Decimal(format(rate.normalize(), "f")) if 0 < rate <= MAX_RATE else None


def _read_row(row: Row, decimal_sep: str) -> _RowReading | None:
    rate = None
    printed: list[_Printed] = []
    labelled = False
    for segment in row.segments:
        if rate is None:
            rate = _rate_of(segment.text)
        for mention in find_amounts(segment.text, decimal_sep):
            printed.append(
                _Printed(
                    mention.value,
                    segment.span_evidence(mention.start, mention.end),
                    segment.span_bbox(mention.start, mention.end),
                )
            )
        labelled = labelled or any(m.field == "tax_amount" for m in match_labels(segment.folded))
    if rate is None or not printed:
        return None
    return _RowReading(rate, printed, row, labelled)


def _agrees(base: Decimal, rate: Decimal, tax: Decimal) -> bool:
    """base × rate = tax to the cent (half a cent each way for rounding per item line)."""
    return abs(abs(base) * rate / 100 - abs(tax)) <= Decimal("0.015") + abs(base) * Decimal(
        "0.0002"
    )


def _line(reading: _RowReading, base: Decimal, tax: _Printed, source: str) -> FoundTaxLine:
    row = reading.row
    line = TaxLine(
        rate=reading.rate,
        base=base,
        amount=tax.value,
        page=row.page,
        bbox=union([s.bbox for s in row.segments]),
        evidence=row.text,
        confidence=ARITHMETIC_CONFIDENCE if source == "arithmetic" else SUBTOTAL_BASE_CONFIDENCE,
        source=source,
    )
    return FoundTaxLine(line, tax)


def find_tax_lines(
    rows: list[Row],
    decimal_sep: str,
    items: list[LineItem],
    subtotal: Candidate | None,
    tax_amount: Candidate | None,
) -> list[FoundTaxLine]:
    """One tax line per rate printed on the pages, first-printed wins for a repeated rate."""
    item_rows = {(i.page, i.bbox) for i in items}
    found: dict[Decimal, FoundTaxLine] = {}
    rate_only: list[_RowReading] = []
    for row in rows:
        if (row.page, row.bbox) in item_rows:
            continue
        reading = _read_row(row, decimal_sep)
        if reading is None:
            continue
        line = _arithmetic_line(reading)
        if line is not None:
            found.setdefault(reading.rate, line)
        elif reading.labelled:
            rate_only.append(reading)
    if found:
        return list(found.values())
    rates = {r.rate for r in rate_only}
    if len(rates) == 1 and subtotal is not None:
        reading = rate_only[0]
        tax = tax_amount.amount if tax_amount is not None else reading.amounts[-1]
        printed = [p for p in reading.printed if abs(p.value) == abs(tax)]
        if printed and _agrees(subtotal.amount, reading.rate, tax):
            return [_line(reading, subtotal.amount, printed[-1], "label:rate+subtotal")]
    return []


def _arithmetic_line(reading: _RowReading) -> FoundTaxLine | None:
    """The (base, tax) pair of the row's amounts that base × rate makes true.

    Amounts are tried in printed order: a summary row reads rate, base, tax[, gross]; a totals
    row "VAT 19% on 1,756.72   333.78". With a gross column, base + tax must equal it too.
    """
    printed = reading.printed
    for i, base in enumerate(printed):
        for tax in printed[i + 1 :]:
            if base.value == 0 or abs(tax.value) >= abs(base.value):
                continue
            if _agrees(base.value, reading.rate, tax.value):
                return _line(reading, base.value, tax, "arithmetic")
    return None


def tax_of_all_rates(
    found: list[FoundTaxLine], subtotal: Candidate | None, total: Candidate | None
) -> Candidate | None:
    """The tax amount as the sum of several rates' taxes, when subtotal + that sum = total:
    invoices with two rates often print no line with the tax of both."""
    if len(found) < 2 or subtotal is None or total is None:
        return None
    tax = sum((f.tax.value for f in found), Decimal(0))
    if abs(subtotal.amount + tax - total.amount) > Decimal("0.01") * len(found):
        return None
    return Candidate(
        field="tax_amount",
        value=str(tax),
        confidence=SUM_CONFIDENCE,
        page=found[0].line.page or subtotal.page,
        bbox=union([f.tax.bbox for f in found]),
        evidence=SUM_JOINER.join(f.tax.evidence for f in found),
        source="arithmetic:tax_lines",
    )


def negate(lines: list[TaxLine]) -> list[TaxLine]:
    """A credit note's tax lines: base and tax as credits (negative), the rate unchanged."""
    return [
        line.model_copy(
            update={
                "base": -abs(line.base) if line.base is not None else None,
                "amount": -abs(line.amount) if line.amount is not None else None,
            }
        )
        for line in lines
    ]
