"""extract: the deterministic, template-free invoice and receipt extractor (offline default).

Works on words with boxes from the text layer or OCR, with no per-issuer template: labels in
several languages are paired with the values beside or below them, amounts are chosen so that
subtotal + tax = total where the page allows, and every value carries the page text, page and
box it was read from. `source` says how it was found and `confidence` ranks those ways:

    label:right, label:rounding   label on the same row (0.9 × the label's weight)
    label:below                   label above the value, e.g. a header row (0.75 × weight)
    symbol:amount, symbol:text    currency sign or code beside an amount, or elsewhere
    arithmetic, arithmetic:line_items   derived (subtotal = total − tax …), printed on the page
    legal_form, top_of_page, below_issuer   where issuer name and address were found
    registration, payee           issuer named by its registration footer or bank account
    recipient_block               an unlabelled name-and-address block beside the issuer (0.35)
    first_date, largest_amount    last resorts when no label is found (0.3–0.4)
"""

from __future__ import annotations

from mmflow.tasks.extraction.amounts import choose_amounts
from mmflow.tasks.extraction.currency import choose_currency
from mmflow.tasks.extraction.labels import OTHER, SHIP_TO, match_labels
from mmflow.tasks.extraction.layout import Row, build_rows
from mmflow.tasks.extraction.line_items import detect_line_items, line_total
from mmflow.tasks.extraction.pairing import Candidate, labelled_candidates
from mmflow.tasks.extraction.parsing import (
    DateOrder,
    date_order_of,
    decimal_separator_of,
    find_amounts,
    find_dates,
    format_amount,
)
from mmflow.tasks.extraction.parties import guess_address, guess_buyer, guess_issuer
from mmflow.tasks.models import FIELD_NAMES, DocumentText, Extraction, FieldValue

FIRST_DATE_CONFIDENCE = 0.4
BUYER_BLOCK_ROWS = 5


def extract_invoice(doc: DocumentText) -> Extraction:
    """Fields of DESIGN.md and line items from one document's words with boxes."""
    rows = [row for page in doc.pages for row in build_rows(page)]
    texts = [segment.text for row in rows for segment in row.segments]
    decimal_sep = decimal_separator_of(texts)
    currency = choose_currency(rows, decimal_sep)
    order = date_order_of(texts, currency.value if currency else None)

    labelled = labelled_candidates(rows, decimal_sep, order)
    items = detect_line_items(rows, decimal_sep)
    chosen: dict[str, Candidate | None] = dict.fromkeys(FIELD_NAMES)
    chosen.update(choose_amounts(labelled, _page_amounts(rows, decimal_sep), line_total(items)))
    chosen["currency"] = currency
    chosen["invoice_number"] = _best(labelled, "invoice_number")
    chosen["due_date"] = _best(labelled, "due_date")
    chosen["issue_date"] = _issue_date(rows, labelled, order)
    issuer = _best(labelled, "issuer_name")
    guess = guess_issuer(rows, _buyer_block(rows))
    if guess is not None and (issuer is None or guess.candidate.confidence > issuer.confidence):
        issuer = guess.candidate
    chosen["issuer_name"] = issuer
    chosen["buyer_name"] = _best(labelled, "buyer_name") or guess_buyer(rows, guess)
    chosen["issuer_address"] = guess_address(rows, guess) if guess is not None else None

    fields = {name: _field_value(name, chosen.get(name)) for name in FIELD_NAMES}
    return Extraction(fields=fields, line_items=items)


def _field_value(name: str, cand: Candidate | None) -> FieldValue:
    if cand is None:
        return FieldValue()
    value = (
        format_amount(cand.amount) if name in ("subtotal", "tax_amount", "total") else cand.value
    )
    return FieldValue(
        value=value,
        confidence=cand.confidence,
        page=cand.page,
        bbox=cand.bbox,
        evidence=cand.evidence,
        source=cand.source,
    )


def _best(candidates: list[Candidate], field: str) -> Candidate | None:
    """Highest confidence; among equals the one read first."""
    pool = [c for c in candidates if c.field == field]
    return min(pool, key=lambda c: (-c.confidence, c.order)) if pool else None


def _issue_date(rows: list[Row], labelled: list[Candidate], order: DateOrder) -> Candidate | None:
    """A labelled date, else the first date on the page that no other label claims."""
    taken = {(c.page, c.bbox) for c in labelled if c.field in (OTHER, "due_date")}
    pool = [c for c in labelled if c.field == "issue_date" and (c.page, c.bbox) not in taken]
    if pool:
        return min(pool, key=lambda c: (-c.confidence, c.order))
    for index, row in enumerate(rows):
        for segment in row.segments:
            for mention in find_dates(segment.text, order):
                bbox = segment.span_bbox(mention.start, mention.end)
                if (segment.page, bbox) in taken:
                    continue
                return Candidate(
                    field="issue_date",
                    value=mention.value.isoformat(),
                    confidence=FIRST_DATE_CONFIDENCE,
                    page=segment.page,
                    bbox=bbox,
                    evidence=segment.span_evidence(mention.start, mention.end),
                    source="first_date",
                    order=index,
                )
    return None


def _page_amounts(rows: list[Row], decimal_sep: str) -> list[Candidate]:
    """Every money amount printed on the pages, to ground arithmetic-derived values."""
    found: list[Candidate] = []
    for index, row in enumerate(rows):
        for segment in row.segments:
            for mention in find_amounts(segment.text, decimal_sep):
                found.append(
                    Candidate(
                        field="amount",
                        value=str(mention.value),
                        confidence=0.0,
                        page=segment.page,
                        bbox=segment.span_bbox(mention.start, mention.end),
                        evidence=segment.span_evidence(mention.start, mention.end),
                        source="page",
                        order=index,
                    )
                )
    return found


def _buyer_block(rows: list[Row]) -> set[int]:
    """`id()`s of segments under a "Bill to"-like label: they name the buyer, not the issuer."""
    excluded: set[int] = set()
    for index, row in enumerate(rows):
        for segment in row.segments:
            labels = match_labels(segment.folded)
            if not any(m.field in ("buyer_name", SHIP_TO) and m.start <= 1 for m in labels):
                continue
            excluded.add(id(segment))
            x0 = segment.bbox[0] - 5
            x1 = max(segment.bbox[2], segment.bbox[0] + 150)
            for below in rows[index + 1 : index + 1 + BUYER_BLOCK_ROWS]:
                for other in below.segments:
                    if other.bbox[0] < x1 and other.bbox[2] > x0:
                        excluded.add(id(other))
    return excluded
