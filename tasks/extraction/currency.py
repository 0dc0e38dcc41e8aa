"""The document's currency: the code its symbols and codes point to, weighted by where they sit.

A symbol or code printed beside an amount ("€ 399,00", "RM9.20", "29.99 EUR") counts double a
mention in prose ("All charges are in US Dollars"), and an explicit ISO code beats a bare "$",
which could be any dollar.
"""

from __future__ import annotations

from collections import defaultdict

from mmflow.tasks.extraction.layout import Row
from mmflow.tasks.extraction.pairing import Candidate
from mmflow.tasks.extraction.parsing import find_amounts, find_currencies

NEXT_TO_AMOUNT = 0.9
IN_TEXT = 0.7


def choose_currency(rows: list[Row], decimal_sep: str) -> Candidate | None:
    votes: dict[str, float] = defaultdict(float)
    first: dict[str, Candidate] = {}
    for index, row in enumerate(rows):
        for segment in row.segments:
            amounts = find_amounts(segment.text, decimal_sep)
            for mention in find_currencies(segment.text):
                beside = any(a.start <= mention.start < a.end for a in amounts) or any(
                    a.start <= mention.end + 1 and mention.start <= a.end + 1 for a in amounts
                )
                explicit = (
                    len(segment.text[mention.start : mention.end]) >= 3 or mention.code != "USD"
                )
                votes[mention.code] += (2.0 if beside else 1.0) * (1.0 if explicit else 0.8)
                confidence = NEXT_TO_AMOUNT if beside else IN_TEXT
                known = first.get(mention.code)
                if known is None or confidence > known.confidence:
                    first[mention.code] = Candidate(
                        field="currency",
                        value=mention.code,
                        confidence=confidence,
                        page=segment.page,
                        bbox=segment.span_bbox(mention.start, mention.end),
                        evidence=segment.span_evidence(mention.start, mention.end),
                        source="symbol:amount" if beside else "symbol:text",
                        order=index,
                    )
    if not votes:
        return None
    code = max(votes, key=lambda c: votes[c])
    return first[code]
