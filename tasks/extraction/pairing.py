"""Label-value pairing: a value is what follows its label on the same row, or sits below it.

For each label the value is searched first to the right (rest of the label's own segment, then
the following segments of the row until another label begins), then in the first row below
whose text overlaps the label horizontally (header rows with values underneath). The value must
parse as the field's kind: amount, date, identifier or name.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from mmflow.tasks.extraction.labels import (
    BIC,
    BUYER_TAX_ID,
    IBAN,
    OTHER,
    ROUNDING,
    TAX_ID,
    LabelMatch,
    match_labels,
)
from mmflow.tasks.extraction.layout import Row, TextRun
from mmflow.tasks.extraction.line_items import is_table_header
from mmflow.tasks.extraction.parsing import (
    DateOrder,
    IdentifierMention,
    find_amounts,
    find_dates,
    read_bic,
    read_iban,
    read_tax_id,
)
from mmflow.tasks.models import BBox

Kind = Literal["amount", "date", "id", "name", "tax_id", "iban", "bic", "text"]
FIELD_KINDS: dict[str, Kind] = {
    "invoice_number": "id",
    "issue_date": "date",
    "due_date": "date",
    "total": "amount",
    "subtotal": "amount",
    "tax_amount": "amount",
    "buyer_name": "name",
    "issuer_name": "name",
    ROUNDING: "amount",
    TAX_ID: "tax_id",
    BUYER_TAX_ID: "tax_id",
    IBAN: "iban",
    BIC: "bic",
    "purchase_order": "id",
    "referenced_invoice": "id",
    "payment_terms": "text",
}
_IDENTIFIER_READERS: dict[str, Callable[[str, int], IdentifierMention | None]] = {
    "tax_id": read_tax_id,
    "iban": read_iban,
    "bic": read_bic,
}
MAX_PHRASE_WORDS = 12  # payment terms: "30 days net", "Zahlbar innerhalb von 14 Tagen ohne Abzug"
OTHER_AMOUNT = "_other_amount"  # an amount beside a label that is none of our fields
# How much a placement is trusted; multiplied by the label's own weight.
PLACEMENT_CONFIDENCE = {"label:right": 0.9, "label:below": 0.75}


@dataclass
class Candidate:
    """A value for a field, with where on the page it was read and how it was found."""

    field: str
    value: str  # normalised: ISO date, plain decimal, identifier or name
    confidence: float
    page: int
    bbox: BBox
    evidence: str
    source: str
    order: int = 0  # reading-order position of the evidence, for tie-breaks

    @property
    def amount(self) -> Decimal:
        return Decimal(self.value)


@dataclass
class Region:
    """A piece of a segment where a value may be: text from `start` to `end`."""

    segment: TextRun
    start: int
    end: int


@dataclass
class Parsed:
    """A value parsed from a region; `start`/`end` index the region's segment text."""

    value: str
    region: Region
    start: int
    end: int


@dataclass
class LabelledRow:
    row: Row
    labels: list[tuple[TextRun, LabelMatch]]


def label_rows(rows: list[Row]) -> list[LabelledRow]:
    return [
        LabelledRow(row, [(seg, m) for seg in row.segments for m in match_labels(seg.folded)])
        for row in rows
    ]


def _starts_with_label(segment: TextRun) -> bool:
    stripped = len(segment.folded) - len(segment.folded.lstrip(" :*#-("))
    return any(m.start <= stripped + 1 for m in match_labels(segment.folded))


def right_regions(row: Row, segment: TextRun, label: LabelMatch) -> list[Region]:
    """Text after the label: rest of its segment, then later segments until a label starts one."""
    own_end = len(segment.text)
    for other in match_labels(segment.folded):
        if other.start >= label.end and other.weight >= 0.8:
            own_end = other.start
            break
    regions = [Region(segment, label.end, own_end)]
    if own_end < len(segment.text):
        return regions
    index = row.segments.index(segment)
    for later in row.segments[index + 1 :]:
        if _starts_with_label(later):
            break
        regions.append(Region(later, 0, len(later.text)))
    return regions


