"""What the document is: an invoice, a credit note, a receipt, a pro-forma, or something else.

Documents say it in their title ("GUTSCHRIFT", "Facture d'avoir", "CASH BILL"), set large
near the top, and a credit note also in its labels ("Credit note no.", "Relates to invoice").
A title outranks a mention in prose; among titles a credit note or pro-forma outranks the
word "invoice" it often carries too ("Credit note for invoice …", "Pro-forma invoice").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from statistics import median

from mmflow.tasks.extraction.labels import match_labels
from mmflow.tasks.extraction.layout import Row
from mmflow.tasks.extraction.pairing import Candidate
from mmflow.tasks.models import DocumentType

TITLE_WORDS: tuple[tuple[DocumentType, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(rf"^[\s*#:.\-]*(?:{words})(?![a-z])"))
    for kind, words in (
        (
            DocumentType.CREDIT_NOTE,
            r"credit ?(?:note|memo|invoice)|gutschrift|rechnungskorrektur|stornorechnung|"
            r"korrekturrechnung|(?:facture d.?)?avoir|note de credit|creditnota|creditfactuur|"
            r"factura rectificativa|nota de credito|abono|nota di credito|"
            r"faktura korygujaca|korekta faktury",
        ),
        (DocumentType.PROFORMA, r"pro[ -]?forma"),
        (
            DocumentType.RECEIPT,
            r"(?:official |cash |payment |sales )?receipt|cash bill|quittung|kassenbon|"
            r"kassenbeleg|recu|ticket de caisse|kassabon|kwitantie|recibo|ricevuta|scontrino|"
            r"paragon(?: fiskalny)?",
        ),
        (
            DocumentType.INVOICE,
            r"(?:tax |vat |commercial |simplified tax )?invoice|rechnung|facture|factuur|"
            r"factura|fattura|faktura(?: vat)?|invois|bill",
        ),
    )
)
PRIORITY = {
    DocumentType.CREDIT_NOTE: 3,
    DocumentType.PROFORMA: 2,
    DocumentType.INVOICE: 1,
    DocumentType.RECEIPT: 0,
}
TITLE_CONFIDENCE = 0.9
LABEL_CONFIDENCE = 0.75  # "Relates to invoice": a credit note's own label
LABEL_TYPE_CONFIDENCE = 0.6  # a label starting with a type word: "Gutschrift Nr.", "Invoice date"
DEFAULT_CONFIDENCE = 0.3  # nothing said it: an invoice, since that is what this flow reads
TITLE_MAX_WORDS = 4
TOP_SHARE = 0.5  # titles are printed in the upper half of the first page


@dataclass(frozen=True)
class _Evidence:
    kind: DocumentType
    confidence: float
    row: int
    segment_index: int
    end: int


def choose_document_type(rows: list[Row], labelled: list[Candidate]) -> Candidate:
    """The document's type, with the title (or label) that says it as evidence."""
    found = _titles(rows)
    credit_labels = [c for c in labelled if c.field == "referenced_invoice"]
    titles = [e for e in found if e.confidence > LABEL_CONFIDENCE]
    if titles or not credit_labels:
        best = max(titles or found, key=lambda e: (PRIORITY[e.kind], e.confidence), default=None)
        if best is not None:
            segment = rows[best.row].segments[best.segment_index]
            return Candidate(
                field="document_type",
                value=best.kind.value,
                confidence=best.confidence,
                page=segment.page,
                bbox=segment.span_bbox(0, best.end),
                evidence=segment.span_evidence(0, best.end),
                source="title" if best in titles else "label",
                order=best.row,
            )
    if credit_labels:
        label = credit_labels[0]
        return Candidate(
            field="document_type",
            value=DocumentType.CREDIT_NOTE.value,
            confidence=LABEL_CONFIDENCE,
            page=label.page,
            bbox=label.bbox,
            evidence=label.evidence,
            source="label:reference",
            order=label.order,
        )
    first = rows[0].segments[0] if rows and rows[0].segments else None
    return Candidate(
        field="document_type",
        value=DocumentType.INVOICE.value,
        confidence=DEFAULT_CONFIDENCE,
        page=first.page if first else 1,
        bbox=first.bbox if first else (0.0, 0.0, 0.0, 0.0),
        evidence=first.text if first else "",
        source="default",
    )


def _titles(rows: list[Row]) -> list[_Evidence]:
    """Title-like segments of the first page's upper half that name a document type.

    A title stands alone (a few words, or nothing after the type word) and is set at least as
    large as the page's body text; the larger, the more confident. A label that starts with a
    type word ("Gutschrift Nr.", "Invoice date") says it with less confidence.
    """
    first_page = [i for i, r in enumerate(rows) if r.page == rows[0].page] if rows else []
    if not first_page:
        return []
    top = min(rows[i].bbox[1] for i in first_page)
    bottom = max(rows[i].bbox[3] for i in first_page)
    body = median(s.height for i in first_page for s in rows[i].segments)
    found: list[_Evidence] = []
    for index in first_page:
        row = rows[index]
        if (row.bbox[1] - top) / max(1.0, bottom - top) > TOP_SHARE:
            break
        for position, segment in enumerate(row.segments):
            for kind, pattern in TITLE_WORDS:
                match = pattern.match(segment.folded)
                if match is None:
                    continue
                rest = segment.folded[match.end() :].strip(" .:-")
                labels = match_labels(segment.folded)
                if any(m.start <= 1 and m.end > match.end() for m in labels):
                    confidence = LABEL_TYPE_CONFIDENCE
                elif len(segment.text.split()) <= TITLE_MAX_WORDS or not rest:
                    size = segment.height / max(0.1, body)
                    confidence = TITLE_CONFIDENCE if size >= 1.15 else TITLE_CONFIDENCE - 0.1
                else:
                    continue
                found.append(_Evidence(kind, confidence, index, position, match.end()))
                break
    return found


def document_titles(rows: list[Row]) -> list[str]:
    """The document titles printed at the top of the rows' first page ("RECHNUNG", "AVOIR")."""
    return [
        rows[e.row].segments[e.segment_index].text[: e.end]
        for e in _titles(rows)
        if e.confidence > LABEL_CONFIDENCE
    ]
