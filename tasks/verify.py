"""Verify: every extracted value must be grounded in the page it claims to come from.

A value is grounded when its evidence text is found among the page's words near the evidence
box, and the value agrees with that evidence once both are normalised ("279.84" and "279,84 €",
"2023-03-20" and "20/03/2023", "EUR" and "€"). Evidence is read by the extractor's own parser
(`tasks.extraction.parsing`), so a format the extractor reads is never one verify cannot.
Ungrounded values keep their value — verify never edits data — but lose confidence and get a
check naming the field, so a reviewer knows which numbers to look at. The line items must also
pass the table's pandera schema. A value derived as a sum of printed amounts (the tax of two
rates) carries each part as evidence, joined by " + ", and is grounded when every part is on
the page and they add up to it. Tax lines are grounded like line items, by their tax amount.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter
from datetime import date
from decimal import Decimal, InvalidOperation
from itertools import product

from mmflow.tasks.extraction.parsing import amount_readings, currency_readings, date_readings
from mmflow.tasks.extraction.tax_lines import SUM_JOINER
from mmflow.tasks.extraction.text import plain, text_key
from mmflow.tasks.line_item_rules import row_problems
from mmflow.tasks.models import (
    AMOUNT_FIELDS,
    DATE_FIELDS,
    BBox,
    Check,
    CheckStatus,
    DocumentText,
    Extraction,
    FieldValue,
    LineItem,
    PageText,
    TaxLine,
)

UNGROUNDED_FACTOR = 0.3
"""Confidence multiplier when the evidence is missing, not on the page, or contradicts the value."""
MISPLACED_FACTOR = 0.6
"""Confidence multiplier when the evidence is on the page but not where its box says."""
LINE_AMOUNT = "line_amount"


class _IndexedPage:
    """A page's words sorted by their top edge, so finding the words near a box costs a
    bisection, not a pass over every word (pages can hold thousands, and every value asks)."""

    def __init__(self, page: PageText) -> None:
        self.page = page
        self.order = sorted(range(len(page.words)), key=lambda i: page.words[i].bbox[1])
        self.tops = [page.words[i].bbox[1] for i in self.order]
        self.tallest = max((w.bbox[3] - w.bbox[1] for w in page.words), default=0.0)
        self.texts = [w.text for w in page.words]
        self.squashed = _squash(" ".join(self.texts))
        self.tokens = Counter(token for word in self.texts for token in plain(word).split())

    def anywhere(self, evidence: str) -> bool:
        """`_contains` over the whole page, from text prepared once per page."""
        needle = _squash(evidence)
        if needle and needle in self.squashed:
            return True
        wanted = Counter(plain(evidence).split())
        return bool(self.texts) and bool(wanted) and not (wanted - self.tokens)

    def near(self, box: BBox) -> list[str]:
        """Words (in the page's reading order) that touch the box grown by a small margin."""
        page = self.page
        x0, y0, x1, y1 = box
        # a margin of 1% of the page, but never more than three box heights: a crafted page
        # of tiny text on a huge sheet must not make every box's neighbourhood the whole page
        height = max(0.1, y1 - y0)
        margin_y = max(height, min(page.height * 0.01, 3 * height))
        margin_x = max(min(page.width * 0.02, 6 * height), margin_y)
        gx0, gy0, gx1, gy1 = x0 - margin_x, y0 - margin_y, x1 + margin_x, y1 + margin_y
        low = bisect_left(self.tops, gy0 - self.tallest)
        high = bisect_right(self.tops, gy1)
        hits = []
        for i in self.order[low:high]:
            b = page.words[i].bbox
            if b[0] <= gx1 and b[2] >= gx0 and b[1] <= gy1 and b[3] >= gy0:
                hits.append(i)
        return [self.texts[i] for i in sorted(hits)]


def _squash(text: str) -> str:
    return "".join(plain(text).split())


def _contains(haystack: list[str], evidence: str) -> bool:
    """Evidence appears in the words, ignoring spacing, or every evidence token is among them."""
    if not haystack:
        return False
    needle = _squash(evidence)
    if needle and needle in _squash(" ".join(haystack)):
        return True
    wanted = Counter(plain(evidence).split())
    have = Counter(token for word in haystack for token in plain(word).split())
    return bool(wanted) and not (wanted - have)


def value_agrees(kind: str, value: str, evidence: str) -> str | None:
    """None when `value` is what `evidence` says; otherwise why it is not.

    `kind` is a field name of FIELD_NAMES, or LINE_AMOUNT for a line item's amount.
    """
    if kind in AMOUNT_FIELDS or kind == LINE_AMOUNT:
        try:
            amount = Decimal(value)
        except InvalidOperation:
            return f"value {value!r} is not a decimal amount"
        parts = [amount_readings(part) for part in evidence.split(SUM_JOINER)]
        if not any(sum(combination) == abs(amount) for combination in product(*parts)):
            return f"value {value} is not the amount in the evidence {evidence!r}"
        return None
    if kind == "document_type":
        return None  # a title or label says it; the evidence need only be on the page
    if kind in DATE_FIELDS:
        try:
            day = date.fromisoformat(value)
        except ValueError:
            return f"value {value!r} is not an ISO 8601 date"
        if day not in date_readings(evidence):
            return f"value {value} is not a date the evidence {evidence!r} can mean"
        return None
    if kind == "currency":
        if value.upper() not in currency_readings(evidence):
            return f"value {value} is not named in the evidence {evidence!r}"
        return None
    wanted, have = text_key(value), text_key(evidence)
    if wanted and wanted in have:
        return None
    tokens = [text_key(t) for t in plain(value).split()]
    present = sum(t in have for t in tokens if t)
    if tokens and present / len(tokens) >= 0.8:
        return None
    return f"value {value!r} does not appear in the evidence {evidence!r}"


def _ground(
    kind: str,
    label: str,
    value: str,
    evidence: str | None,
    page_number: int | None,
    box: BBox | None,
    pages: dict[int, _IndexedPage],
) -> tuple[CheckStatus, float, str]:
    """(status, confidence factor, detail) of one value against the page text."""
    if not evidence or page_number is None or box is None:
        missing = [
            n for n, v in (("evidence", evidence), ("page", page_number), ("bbox", box)) if not v
        ]
        return CheckStatus.FAIL, UNGROUNDED_FACTOR, f"{label}: no {', '.join(missing)} recorded"
    page = pages.get(page_number)
    if page is None:
        return CheckStatus.FAIL, UNGROUNDED_FACTOR, f"{label}: page {page_number} has no text"
    disagreement = value_agrees(kind, value, evidence)
    if disagreement is not None:
        return CheckStatus.FAIL, UNGROUNDED_FACTOR, f"{label}: {disagreement}"
    pieces = evidence.split(SUM_JOINER)
    near = page.near(box)
    if all(_contains(near, piece) for piece in pieces):
        return CheckStatus.PASS, 1.0, f"{label}: {evidence!r} found on page {page_number}"
    if all(page.anywhere(piece) for piece in pieces):
        return (
            CheckStatus.WARN,
            MISPLACED_FACTOR,
            f"{label}: {evidence!r} is on page {page_number} but not at the recorded box",
        )
    return (
        CheckStatus.FAIL,
        UNGROUNDED_FACTOR,
        f"{label}: {evidence!r} not found on page {page_number}",
    )


def _ground_line_items(
    items: list[LineItem], pages: dict[int, _IndexedPage]
) -> tuple[list[LineItem], Check]:
    """Each line's evidence must be on its page and hold its amount (or its description)."""
    if not items:
        return [], Check(
            name="grounding:line_items", status=CheckStatus.SKIPPED, detail="no line items"
        )
    grounded: list[LineItem] = []
    failures: list[str] = []
    for number, item in enumerate(items, start=1):
        if item.amount is not None:
            kind, value = LINE_AMOUNT, str(item.amount)
        else:
            kind, value = "description", item.description
        status, factor, detail = _ground(
            kind, f"line {number}", value, item.evidence, item.page, item.bbox, pages
        )
        if status is not CheckStatus.PASS:
            failures.append(detail)
        grounded.append(item.model_copy(update={"confidence": item.confidence * factor}, deep=True))
    if not failures:
        status = CheckStatus.PASS
    elif len(failures) * 2 <= len(items):
        status = CheckStatus.WARN
    else:
        status = CheckStatus.FAIL
    detail = f"{len(items) - len(failures)} of {len(items)} line items grounded"
    if failures:
        detail += ": " + "; ".join(failures)
    return grounded, Check(name="grounding:line_items", status=status, detail=detail)


def _ground_tax_lines(
    lines: list[TaxLine], pages: dict[int, _IndexedPage]
) -> tuple[list[TaxLine], list[Check]]:
    """Each tax line's evidence (its row) must be on its page and hold its tax amount."""
    if not lines:
        return [], []
    grounded: list[TaxLine] = []
    failures: list[str] = []
    for line in lines:
        label = f"tax line {line.rate}%"
        value = str(line.amount) if line.amount is not None else ""
        status, factor, detail = _ground(
            LINE_AMOUNT, label, value, line.evidence, line.page, line.bbox, pages
        )
        if status is not CheckStatus.PASS:
            failures.append(detail)
        grounded.append(line.model_copy(update={"confidence": line.confidence * factor}))
    status = CheckStatus.PASS if not failures else CheckStatus.WARN
    detail = f"{len(lines) - len(failures)} of {len(lines)} tax lines grounded"
    if failures:
        detail += ": " + "; ".join(failures)
    return grounded, [Check(name="grounding:tax_lines", status=status, detail=detail)]


def verify_extraction(extraction: Extraction, text: DocumentText) -> tuple[Extraction, list[Check]]:
    """A new Extraction with confidences adjusted by grounding, and the checks that say why."""
    pages = {page.page: _IndexedPage(page) for page in text.pages}
    checks: list[Check] = []
    fields: dict[str, FieldValue] = {}
    for name, field in extraction.fields.items():
        if field.value is None:
            fields[name] = field.model_copy(deep=True)
            continue
        status, factor, detail = _ground(
            name, name, field.value, field.evidence, field.page, field.bbox, pages
        )
        fields[name] = field.model_copy(update={"confidence": field.confidence * factor}, deep=True)
        checks.append(Check(name=f"grounding:{name}", status=status, detail=detail))
    items, items_check = _ground_line_items(extraction.line_items, pages)
    checks.append(items_check)
    if not extraction.line_items:
        schema_check = Check(
            name="line_items_schema", status=CheckStatus.SKIPPED, detail="no line items"
        )
    elif problems := row_problems(extraction.line_items):
        schema_check = Check(
            name="line_items_schema", status=CheckStatus.FAIL, detail="; ".join(problems)
        )
    else:
        schema_check = Check(
            name="line_items_schema",
            status=CheckStatus.PASS,
            detail=f"{len(extraction.line_items)} rows valid",
        )
    checks.append(schema_check)
    tax_lines, tax_checks = _ground_tax_lines(extraction.tax_lines, pages)
    checks += tax_checks
    verified = Extraction(fields=fields, line_items=items, tax_lines=tax_lines)
    return verified, [*extraction.checks, *checks]
