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
    marketplace                   the platform an order went through, when the page names the
                                  other issuer only as its seller (`extraction.marketplace`)
    recipient_block               an unlabelled name-and-address block beside the issuer (0.35)
    below_buyer, beside_buyer     the buyer's address under (or after) the buyer's name
    pattern:vat_id, pattern:iban  an identifier found by its shape and check digits, unlabelled
    title, label, default         how the document type was told (its title, a label, nothing)
    first_date, largest_amount    last resorts when no label is found (0.3–0.4)

Tax per rate comes from rows where base × rate = tax (`extraction.tax_lines`). A credit note's
amounts are reported negative whether the page prints a minus or the title implies it. The
work per page is bounded (`extraction.bounds`): words past the bound are left unread and a
`too_complex` check says so.
"""

from __future__ import annotations

from dataclasses import replace

from mmflow.tasks.extraction.amounts import choose_amounts
from mmflow.tasks.extraction.bounds import bound_page
from mmflow.tasks.extraction.calibration import calibrated
from mmflow.tasks.extraction.currency import choose_currency
from mmflow.tasks.extraction.document_type import choose_document_type
from mmflow.tasks.extraction.identifiers import choose_identifiers
from mmflow.tasks.extraction.labels import OTHER, SHIP_TO, match_labels
from mmflow.tasks.extraction.layout import Row, build_rows
from mmflow.tasks.extraction.line_items import detect_line_items, line_total
from mmflow.tasks.extraction.marketplace import marketplace_issuer
from mmflow.tasks.extraction.pairing import Candidate, labelled_candidates
from mmflow.tasks.extraction.parsing import (
    DateOrder,
    date_order_of,
    decimal_separator_of,
    find_amounts,
    find_dates,
    format_amount,
)
from mmflow.tasks.extraction.parties import (
    address_beside,
    buyer_address,
    guess_address,
    guess_buyer,
    guess_issuer,
)
from mmflow.tasks.extraction.tax_lines import find_tax_lines, negate, tax_of_all_rates
from mmflow.tasks.models import (
    ALL_FIELD_NAMES,
    AMOUNT_FIELDS,
    Check,
    CheckStatus,
    DocumentText,
    DocumentType,
    Extraction,
    FieldValue,
    LineItem,
)

FIRST_DATE_CONFIDENCE = 0.4
BUYER_BLOCK_LINES = 6  # name, up to four address lines, a tax ID


def extract_invoice(doc: DocumentText) -> Extraction:
    """The invoice contract's fields (docs/contracts.md), line items and tax lines from one
    document's words with boxes."""
    bounded = [bound_page(page) for page in doc.pages]
    rows = [row for page in bounded for row in build_rows(page.page)]
    texts = [segment.text for row in rows for segment in row.segments]
    decimal_sep = decimal_separator_of(texts)
    currency = choose_currency(rows, decimal_sep)
    order = date_order_of(texts, currency.value if currency else None)

    labelled = labelled_candidates(rows, decimal_sep, order)
    items = detect_line_items(rows, decimal_sep)
    chosen: dict[str, Candidate | None] = dict.fromkeys(ALL_FIELD_NAMES)
    chosen.update(choose_amounts(labelled, _page_amounts(rows, decimal_sep), line_total(items)))
    chosen["currency"] = currency
    chosen["referenced_invoice"] = _best(labelled, "referenced_invoice")
    referenced = chosen["referenced_invoice"]
    chosen["invoice_number"] = _best(
        labelled, "invoice_number", unless=referenced.value if referenced else None
    )
    chosen["due_date"] = _best(labelled, "due_date")
    chosen["issue_date"] = _issue_date(rows, labelled, order)
    buyer_block = _buyer_block(rows)
    issuer = _best(labelled, "issuer_name")
    guess = guess_issuer(rows, buyer_block)
    if guess is not None and (issuer is None or guess.candidate.confidence > issuer.confidence):
        issuer = guess.candidate
    chosen["issuer_name"] = marketplace_issuer(rows, issuer) or issuer
    buyer = _best(labelled, "buyer_name") or guess_buyer(rows, guess)
    chosen["buyer_name"] = buyer
    if guess is not None:
        chosen["issuer_address"] = guess_address(rows, guess) or address_beside(
            rows, guess, buyer_block
        )
    chosen["buyer_address"] = buyer_address(rows, buyer) if buyer is not None else None
    chosen.update(choose_identifiers(rows, labelled, buyer_block))
    chosen["purchase_order"] = _best(labelled, "purchase_order")
    chosen["payment_terms"] = _best(labelled, "payment_terms")
    document_type = choose_document_type(rows, labelled)
    chosen["document_type"] = document_type
    found = find_tax_lines(rows, decimal_sep, items, chosen["subtotal"], chosen["tax_amount"])
    tax_lines = [f.line for f in found]
    all_rates = tax_of_all_rates(found, chosen["subtotal"], chosen["total"])
    if all_rates is not None and (
        chosen["tax_amount"] is None or chosen["tax_amount"].amount != all_rates.amount
    ):
        chosen["tax_amount"] = all_rates
    if document_type.value == DocumentType.CREDIT_NOTE.value:
        chosen.update(_credited(chosen))
        tax_lines, items = negate(tax_lines), _credited_items(items)

    fields = {name: _field_value(name, chosen.get(name)) for name in ALL_FIELD_NAMES}
    notes = [page.note for page in bounded if page.note]
    checks = (
        [Check(name="too_complex", status=CheckStatus.WARN, detail="; ".join(notes))]
        if notes
        else []
    )
    return Extraction(fields=fields, line_items=items, tax_lines=tax_lines, checks=checks)


def _credited(chosen: dict[str, Candidate | None]) -> dict[str, Candidate | None]:
    """A credit note's amounts as credits: negative, printed so or implied by its title."""
    return {
        name: replace(cand, value=str(-abs(cand.amount)))
        for name in AMOUNT_FIELDS
        if (cand := chosen.get(name)) is not None
    }


def _credited_items(items: list[LineItem]) -> list[LineItem]:
    return [
        item.model_copy(
            update={
                "amount": -abs(item.amount) if item.amount is not None else None,
                "unit_price": -abs(item.unit_price) if item.unit_price is not None else None,
            }
        )
        for item in items
    ]


def _field_value(name: str, cand: Candidate | None) -> FieldValue:
    if cand is None:
        return FieldValue()
    value = format_amount(cand.amount) if name in AMOUNT_FIELDS else cand.value
    return FieldValue(
        value=value,
        confidence=calibrated(name, cand.source, cand.confidence),
        page=cand.page,
        bbox=cand.bbox,
        evidence=cand.evidence,
        source=cand.source,
    )


def _best(candidates: list[Candidate], field: str, unless: str | None = None) -> Candidate | None:
    """Highest confidence; among equals the one read first. `unless`: a value it must not be
    (a credit note's number is never the invoice number it refers to)."""
    pool = [c for c in candidates if c.field == field and c.value != unless]
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
            # the block's lines, however many rows other columns interleave with them
            reach = segment.bbox[3] + BUYER_BLOCK_LINES * 1.6 * segment.height
            taken = 0
            for below in rows[index + 1 :]:
                if below.page != segment.page or below.bbox[1] > reach:
                    break
                column = [s for s in below.segments if s.bbox[0] < x1 and s.bbox[2] > x0]
                excluded.update(id(other) for other in column)
                taken += bool(column)
                if taken == BUYER_BLOCK_LINES:
                    break
    return excluded