def _phrase_end(segment: TextRun, label: LabelMatch) -> int:
    for other in match_labels(segment.folded):
        if other.start > label.end and segment.folded[other.end :].lstrip().startswith(":"):
            return other.start
    return len(segment.text)


def tilted_regions(rows: list[Row], row_index: int, segment: TextRun) -> list[Region]:
    """Segments to the right that a tilted photo put on the row above or below.

    Used only when the label's own row has nothing after it: the value's centre must still lie
    within the label's height, and it must be the nearest segment to the right on its row.
    """
    row = rows[row_index]
    if row.segments[-1] is not segment:
        return []
    x1 = segment.bbox[2]
    centre = (segment.bbox[1] + segment.bbox[3]) / 2
    found: list[tuple[float, TextRun]] = []
    neighbours = [rows[i] for i in (row_index - 1, row_index + 1) if 0 <= i < len(rows)]
    for near in neighbours:
        right = [s for s in near.segments if s.page == segment.page and s.bbox[0] > x1]
        if not right:
            continue
        nearest = min(right, key=lambda s: s.bbox[0])
        offset = abs((nearest.bbox[1] + nearest.bbox[3]) / 2 - centre)
        if offset <= 0.8 * segment.height and not _starts_with_label(nearest):
            found.append((offset, nearest))
    return [Region(s, 0, len(s.text)) for _, s in sorted(found, key=lambda f: f[0])[:1]]


def below_regions(
    rows: list[Row], row_index: int, segment: TextRun, label: LabelMatch
) -> tuple[int, list[Region]]:
    """Segments of the first row below that overlap the label horizontally.

    When that row starts with a label of its own in the same column, the labels are stacked
    ("Klantnummer: …" over "Factuurdatum: …") and nothing below belongs to this one.
    """
    lx0, ly0, lx1, ly1 = segment.span_bbox(label.start, label.end)
    height = max(1.0, ly1 - ly0)
    for distance, below in enumerate(rows[row_index + 1 : row_index + 4]):
        if below.page != segment.page:
            break
        if below.bbox[1] - ly1 > 2.5 * height:
            break
        hits = [s for s in below.segments if s.bbox[0] < lx1 and s.bbox[2] > lx0]
        if hits:
            if any(_starts_with_label(s) for s in hits):
                return 0, []
            return distance, [Region(s, 0, len(s.text)) for s in hits]
    return 0, []


_DATE_HINT = re.compile(r"dat|period|expir|valid|check|prelevement|order|fecha|livraison|commande")

# ------------------------------------------------------------------ value parsers

_ID_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_./\-]*[A-Za-z0-9]|[0-9]")


def parse_id(region: Region) -> Parsed | None:
    text = region.segment.text[region.start : region.end]
    for match in _ID_TOKEN.finditer(text):
        token = match.group(0)
        low = token.lower()
        if low in {"no", "nr", "n", "number", "num", "nummer", "numero", "id", "o", "de"}:
            continue
        if not any(c.isdigit() for c in token):
            return None  # the first real word is not an identifier
        if find_dates(token) and len(token) <= 10:
            return None
        if re.fullmatch(r"\d{1,3}([.,]\d{2})", token):
            return None  # an amount, not a number
        start = region.start + match.start()
        return Parsed(token, region, start, start + len(token))
    return None


# A separator after which the text runs into an address (a part holding a number):
# "Globex Corporation, 12 Main Street" is the name "Globex Corporation".
_ADDRESS_AFTER_NAME = re.compile(r"\s*(?:[,;·|]|\s[-–]\s)\s*(?=[^,;·|]*\d)")
_NOT_NAMES = {"address", "adresse", "adres", "name", "naam", "details", "direccion", "anschrift"}


