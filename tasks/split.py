"""split: the documents one file holds, found before extraction from what each page says.

Scan batches and e-mail attachments put several invoices in one PDF or TIFF. Read as one, they
mix (the number of the first, the totals of the last). Each page after the first is scored as
the possible start of a new document from signals real documents print:

    "Page 1 of N" restarting            +0.5   ("Page 2 of 3" continuing: -0.6)
    an invoice number unlike the one    +0.5   (the same number repeated: -0.5; a number
      the current document carries              where the document had none: +0.3)
    an issuer named at the top unlike   +0.3
      the current document's
    a document title at the top          +0.2
    the current document has printed     +0.2   (no total yet: -0.1)
      its total
    a date label near the top            +0.1

A score above 0.5 starts a new document. Every boundary keeps its score and reasons; a score
near the threshold (0.3–0.7 either way) adds a `split` warn check, so an uncertain split is
flagged for a person rather than guessed silently. Single-page inputs skip all of this.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mmflow.tasks.extraction.bounds import bound_page
from mmflow.tasks.extraction.document_type import document_titles
from mmflow.tasks.extraction.layout import Row, build_rows
from mmflow.tasks.extraction.pairing import labelled_candidates
from mmflow.tasks.extraction.parsing import date_order_of, decimal_separator_of
from mmflow.tasks.extraction.parties import guess_issuer
from mmflow.tasks.extraction.text import fold, text_key
from mmflow.tasks.models import (
    Check,
    CheckStatus,
    DocumentSplit,
    DocumentText,
    PageText,
    SplitBoundary,
)

THRESHOLD = 0.5
NAMED_ISSUER = 0.6  # an issuer told by its legal form, registration or bank account
UNSURE = (0.3, 0.7)
TOP_SHARE = 0.4  # a date label or title in this upper share of the page is a header's
_PAGE_OF = re.compile(
    r"(?<![a-z])(?:page|seite|pagina|strona|pag|blatt|feuille|blad|hoja)\.?\s*(\d{1,3})\s*"
    r"(?:of|von|sur|van|de|di|z|/|from)\s*(\d{1,3})(?!\d)"
    r"|(?<![\d/])(\d{1,3})\s*/\s*(\d{1,3})\s*$"
)


@dataclass(frozen=True)
class PageSignals:
    """What one page says about where it stands in a document."""

    page_of: tuple[int, int] | None  # "Page 2 of 3"
    number: str | None  # the invoice number it is labelled with
    title: str | None  # a document title at its top
    closes: bool  # it prints a grand total
    dated: bool  # a date label near its top
    issuer: str | None  # the issuer its letterhead names (compared as text keys)


def page_signals(page: PageText) -> PageSignals:
    rows = build_rows(bound_page(page).page)
    texts = [s.text for row in rows for s in row.segments]
    decimal_sep = decimal_separator_of(texts)
    labelled = labelled_candidates(rows, decimal_sep, date_order_of(texts))
    numbers = [c for c in labelled if c.field == "invoice_number" and c.confidence >= 0.5]
    number = min(numbers, key=lambda c: (-c.confidence, c.order)).value if numbers else None
    top = _top_rows(rows)
    titles = document_titles(rows)
    dated = any(
        c.field == "issue_date" and c.source == "label:right" and c.order // 1000 < top
        for c in labelled
    )
    issuer = guess_issuer(rows, set())
    if issuer is not None and issuer.candidate.confidence < NAMED_ISSUER:
        issuer = None  # a bare top line may be anything on a continuation page
    return PageSignals(
        page_of=_page_of(texts),
        number=number,
        title=titles[0] if titles else None,
        closes=any(c.field == "total" and c.confidence >= 0.7 for c in labelled),
        dated=dated,
        issuer=text_key(issuer.candidate.value) if issuer is not None else None,
    )


def _top_rows(rows: list[Row]) -> int:
    """How many of the page's rows are in its upper share."""
    if not rows:
        return 0
    top, bottom = rows[0].bbox[1], max(r.bbox[3] for r in rows)
    limit = top + TOP_SHARE * max(1.0, bottom - top)
    return sum(r.bbox[1] <= limit for r in rows)


