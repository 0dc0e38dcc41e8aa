"""Invoices a marketplace prints for its sellers are filed under the marketplace's name.

A platform that takes the order ("Ordered Through : Flipkart.com", "Bestellt über amazon.de")
often prints the invoice itself and names the merchant only under a seller label ("Sold By :
WS Retail Services Pvt. Ltd."): the document is the platform's, and it is known by the
platform's name. Both signs are required, so a shop's own invoice keeps its letterhead even
when it mentions where the order came from: the page says the order went through a platform
whose web address it prints, and the issuer found otherwise is introduced by a seller label
rather than printed as the page's own heading.
"""

from __future__ import annotations

import re

from mmflow.tasks.extraction.layout import Row, TextRun
from mmflow.tasks.extraction.pairing import Candidate
from mmflow.tasks.extraction.parties import segment_at

ORDERED_THROUGH = re.compile(
    r"(?<![a-z])(?:(?:ordered|purchased|bought|sold) (?:through|via|on)|"
    r"order(?:ed)? placed (?:through|via|on)|"
    r"(?:bestellt|gekauft) (?:uber|via|bei|auf)|verkauft (?:uber|via))(?![a-z])\s*:?\s*"
)
# The text before a name that introduces it as the merchant, not as the document's issuer.
SELLER_LABEL = re.compile(
    r"(?<![a-z])(?:sold by|seller|merchant|verkauft von|verkaufer|handler|vendeur|verkoper|"
    r"vendedor|venditore)\s*[:.]?\s*$"
)
HOST = re.compile(r"(?<![\w.-])(?:https?://)?((?:[a-z0-9-]+\.)+[a-z]{2,6})(?![\w-])")
# Top-level domains a business address ends in here (a closed list, so "No.42" or "Pvt.Ltd"
# are never read as web addresses), and the second levels some countries put before them.
TOP_LEVEL = re.compile(
    r"com|net|org|info|biz|shop|store|online|io|eu|de|at|ch|nl|be|fr|uk|ie|in|it|es|pt|pl|cz|"
    r"se|dk|no|fi|lu|us|ca|au|nz|my|sg"
)
SECOND_LEVEL = frozenset({"co", "com", "org", "net", "ac", "gov"})
MAX_PLATFORM_WORDS = 4
PLATFORM_BELIEF = 0.7


def marketplace_issuer(rows: list[Row], issuer: Candidate | None) -> Candidate | None:
    """The platform the order went through, when the page names `issuer` only as its seller
    (or names no issuer at all); None when the page is the seller's own document."""
    if issuer is not None and not _named_as_seller(rows, issuer):
        return None
    names = _web_names(rows)
    if not names:
        return None
    for index, row in enumerate(rows):
        for position, segment in enumerate(row.segments):
            match = ORDERED_THROUGH.search(segment.folded)
            if match is None:
                continue
            # the name after the phrase; or, where a logo stands there, the next text beside
            # or under it ("Ordered Through : [logo]" over "Flipkart.com Customer Care : …")
            places = [(segment, match.end(), index)]
            places += [(s, 0, index) for s in row.segments[position + 1 : position + 2]]
            places += [(s, 0, index + 1) for s in _below(rows, index, segment)]
            for place, start, place_index in places:
                found = _platform_at(place, start, names)
                if found is not None:
                    return _candidate(place, *found, place_index)
    return None


def _named_as_seller(rows: list[Row], issuer: Candidate) -> bool:
    """Whether a seller label introduces the issuer: in front of it on its line, in the cell
    before it, or alone on the line above it."""
    found = segment_at(rows, issuer)
    if found is None:
        return False
    index, segment = found
    start = max(0, segment.text.find(issuer.evidence))
    before = segment.folded[:start]
    row = rows[index]
    position = row.segments.index(segment)
    if not before.strip() and position > 0:
        before = row.segments[position - 1].folded
    if SELLER_LABEL.search(before):
        return True
    above = _above(rows, index, segment)
    return above is not None and SELLER_LABEL.match(above.folded.strip()) is not None


def _below(rows: list[Row], index: int, segment: TextRun) -> list[TextRun]:
    """The first segment of the next line that overlaps `segment`'s column, if it is close."""
    if index + 1 >= len(rows) or rows[index + 1].page != rows[index].page:
        return []
    below = rows[index + 1]
    if below.bbox[1] - segment.bbox[3] > 1.5 * segment.height:
        return []
    return [s for s in below.segments if _overlaps(s, segment)][:1]


def _above(rows: list[Row], index: int, segment: TextRun) -> TextRun | None:
    if index == 0 or rows[index - 1].page != rows[index].page:
        return None
    return next((s for s in rows[index - 1].segments if _overlaps(s, segment)), None)


def _overlaps(a: TextRun, b: TextRun) -> bool:
    return a.bbox[0] < b.bbox[2] and a.bbox[2] > b.bbox[0]


def _registrable(host: str) -> tuple[str, int] | None:
    """The name a web address registers ("flipkart" of "www.flipkart.com", "shopwise" of
    "shop.shopwise.co.uk") and where it starts in `host`; None if it is not a web address."""
    parts = host.split(".")
    if len(parts) < 2 or not TOP_LEVEL.fullmatch(parts[-1]):
        return None
    parts = parts[:-1]
    if len(parts) > 1 and parts[-1] in SECOND_LEVEL:
        parts = parts[:-1]
    name = parts[-1]
    if parts == ["www"] or sum(c.isalpha() for c in name) < 2:
        return None
    return name, sum(len(p) + 1 for p in parts[:-1])


def _web_names(rows: list[Row]) -> set[str]:
    """Every name the document's web and e-mail addresses register."""
    names = set()
    for row in rows:
        for segment in row.segments:
            for match in HOST.finditer(segment.folded):
                found = _registrable(match.group(1))
                if found is not None:
                    names.add(found[0])
    return names


def _platform_at(segment: TextRun, start: int, names: set[str]) -> tuple[int, int] | None:
    """The span of `segment.text` from `start` that names a platform: its first words, up to
    a web address that may end them, whose letters are one of the page's web `names`."""
    spans: list[tuple[int, int]] = []
    keys: list[str] = []
    for token in re.finditer(r"\S+", segment.folded[start:]):
        token_start = start + token.start()
        host = HOST.fullmatch(token.group().rstrip(".,;:"))
        found = _registrable(host.group(1)) if host else None
        if host is not None and found is not None:
            name, offset = found
            offset += host.start(1)
            spans.append((token_start + offset, token_start + offset + len(name)))
            keys.append(name)
            break  # a web address ends the name
        spans.append((token_start, token_start + len(token.group())))
        keys.append(re.sub(r"[^a-z0-9]", "", token.group()))
        if len(spans) == MAX_PLATFORM_WORDS:
            break
    for count in range(len(spans), 0, -1):
        if keys[count - 1] and "".join(keys[:count]) in names:  # never ending on a dash
            return spans[0][0], spans[count - 1][1]
    return None


def _candidate(segment: TextRun, start: int, end: int, index: int) -> Candidate:
    return Candidate(
        field="issuer_name",
        value=segment.text[start:end].strip(" ,;:-–"),
        confidence=PLATFORM_BELIEF,
        page=segment.page,
        bbox=segment.span_bbox(start, end),
        evidence=segment.span_evidence(start, end),
        source="marketplace",
        order=index,
    )