def parse_name(region: Region) -> Parsed | None:
    text = region.segment.text[region.start : region.end]
    stripped = text.strip(" :;-–,#")
    stripped = re.sub(r"^(?:attn|t\.a\.v\.|z\.hd\.)[:.]?\s*", "", stripped, flags=re.IGNORECASE)
    if stripped.startswith("(") and stripped.endswith(")"):
        return None  # a remark such as "(Not to be used for payment remittance)"
    if stripped.lower().rstrip(":. ") in _NOT_NAMES:
        return None
    stripped = _ADDRESS_AFTER_NAME.split(stripped, maxsplit=1)[0]  # names never carry it
    if stripped[:1].islower() and len(stripped.split()) >= 3:
        return None  # "from the date of purchase": prose after a word that can be a label
    letters = sum(c.isalpha() for c in stripped)
    digits = sum(c.isdigit() for c in stripped)
    if letters < 2 or digits > letters:
        return None
    offset = text.find(stripped) if stripped in text else 0
    start = region.start + max(0, offset)
    return Parsed(stripped, region, start, start + len(stripped))


def parse_identifier(kind: str, region: Region) -> Parsed | None:
    """A tax ID, IBAN or BIC at the start of the region, reported compact."""
    text = region.segment.text[: region.end]
    mention = _IDENTIFIER_READERS[kind](text, region.start)
    if mention is None:
        return None
    return Parsed(mention.value, region, mention.start, mention.end)


def parse_text(region: Region) -> Parsed | None:
    """A phrase: the rest of the region, when it says something ("14 Tage netto") and is no
    longer than a term is (a paragraph under a heading is not a value)."""
    text = region.segment.text[region.start : region.end]
    stripped = text.strip(" :;-–,.")
    if sum(c.isalpha() for c in stripped) < 3 and not any(c.isdigit() for c in stripped):
        return None
    if len(stripped.split()) > MAX_PHRASE_WORDS:
        return None
    start = region.start + text.find(stripped)
    return Parsed(stripped, region, start, start + len(stripped))


def make_amount_parser(decimal_sep: str) -> Callable[[Region], list[Parsed]]:
    def parse(region: Region) -> list[Parsed]:
        text = region.segment.text[region.start : region.end]
        return [
            Parsed(str(m.value), region, region.start + m.start, region.start + m.end)
            for m in find_amounts(text, decimal_sep)
        ]

    return parse


def make_date_parser(order: DateOrder) -> Callable[[Region], list[Parsed]]:
    def parse(region: Region) -> list[Parsed]:
        text = region.segment.text[region.start : region.end]
        return [
            Parsed(m.value.isoformat(), region, region.start + m.start, region.start + m.end)
            for m in find_dates(text, order)
        ]

    return parse


# ------------------------------------------------------------------ pairing


def _candidate(field: str, parsed: Parsed, confidence: float, source: str, order: int) -> Candidate:
    seg = parsed.region.segment
    return Candidate(
        field=field,
        value=parsed.value,
        confidence=round(confidence, 3),
        page=seg.page,
        bbox=seg.span_bbox(parsed.start, parsed.end),
        evidence=seg.span_evidence(parsed.start, parsed.end),
        source=source,
        order=order,
    )