def _page_of(texts: list[str]) -> tuple[int, int] | None:
    for text in texts:
        match = _PAGE_OF.search(fold(text))
        if match is None:
            continue
        page, of = (int(g) for g in (match.groups()[:2] if match.group(1) else match.groups()[2:]))
        if 1 <= page <= of <= 500:
            return page, of
    return None


def boundary(
    closed: bool, current: PageSignals, number: str | None, issuer: str | None, page: int
) -> SplitBoundary:
    """How strongly `current` (page `page`) starts a new document after one that carries
    `number`, is issued by `issuer` and has (`closed`) or has not yet printed its total."""
    score = 0.0
    reasons: list[str] = []
    if current.page_of is not None:
        if current.page_of[0] == 1:
            score += 0.5
            reasons.append(f"'page 1 of {current.page_of[1]}' restarts the count")
        else:
            score -= 0.6
            reasons.append(f"'page {current.page_of[0]} of {current.page_of[1]}' continues")
    if current.number is not None and number is not None:
        if text_key(current.number) != text_key(number):
            score += 0.5
            reasons.append(f"invoice number {current.number} differs from {number}")
        else:
            score -= 0.5
            reasons.append(f"the same invoice number {number}")
    elif current.number is not None:
        score += 0.3
        reasons.append(f"invoice number {current.number} where none was before")
    if current.issuer and issuer and current.issuer != issuer:
        score += 0.3
        reasons.append("another issuer at the top")
    if current.title is not None:
        score += 0.2
        reasons.append(f"title {current.title!r} at the top")
    if closed:
        score += 0.2
        reasons.append("the document before has its total")
    else:
        score -= 0.1
        reasons.append("the document before has no total yet")
    if current.dated:
        score += 0.1
        reasons.append("a date label at the top")
    score = round(score, 2)
    return SplitBoundary(page=page, score=score, starts=score > THRESHOLD, reasons=reasons)


def split_document(text: DocumentText) -> DocumentSplit:
    """Page ranges of the documents `text` holds, every boundary scored with its reasons."""
    pages = text.pages
    if len(pages) <= 1:
        numbers = [p.page for p in pages] or [1]
        return DocumentSplit(parts=[(numbers[0], numbers[-1])])
    signals = [page_signals(page) for page in pages]
    parts: list[tuple[int, int]] = []
    boundaries: list[SplitBoundary] = []
    start = pages[0].page
    number, closed, issuer = signals[0].number, signals[0].closes, signals[0].issuer
    for index in range(1, len(pages)):
        found = boundary(closed, signals[index], number, issuer, pages[index].page)
        boundaries.append(found)
        if found.starts:
            parts.append((start, pages[index - 1].page))
            start, number = pages[index].page, signals[index].number
            closed, issuer = signals[index].closes, signals[index].issuer
            continue
        number = number or signals[index].number
        closed = closed or signals[index].closes
        issuer = issuer or signals[index].issuer
    parts.append((start, pages[-1].page))
    return DocumentSplit(parts=parts, boundaries=boundaries, checks=[_check(parts, boundaries)])


def _check(parts: list[tuple[int, int]], boundaries: list[SplitBoundary]) -> Check:
    unsure = [b for b in boundaries if UNSURE[0] <= b.score <= UNSURE[1]]
    ranges = ", ".join(f"{a}–{b}" if a != b else str(a) for a, b in parts)
    summary = f"{len(parts)} document(s), pages {ranges}"
    if not unsure:
        return Check(name="split", status=CheckStatus.PASS, detail=summary)
    doubts = "; ".join(
        f"page {b.page} {'starts' if b.starts else 'continues'} at score {b.score} "
        f"({', '.join(b.reasons)})"
        for b in unsure
    )
    return Check(
        name="split",
        status=CheckStatus.WARN,
        detail=f"{summary}; unsure: {doubts}",
    )


def part_text(text: DocumentText, split: DocumentSplit, index: int) -> DocumentText:
    """The pages of the `index`-th document (0-based) of a split input."""
    first, last = split.parts[index]
    return DocumentText(pages=[p for p in text.pages if first <= p.page <= last])
