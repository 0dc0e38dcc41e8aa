"""Whose tax ID is whose, and which bank account the payment goes to.

A tax ID label ("USt-IdNr.", "N° TVA", "NIP") says what the number is, not whose: the issuer's
stands in its letterhead or footer, the buyer's in the buyer's block or under a label that says
so ("Your VAT no.", "NIF cliente"). VAT numbers with a country prefix and IBANs are also found
without a label, by their shape, when their check digits hold: a footer printing
"NL810433941B01" beside "BTW" in another column is still the issuer's VAT number.

Bank account: a labelled IBAN, else one printed anywhere that passes its checks, else an
IBAN-shaped value under an account label (reported, so its failed check shows). The buyer's own
account ("Your IBAN", a direct-debit mandate) is not the one to pay.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import replace

from mmflow.tasks.extraction.labels import BIC, BUYER_TAX_ID, IBAN, TAX_ID, match_labels
from mmflow.tasks.extraction.layout import Row, TextRun
from mmflow.tasks.extraction.pairing import Candidate
from mmflow.tasks.extraction.parsing import (
    IdentifierMention,
    find_ibans,
    find_vat_ids,
    read_bic,
    read_iban,
)
from mmflow.tasks.extraction.parties import BUYERS_OWN
from mmflow.tasks.identifier_checks import iban_problem, tax_id_check
from mmflow.tasks.models import CheckStatus

VALID_BONUS = 0.1  # an identifier whose check digits hold is more likely read right
PATTERN_CONFIDENCE = 0.7  # found by its shape and check digits, without a label
ACCOUNT_SHAPED = 0.35  # IBAN-shaped under an account label, failing its checks
_ACCOUNT_LABEL = re.compile(
    r"(?<![a-z])(?:iban|account|konto|rekening|compte|cuenta|conto|rachunek|rachunku)(?![a-z])"
)


def _candidate(
    field: str, segment: TextRun, mention: IdentifierMention, confidence: float, source: str
) -> Candidate:
    return Candidate(
        field=field,
        value=mention.value,
        confidence=confidence,
        page=segment.page,
        bbox=segment.span_bbox(mention.start, mention.end),
        evidence=segment.span_evidence(mention.start, mention.end),
        source=source,
    )


def _buyers(segment: TextRun, start: int, buyer_block: set[int]) -> bool:
    """The identifier at `start` of `segment` is the buyer's: in its block, or after "your"."""
    return id(segment) in buyer_block or bool(BUYERS_OWN.search(segment.folded[:start]))


def choose_identifiers(
    rows: list[Row], labelled: list[Candidate], buyer_block: set[int]
) -> dict[str, Candidate | None]:
    """issuer_tax_id, buyer_tax_id, iban and bic: labelled values first, then found by shape."""
    segment_of = _SegmentFinder(rows)
    issuer: list[Candidate] = []
    buyer: list[Candidate] = []
    for cand in labelled:
        if cand.field not in (TAX_ID, BUYER_TAX_ID):
            continue
        segment = segment_of(cand)
        owned = cand.field == BUYER_TAX_ID or (segment is not None and id(segment) in buyer_block)
        (buyer if owned else issuer).append(_graded_tax_id(cand))
    for row in rows:
        for segment in row.segments:
            for mention in find_vat_ids(segment.text):
                cand = _candidate("tax_id", segment, mention, PATTERN_CONFIDENCE, "pattern:vat_id")
                (buyer if _buyers(segment, mention.start, buyer_block) else issuer).append(cand)
    issuer_id = _best(issuer)
    buyer_pool = [c for c in buyer if issuer_id is None or c.value != issuer_id.value]
    buyer_id = _best(buyer_pool)
    if issuer_id is not None and buyer_id is not None and issuer_id.value == buyer_id.value:
        buyer_id = None
    return {
        "issuer_tax_id": replace(issuer_id, field="issuer_tax_id") if issuer_id else None,
        "buyer_tax_id": replace(buyer_id, field="buyer_tax_id") if buyer_id else None,
        "iban": _choose_iban(rows, labelled, buyer_block, segment_of),
        "bic": _choose_bic(rows, labelled),
    }