def labelled_candidates(rows: list[Row], decimal_sep: str, order: DateOrder) -> list[Candidate]:
    """Every (label, value) pairing on the pages, scored by label weight and placement."""
    parsers = _Parsers(make_amount_parser(decimal_sep), make_date_parser(order))
    out: list[Candidate] = []
    header_until: tuple[int, float] = (0, -1.0)  # (page, y) down to which a table header runs
    for row_index, labelled in enumerate(label_rows(rows)):
        row = labelled.row
        if is_table_header(row):
            # headers wrap over two or three lines ("VK-Preis / Ohne / MwSt.")
            header_until = (row.page, row.bbox[3] + 2.5 * row.height)
        in_header = row.page == header_until[0] and row.bbox[1] <= header_until[1]
        for segment, label in labelled.labels:
            position = row_index * 1000 + int(segment.bbox[0])
            if label.field == OTHER:
                # "Cash 50.00", "Change 0.60": amounts known not to be the total
                right = right_regions(row, segment, label)
                claimed = _first_value("amount", right, parsers)
                if claimed is not None:
                    out.append(_candidate(OTHER_AMOUNT, claimed, 0.0, "label:right", position))
            found = _pair(rows, row_index, segment, label, in_header, parsers)
            if found is not None:
                parsed, source, confidence = found
                out.append(_candidate(label.field, parsed, confidence, source, position))
    return out


@dataclass
class _Parsers:
    amounts: Callable[[Region], list[Parsed]]
    dates: Callable[[Region], list[Parsed]]


def _pair(
    rows: list[Row],
    row_index: int,
    segment: TextRun,
    label: LabelMatch,
    in_header: bool,
    parsers: _Parsers,
) -> tuple[Parsed, str, float] | None:
    """The value of one label, where it was found, and how much that placement is trusted."""
    # Labels that are none of our fields ("Order date", "Expiry") still claim the date beside
    # them, so the first-date fallback for the issue date can skip it.
    kind = FIELD_KINDS.get(label.field, "date")
    other = label.field.startswith("_") and kind == "date"
    if other and not _DATE_HINT.search(segment.folded[label.start : label.end]):
        return None  # "Cash", "Tel" … say nothing about the date beside them
    if kind in ("name", "text") and label.start > 1:
        return None  # "from"/"client"/"terms" inside a sentence is not a label
    if kind == "text":
        # a phrase runs on past words that are labels elsewhere ("14 Tage netto", "Sofort
        # fällig"); only a label with its own colon starts something else
        right = [Region(segment, label.end, _phrase_end(segment, label))]
    else:
        right = right_regions(rows[row_index], segment, label)
    if not segment.text[label.end :].strip(" :.-#"):
        right += tilted_regions(rows, row_index, segment)
    parsed = _first_value(kind, right, parsers)
    if parsed is not None:
        return parsed, "label:right", PLACEMENT_CONFIDENCE["label:right"] * label.weight
    if other or (kind == "amount" and in_header):
        # "Order date" claims only the date beside it; under a line-item column header stand
        # line amounts, not totals
        return None
    distance, below = below_regions(rows, row_index, segment, label)
    parsed = _first_value(kind, below, parsers)
    if parsed is None:
        return None
    confidence = PLACEMENT_CONFIDENCE["label:below"] * label.weight * 0.85**distance
    return parsed, "label:below", confidence


def _first_value(kind: Kind, regions: list[Region], parsers: _Parsers) -> Parsed | None:
    """The value of `kind` in the regions; an identifier or name must come first in them."""
    if kind == "amount":
        # Totals rows often repeat columns ("Total 1 278.61 40.39 319.00"): the last amount is
        # the row's total.
        amounts = [p for region in regions for p in parsers.amounts(region)]
        return amounts[-1] if amounts else None
    for region in regions:
        if kind == "date":
            dates = parsers.dates(region)
            if dates:
                return dates[0]
        elif kind == "id":
            parsed = parse_id(region)
            if parsed is not None:
                return parsed
            if region.segment.text[region.start : region.end].strip(" :#.-"):
                return None
        elif kind in _IDENTIFIER_READERS:
            parsed = parse_identifier(kind, region)
            if parsed is not None:
                return parsed
            if region.segment.text[region.start : region.end].strip(" :#.-"):
                return None
        elif kind == "text":
            return parse_text(region)
        else:
            parsed_name = parse_name(region)
            if parsed_name is not None:
                return parsed_name
            if region.segment.text[region.start : region.end].strip(" :#.-"):
                return None
    return None
