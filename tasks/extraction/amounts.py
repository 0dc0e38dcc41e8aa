"""Choosing subtotal, tax and total together, so the chosen three agree with each other.

Pages print many labelled amounts (per-section subtotals, tax summaries, "Subtotaal" meaning a
gross sum, cash tendered). Each field keeps a few candidates; every combination is scored by the
candidates' own confidence plus how well `subtotal + tax = total` holds, and the best one wins.
A field still missing afterwards is derived by arithmetic, but only when the derived value is
printed somewhere on the page, so every reported number stays grounded in the page text.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from decimal import Decimal

from mmflow.tasks.extraction.labels import ROUNDING
from mmflow.tasks.extraction.pairing import OTHER_AMOUNT, Candidate

AMOUNT_FIELDS = ("subtotal", "tax_amount", "total")
ARITHMETIC_CONFIDENCE = 0.6
LARGEST_AMOUNT_CONFIDENCE = 0.3
ROUNDING_TOLERANCE = Decimal("0.05")  # cash rounding on receipts


def _best_by_value(candidates: list[Candidate], field: str, limit: int = 5) -> list[Candidate]:
    best: dict[Decimal, Candidate] = {}
    for cand in candidates:
        if cand.field != field:
            continue
        key = cand.amount
        if key not in best or cand.confidence > best[key].confidence:
            best[key] = cand
    return sorted(best.values(), key=lambda c: -c.confidence)[:limit]


def _combination_score(
    total: Candidate | None,
    subtotal: Candidate | None,
    tax: Candidate | None,
    largest_total: Decimal | None,
) -> float:
    score = sum(c.confidence for c in (total, subtotal, tax) if c is not None)
    chosen = [c for c in (total, subtotal, tax) if c is not None]
    boxes = [(c.page, c.bbox) for c in chosen]
    if len(set(boxes)) < len(boxes):
        score -= 1.0  # one printed number cannot be two fields
    t = total.amount if total else None
    s = subtotal.amount if subtotal else None
    x = tax.amount if tax else None
    if t is not None and t == largest_total:
        score += 0.05  # of equally labelled totals, the largest is the one to pay
    if t is not None and s is not None and x is not None:
        difference = abs(s + x - t)
        if difference == 0:
            score += 1.0
        elif difference <= ROUNDING_TOLERANCE:
            score += 0.5
        else:
            score -= 0.3
    if t is not None and s is not None and s > t > 0:
        score -= 1.0
    if t is not None and x is not None and x >= t > 0:
        score -= 1.0
    if s is not None and x is not None and x > s > 0:
        score -= 1.0  # a tax above its base is no tax rate anyone charges
    return score


def _printed(value: Decimal, page_amounts: list[Candidate]) -> Candidate | None:
    """The last place on the pages where `value` is printed (totals sit low on a page)."""
    hits = [c for c in page_amounts if c.amount == value]
    return hits[-1] if hits else None


def _derived(
    field: str, value: Decimal, page_amounts: list[Candidate], source: str
) -> Candidate | None:
    printed = _printed(value, page_amounts)
    if printed is None:
        return None
    return replace(printed, field=field, confidence=ARITHMETIC_CONFIDENCE, source=source)


def _cash_rounded(total: Candidate, labelled: list[Candidate]) -> Candidate:
    """Receipts rounding to 5 cents print the payable total after a "Rounding" line."""
    if total.amount % Decimal("0.05") == 0:
        return total
    for cand in labelled:
        if cand.field not in (ROUNDING, "total") or cand.order <= total.order:
            continue
        difference = abs(cand.amount - total.amount)
        if 0 < difference <= ROUNDING_TOLERANCE and cand.amount % Decimal("0.05") == 0:
            return replace(
                cand, field="total", confidence=total.confidence, source="label:rounding"
            )
    return total


def choose_amounts(
    labelled: list[Candidate],
    page_amounts: list[Candidate],
    line_total: Decimal | None,
) -> dict[str, Candidate | None]:
    """The most plausible (subtotal, tax, total), filled in by arithmetic where grounded."""
    options = {f: _best_by_value(labelled, f) for f in AMOUNT_FIELDS}
    totals = [c.amount for c in options["total"]]
    largest = max(totals) if totals else None
    best: tuple[float, Candidate | None, Candidate | None, Candidate | None] = (
        float("-inf"),
        None,
        None,
        None,
    )
    for total, subtotal, tax in itertools.product(
        [*options["total"], None], [*options["subtotal"], None], [*options["tax_amount"], None]
    ):
        score = _combination_score(total, subtotal, tax, largest)
        if score > best[0]:
            best = (score, total, subtotal, tax)
    _, total, subtotal, tax = best

    if total is None and subtotal is not None and tax is not None:
        total = _derived("total", subtotal.amount + tax.amount, page_amounts, "arithmetic")
    if total is not None and subtotal is None and tax is not None:
        subtotal = _derived("subtotal", total.amount - tax.amount, page_amounts, "arithmetic")
    if (
        total is not None
        and subtotal is not None
        and tax is None
        and subtotal.amount < total.amount
    ):
        tax = _derived("tax_amount", total.amount - subtotal.amount, page_amounts, "arithmetic")
    if total is not None and subtotal is None and tax is None and line_total == total.amount:
        # no tax anywhere and the lines add up to the total: the lines are the subtotal
        subtotal = replace(
            total,
            field="subtotal",
            confidence=ARITHMETIC_CONFIDENCE,
            source="arithmetic:line_items",
        )
    if total is not None:
        total = _cash_rounded(total, labelled)
    claimed = {(c.page, c.bbox) for c in labelled if c.field == OTHER_AMOUNT}
    unclaimed = [c for c in page_amounts if (c.page, c.bbox) not in claimed]
    if total is None and unclaimed:
        largest_printed = max(unclaimed, key=lambda c: (c.amount, c.order))
        total = replace(
            largest_printed,
            field="total",
            confidence=LARGEST_AMOUNT_CONFIDENCE,
            source="largest_amount",
        )
    return {"subtotal": subtotal, "tax_amount": tax, "total": total}