class _SegmentFinder:
    """The segment holding a candidate's box, found by bisection over row tops (a page may
    hold thousands of rows, and every identifier candidate asks)."""

    def __init__(self, rows: list[Row]) -> None:
        self.pages: dict[int, tuple[list[float], list[Row]]] = {}
        for row in rows:
            tops, page_rows = self.pages.setdefault(row.page, ([], []))
            tops.append(row.bbox[1])
            page_rows.append(row)

    def __call__(self, cand: Candidate) -> TextRun | None:
        tops, page_rows = self.pages.get(cand.page, ([], []))
        at = bisect_right(tops, cand.bbox[1] + 1)
        for row in page_rows[max(0, at - 3) : at + 1]:
            for segment in row.segments:
                x0, y0, x1, y1 = segment.bbox
                inside_x = x0 <= cand.bbox[0] + 0.5 and cand.bbox[2] <= x1 + 0.5
                if inside_x and y0 - 1 <= cand.bbox[1] and cand.bbox[3] <= y1 + 1:
                    return segment
        return None


def _graded_tax_id(cand: Candidate) -> Candidate:
    check = tax_id_check("tax_id", cand.value)
    if check.status is CheckStatus.PASS:
        return replace(cand, confidence=min(1.0, cand.confidence + VALID_BONUS))
    return cand


def _best(pool: list[Candidate]) -> Candidate | None:
    """Highest confidence; among equals the one read first. One value found twice counts once,
    at its best."""
    by_value: dict[str, Candidate] = {}
    for cand in pool:
        known = by_value.get(cand.value)
        if known is None or cand.confidence > known.confidence:
            by_value[cand.value] = cand
    if not by_value:
        return None
    return min(by_value.values(), key=lambda c: (-c.confidence, c.page, c.bbox[1], c.bbox[0]))


def _choose_iban(
    rows: list[Row],
    labelled: list[Candidate],
    buyer_block: set[int],
    segment_of: _SegmentFinder,
) -> Candidate | None:
    pool: list[Candidate] = []
    for cand in labelled:
        if cand.field != IBAN:
            continue
        segment = segment_of(cand)
        if segment is not None and _buyers(segment, segment.text.find(cand.evidence), buyer_block):
            continue
        valid = iban_problem(cand.value) is None
        pool.append(replace(cand, confidence=cand.confidence if valid else ACCOUNT_SHAPED))
    for row in rows:
        for segment in row.segments:
            for mention in find_ibans(segment.text):
                if not _buyers(segment, mention.start, buyer_block):
                    pool.append(
                        _candidate("iban", segment, mention, PATTERN_CONFIDENCE, "pattern:iban")
                    )
            label = _ACCOUNT_LABEL.search(segment.folded)
            if label is not None and not pool:
                shaped = read_iban(segment.text, label.end())
                if shaped is not None and not _buyers(segment, label.start(), buyer_block):
                    pool.append(
                        _candidate("iban", segment, shaped, ACCOUNT_SHAPED, "label:account")
                    )
    found = _best(pool)
    return replace(found, field="iban") if found else None


def _choose_bic(rows: list[Row], labelled: list[Candidate]) -> Candidate | None:
    """A labelled BIC; or the BIC-shaped value just left of a "BIC" label with nothing after
    it (columns printed value-then-label)."""
    pool = [c for c in labelled if c.field == BIC]
    if pool:
        return replace(_best(pool) or pool[0], field="bic")
    for row in rows:
        for position, segment in enumerate(row.segments):
            labels = [m for m in match_labels(segment.folded) if m.field == BIC]
            if not labels or segment.text[labels[0].end :].strip(" :"):
                continue
            before = segment.text[: labels[0].start].strip()
            if before:
                mention = read_bic(before)
                if mention is not None:
                    return _candidate("bic", segment, mention, 0.6, "label:left")
            if position > 0:
                left = row.segments[position - 1]
                mention = read_bic(left.text)
                if mention is not None and mention.end >= len(left.text.rstrip()):
                    return _candidate("bic", left, mention, 0.6, "label:left")
    return None
