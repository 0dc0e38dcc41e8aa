"""Who issued the document and where: company name from legal form or page top, then address.

Invoices name their issuer beside a legal form (B.V., GmbH, Inc., Sdn Bhd …) or at the top of
the first page; receipts print the shop's name as their first real line, often split over two
lines when it is long. The address is the run of lines under the name in the same column, up to
the first line that is a phone number, tax id or document label.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tasks.extraction.labels import match_labels
from tasks.extraction.layout import Row, Segment, union
from tasks.extraction.pairing import Candidate
from tasks.extraction.parsing import find_amounts, find_dates
from tasks.models import Word

LEGAL_FORM = re.compile(
    r"(?<![a-z0-9])(?:gmbh|ag|b\.\s?v\.?|bv|n\.\s?v\.?|inc\.?|ltd\.?|llc|limited|plc|"
    r"s\.?a\.?r\.?l\.?|sas|s\.a\.?|s\.r\.l\.?|s\.l\.|s\.p\.a\.?|sdn\.?\s*bhd\.?|bhd\.?|s/b|"
    r"pvt\.?\s*ltd\.?|corp\.?|corporation|company|co\.|kg|ohg|e\.k\.|oy|aps|"
    r"spolka akcyjna|sp\. z o\.o\.)(?![a-z])"
)
TITLE_WORDS = re.compile(
    r"^(?:kopie |copy |simplified |original )?(?:tax )?(?:invoice|factuur|rechnung|facture|factura|"
    r"receipt|payment receipt|cash bill|bill|quotation|credit note|gutschrift|avoir|creditnota|"
    r"official receipt|cash receipt|tax invoice)[\s.:\-]*$"
)
STOP_ADDRESS = re.compile(
    r"(?<![a-z])(?:tel|phone|telefon|telephone|fax|e-?mail|www|http|gst|vat|tax|btw|tva|ust|"
    r"mwst|invoice|factuur|rechnung|facture|factura|date|datum|cashier|kvk|iban|siret|mobile|"
    r"whatsapp|hp|h/p|doc|receipt|bank|account|konto|ifsc|bic|swift)(?![a-z])|@"
)
REGISTRATION = re.compile(r"\d{4,}-?[a-z]\)?\.?$|^\(?(?:co|company)\.?\s*(?:reg\w*\.?)?\s*no")
ISSUER_LEGAL_FORM_TOP = 0.75
ISSUER_LEGAL_FORM_LOW = 0.45
ISSUER_TOP_LINE = 0.5
MAX_NAME_WORDS = 9
TOP_NAME_LINES = 3  # a legal-form name among the first this many name-like lines is the issuer
TOP_LINE_ZONE = 0.3  # share of the page height, from the first text down, searched for a name


@dataclass
class IssuerGuess:
    candidate: Candidate
    row_index: int
    segment: Segment
    rest: str  # text after the name on the same segment ("QualityHosting AG - Uferweg 40")


def _is_name_like(segment: Segment) -> bool:
    text = segment.folded.strip()
    letters = sum(c.isalpha() for c in text)
    if letters < 3 or TITLE_WORDS.match(text):
        return False
    if find_dates(segment.text) or find_amounts(segment.text):
        return False
    if "@" in text or "www" in text or "http" in text:
        return False
    labels = match_labels(segment.folded)
    return not any(m.start <= 1 for m in labels if m.weight >= 0.8)


def _legal_form_name(segment: Segment) -> tuple[str, int] | None:
    """The name up to and including its legal form, and where the rest of the text starts."""
    if len(segment.words) > MAX_NAME_WORDS * 2:
        return None
    for match in LEGAL_FORM.finditer(segment.folded):
        end = match.end()
        name = segment.text[:end].strip(" ,;-–")
        if sum(c.isalpha() for c in name) - (end - match.start()) < 2:
            continue  # the legal form alone is not a name
        if len(name.split()) > MAX_NAME_WORDS:
            return None
        head = segment.text[: match.start()].split()
        if head and sum(w[:1].isupper() or w[:1].isdigit() for w in head) * 2 < len(head):
            continue  # "… encapsulated their company": prose, not a company name
        return name, end
    return None


def guess_issuer(rows: list[Row], excluded: set[int]) -> IssuerGuess | None:
    """Best issuer name on the first page; `excluded` holds `id()`s of buyer-block segments.

    A name with a legal form among the first few name-like lines wins; then the first
    name-like line near the top of the page; then a legal-form name anywhere on the page.
    """
    first_page = [i for i, r in enumerate(rows) if r.page == rows[0].page] if rows else []
    if not first_page:
        return None
    page_top = min(rows[i].bbox[1] for i in first_page)
    span = max(1.0, max(rows[i].bbox[3] for i in first_page) - page_top)
    name_like_seen = 0
    top_line: IssuerGuess | None = None
    low_legal: IssuerGuess | None = None
    for index in first_page:
        row = rows[index]
        for segment in row.segments:
            if id(segment) in excluded or not _is_name_like(segment):
                continue
            name_like_seen += 1
            found = _legal_form_name(segment)
            if found is not None:
                near_top = name_like_seen <= TOP_NAME_LINES
                guess = _legal_guess(rows, index, segment, found, near_top)
                if near_top:
                    return guess
                low_legal = low_legal or guess
            in_zone = (segment.bbox[1] - page_top) / span <= TOP_LINE_ZONE
            if top_line is None and in_zone:
                top_line = _top_line_guess(index, segment)
    return top_line or low_legal


def _legal_guess(
    rows: list[Row], index: int, segment: Segment, found: tuple[str, int], near_top: bool
) -> IssuerGuess:
    name, end = found
    words = segment.words_in(0, end)
    legal = LEGAL_FORM.search(segment.folded)
    if legal is not None and len(segment.text[: legal.start()].split()) <= 2 and index > 0:
        name, words = _join_line_above(rows, index, segment, name, words)
    return IssuerGuess(
        Candidate(
            field="issuer_name",
            value=name,
            confidence=ISSUER_LEGAL_FORM_TOP if near_top else ISSUER_LEGAL_FORM_LOW,
            page=segment.page,
            bbox=union([w.bbox for w in words]),
            evidence=" ".join(w.text for w in words),
            source="legal_form",
            order=index,
        ),
        index,
        segment,
        segment.text[end:].strip(" ,;-–"),
    )


_TITLE_EDGE = re.compile(
    r"^(?:(?:tax )?invoice|factuur|rechnung|facture|factura|receipt)\s+|"
    r"\s+(?:(?:tax )?invoice|factuur|rechnung|facture|factura|receipt)$",
    re.IGNORECASE,
)


def _top_line_guess(index: int, segment: Segment) -> IssuerGuess:
    name = re.sub(r"\s*\(\s*[\w\s./-]*\d[\w\s./-]*\)\s*$", "", segment.text)
    name = _TITLE_EDGE.sub("", name).strip(" ,;-–")
    return IssuerGuess(
        Candidate(
            field="issuer_name",
            value=name,
            confidence=ISSUER_TOP_LINE,
            page=segment.page,
            bbox=segment.bbox,
            evidence=segment.text,
            source="top_of_page",
            order=index,
        ),
        index,
        segment,
        "",
    )


def _join_line_above(
    rows: list[Row], index: int, segment: Segment, name: str, words: list[Word]
) -> tuple[str, list[Word]]:
    """'POPULAR BOOK' / 'CO. (M) SDN BHD': a short legal-form line continues the one above."""
    above = rows[index - 1]
    if above.page != rows[index].page:
        return name, words
    height = segment.height
    for candidate in above.segments:
        overlaps = candidate.bbox[0] < segment.bbox[2] and candidate.bbox[2] > segment.bbox[0]
        close = segment.bbox[1] - candidate.bbox[3] < 0.8 * height
        similar = 0.75 < candidate.height / max(1.0, height) < 1.35
        if overlaps and close and similar and _is_name_like(candidate):
            return f"{candidate.text} {name}", [*candidate.words, *words]
    return name, words


def guess_address(rows: list[Row], issuer: IssuerGuess) -> Candidate | None:
    """Lines under the issuer's name in its column, or the rest of the name's own line."""
    if issuer.rest and any(c.isdigit() for c in issuer.rest) and len(issuer.rest) > 6:
        seg = issuer.segment
        start = seg.text.find(issuer.rest)
        return Candidate(
            field="issuer_address",
            value=re.sub(r"\s+[-–]\s+", ", ", issuer.rest),
            confidence=0.5,
            page=seg.page,
            bbox=seg.span_bbox(start, start + len(issuer.rest)),
            evidence=seg.span_evidence(start, start + len(issuer.rest)),
            source="below_issuer",
            order=issuer.row_index,
        )
    anchor = issuer.segment
    x0, _, x1, bottom = anchor.bbox
    height = anchor.height
    lines: list[Segment] = []
    for row in rows[issuer.row_index + 1 : issuer.row_index + 8]:
        if row.page != anchor.page:
            break
        column = [s for s in row.segments if s.bbox[0] < x1 + height and s.bbox[2] > x0 - height]
        if not column:
            continue
        if row.bbox[1] - bottom > 2.2 * max(height, row.height):
            break
        segment = column[0]
        folded = segment.folded.strip()
        if REGISTRATION.search(folded) and not lines:
            bottom = row.bbox[3]
            continue
        if STOP_ADDRESS.search(folded) or find_dates(segment.text):
            break
        if match_labels(folded) and any(m.start <= 1 and m.weight >= 0.8 for m in match_labels(folded)):
            break
        lines.append(segment)
        bottom = row.bbox[3]
        if len(lines) == 5:
            break
    if not lines:
        return None
    return Candidate(
        field="issuer_address",
        value=" ".join(s.text for s in lines),
        confidence=0.5,
        page=anchor.page,
        bbox=union([s.bbox for s in lines]),
        evidence="\n".join(s.text for s in lines),
        source="below_issuer",
        order=issuer.row_index + 1,
    )
