"""Who issued the document, where, and who it is addressed to when no label says so.

Invoices name their issuer beside a legal form (B.V., GmbH, Inc., Sdn Bhd …), at the top of
the first page, in the registration footer ("X SAS au capital … RCS … TVA") or as the holder of
the bank account payments go to; receipts print the shop's name as their first real line, often
split over two lines when it is long. The address is the run of lines under the name in the
same column, up to the first line that is a phone number, tax id or document label. The buyer
is normally read from a "Bill to"-like label (`pairing`); letters without one print the
recipient's name and address as a block of its own beside the issuer's (`guess_buyer`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from mmflow.tasks.extraction.labels import match_labels
from mmflow.tasks.extraction.layout import Row, TextRun, union
from mmflow.tasks.extraction.pairing import Candidate
from mmflow.tasks.extraction.parsing import find_amounts, find_dates
from mmflow.tasks.extraction.text import text_key
from mmflow.tasks.models import Word

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
STREET_WORD = re.compile(
    r"(?<![a-z])(?:rue|avenue|boulevard|quai|place|chemin|street|road|lane|way|drive|square|"
    r"jalan|jln|lorong|lot|via|viale|corso|piazza|calle|avenida|plaza|paseo|carrer|camino|"
    r"ulica|straat|laan|plein|gracht|kade|stra(?:ss|ß)e|gasse|platz|floor|level|suite|unit|"
    r"building|tower|block|blk|taman|tmn)(?![a-z])",
    re.IGNORECASE,
)
# A street or town line, not a name: it ends in a house number ("Lindenallee 140"), starts with
# one before a street word ("27 rue de la République", "14 Harbour Street"), or starts with a
# post code ("13001 Marseille", "3542 AD Utrecht", "00-238 Warszawa").
STREET_LINE = re.compile(
    r"\s\d+[a-zA-Z]?(?:[-/]\d+[a-zA-Z]?)?\s*$"
    r"|^\d+[a-zA-Z]?,?\s+(?:rue|avenue|av|boulevard|bd|quai|place|pl|chemin|allee|impasse|"
    r"street|st|road|rd|lane|ln|way|drive|dr|square|sq|court|ct|jalan|jln|lorong|lot|via|"
    r"viale|corso|piazza|calle|avenida|plaza|paseo|carrer|camino|ul|ulica|straat|weg|laan|"
    r"plein|gracht|kade|strasse|str|weg|gasse|platz|ring|allee)\b"
    r"|^(?:\d{4,5}|\d{2}-\d{3}|\d{4}\s?[A-Z]{2})\s+[A-Z]",
    re.IGNORECASE,
)
REGISTRATION = re.compile(r"\d{4,}-?[a-z]\)?\.?$|^\(?(?:co|company)\.?\s*(?:reg\w*\.?)?\s*no")
COMPANY_IDENTIFIERS = re.compile(
    r"(?<![a-z])(?:au capital|capital social|share capital|rcs|siret|siren|siege social|"
    r"registered (?:office|in|number|address)|company (?:reg\w*|no|number)|handelsregister|"
    r"amtsgericht|registergericht|hrb|hra|geschaftsfuhrer\w*|kvk|kamer van koophandel|"
    r"ust-?id\w*|ust\.? ?id\w*|steuernummer|steuer-?nr|vat (?:no|reg\w*|number|id)|"
    r"tva intra\w*|no (?:de )?tva|btw[- ]?(?:nr|nummer|id)|cif|nif|abn|gstin|tax id)(?![a-z])"
)
BUYERS_OWN = re.compile(
    r"(?<![a-z])(?:your|uw|ihre?|votre|vos|su|customer|client|kunden?|klant|buyer|acheteur)"
    r"(?![a-z])"
)
PAYEE = re.compile(
    r"(?<![a-z])(?:titulaire du compte|account holder|account name|kontoinhaber(?:in)?|"
    r"payable to|in favou?r of|beneficiary(?: name)?|payment received by|rekeninghouder|"
    r"ten name van|titular(?: de la cuenta)?)(?![a-z])\s*:?\s*"
)
_PAYEE_END = re.compile(r"\s[-–|]\s|[,;(]")
ISSUER_TIED = 0.6
BUYER_UNLABELLED = 0.35
SAME_SIZE = (0.75, 1.35)  # height ratio of lines set in one font size
SENDER_LINE_WORDS = 2  # words of letters after the name that make it a one-line address
ISSUER_LEGAL_FORM_TOP = 0.75
ISSUER_LEGAL_FORM_LOW = 0.45
ISSUER_TOP_LINE = 0.5
MAX_NAME_WORDS = 9
TOP_NAME_LINES = 3  # a legal-form name among the first this many name-like lines is the issuer
TOP_LINE_ZONE = 0.3  # share of the page height, from the first text down, searched for a name
TOP_LINE_CHOICES = 3  # top lines weighed against each other (logo word, tagline, name)
FOOTER_ZONE = 0.6  # share of the page height below which registration lines are a footer
LABEL_ROW_CELLS = 2  # a row with this many cells starting with a label is a heading row
SHORT_NAME_WORDS = 5  # a name line heading a registration footer is at most this long


@dataclass
class IssuerGuess:
    candidate: Candidate
    row_index: int
    segment: TextRun
    rest: str  # text after the name on the same segment ("QualityHosting AG - Uferweg 40")


def _is_name_like(segment: TextRun) -> bool:
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


def _legal_form_name(
    segment: TextRun, max_words: int | None = MAX_NAME_WORDS * 2
) -> tuple[str, int] | None:
    """The name up to and including its legal form, and where the rest of the text starts.

    `max_words` bounds the whole line (a longer one is prose); None for registration lines,
    which run long but start with the name.
    """
    if max_words is not None and len(segment.words) > max_words:
        return None
    matches = list(LEGAL_FORM.finditer(segment.folded))
    for index, match in enumerate(matches):
        end = match.end()
        name = segment.text[:end].strip(" ,;-–")
        if sum(c.isalpha() for c in name) - (end - match.start()) < 2:
            continue  # the legal form alone is not a name
        if len(name.split()) > MAX_NAME_WORDS:
            return None
        head = segment.text[: match.start()].split()
        if head and sum(w[:1].isupper() or w[:1].isdigit() for w in head) * 2 < len(head):
            continue  # "… encapsulated their company": prose, not a company name
        # chained legal forms belong to the name: "Holz & Co. KG", "Müller GmbH & Co. KG"
        for later in matches[index + 1 :]:
            if not _CHAIN.fullmatch(segment.folded[end : later.start()]):
                break
            end = later.end()
        return segment.text[:end].strip(" ,;-–"), end
    return None


_CHAIN = re.compile(r"[\s&+,]*(?:\([a-z]{1,3}\)[\s&+,]*)?")  # "Co. (M) Bhd", "GmbH & Co. KG"


def guess_issuer(rows: list[Row], excluded: set[int]) -> IssuerGuess | None:
    """Best issuer name on the first page; `excluded` holds `id()`s of buyer-block segments.

    In order of trust: a name with a legal form among the first few name-like lines; a name
    the page ties to the company's registration details (the "X SAS au capital … RCS … TVA"
    footer) or to its bank account ("Account holder: X", "payable to X"); the top line that
    heads an address block (a logo word yields to the full name it starts); a legal-form
    name anywhere on the page.
    """
    first_page = [i for i, r in enumerate(rows) if r.page == rows[0].page] if rows else []
    if not first_page:
        return None
    page_top = min(rows[i].bbox[1] for i in first_page)
    span = max(1.0, max(rows[i].bbox[3] for i in first_page) - page_top)
    name_like_seen = 0
    top_lines: list[IssuerGuess] = []
    low_legal: IssuerGuess | None = None
    for index in first_page:
        row = rows[index]
        if _is_label_row(row):
            continue  # a table header or a label row ("Hotel Details | Check In | Rooms")
        for segment in _spaced_name(row) or row.segments:
            if id(segment) in excluded or not _is_name_like(segment):
                continue
            name_like_seen += 1
            in_zone = (segment.bbox[1] - page_top) / span <= TOP_LINE_ZONE
            found = _legal_form_name(segment)
            if found is not None:
                near_top = name_like_seen <= TOP_NAME_LINES
                guess = _legal_guess(rows, index, segment, found, near_top)
                if near_top:
                    return guess
                low_legal = low_legal or guess
            street = STREET_LINE.search(segment.text)
            if in_zone and len(top_lines) < TOP_LINE_CHOICES and not street:
                top_lines.append(_top_line_guess(index, segment))
    tied = _payee_guess(rows, first_page, excluded) or _registration_guess(
        rows, first_page, page_top, span, excluded
    )
    return tied or _pick_top_line(rows, top_lines) or low_legal


def _spaced_name(row: Row) -> list[TextRun] | None:
    """A row of single words set far apart ("SWC   ENTERPRISE   SDN   BHD"), as one segment:
    letter-spaced headings are a name, not table cells."""
    segments = row.segments
    if len(segments) < 2 or len(segments) > MAX_NAME_WORDS:
        return None
    if any(
        len(s.words) > 2 or not s.text.replace("&", "").replace(".", "").isalpha() for s in segments
    ):
        return None
    merged = TextRun(page=row.page, words=[w for s in segments for w in s.words])
    return [merged] if LEGAL_FORM.search(merged.folded) else None


def _is_label_row(row: Row) -> bool:
    """Two or more cells of the row start with a label: column headings, not a name."""
    starts = [any(m.start <= 1 for m in match_labels(segment.folded)) for segment in row.segments]
    return sum(starts) >= LABEL_ROW_CELLS


def _pick_top_line(rows: list[Row], top_lines: list[IssuerGuess]) -> IssuerGuess | None:
    """The first top line, unless a later one is its full name or it alone heads no address.

    A logo word ("amazon") is followed by the name it abbreviates ("Amazon Web Services"); a
    tagline ("Global Wholesaler") stands alone while the issuer's name heads its address.
    """
    if not top_lines:
        return None
    capitalised = [g for g in top_lines if not g.candidate.value.islower()]
    if capitalised and top_lines[0].candidate.value.islower():
        top_lines = capitalised  # "tan chay yee" scribbled over "SOON HUAT MACHINERY"
    first = top_lines[0]
    head = text_key(first.candidate.value)
    for later in top_lines[1:]:
        full = text_key(later.candidate.value)
        if head and full.startswith(head) and len(full) > len(head):
            return later
    if _heads_address(rows, first):
        return first
    for later in top_lines[1:]:
        if later.rest:
            continue  # a sender line over an envelope window heads the recipient's address
        if _heads_address(rows, later) and not STREET_LINE.search(later.candidate.value):
            return later
    return first


def _heads_address(rows: list[Row], guess: IssuerGuess) -> bool:
    address = guess_address(rows, guess)
    return address is not None and any(c.isdigit() for c in address.value)


def _registration_guess(
    rows: list[Row], first_page: list[int], page_top: float, span: float, excluded: set[int]
) -> IssuerGuess | None:
    """The company a registration line names: "Free SAS au capital de …", or the name above.

    Registration details (share capital, trade register, VAT or company number) are printed
    for the issuer; a buyer's own VAT number sits in the buyer block, which is `excluded`.
    Without a legal-form name of its own the line must be in the page footer, where the name
    heading the registration block is the issuer's.
    """
    for index in first_page:
        for segment in rows[index].segments:
            identifier = COMPANY_IDENTIFIERS.search(segment.folded)
            if id(segment) in excluded or identifier is None:
                continue
            if BUYERS_OWN.search(segment.folded[: identifier.start()]):
                continue  # "Your VAT number: …", "Kunden-USt-IdNr.": the buyer's registration
            found = _legal_form_name(segment, max_words=None)
            if found is not None and found[1] < identifier.start():
                return _tied_guess(segment, 0, found[1], "registration", index)
            if (segment.bbox[1] - page_top) / span < FOOTER_ZONE:
                continue
            above = _name_above(rows, index, segment, excluded)
            if above is not None:
                row_index, named = above
                return _tied_guess(named, 0, len(named.text), "registration", row_index)
    return None


def _name_above(
    rows: list[Row], index: int, segment: TextRun, excluded: set[int]
) -> tuple[int, TextRun] | None:
    """A short name line heading the block `segment` is in, over further registration lines."""
    for row_index in range(index - 1, max(-1, index - 4), -1):
        row = rows[row_index]
        if row.page != segment.page:
            return None
        column = [
            s for s in row.segments if s.bbox[0] < segment.bbox[2] and s.bbox[2] > segment.bbox[0]
        ]
        if not column:
            continue
        above = column[0]
        if COMPANY_IDENTIFIERS.search(above.folded):
            continue
        words = above.text.split()
        plain_name = (
            id(above) not in excluded
            and len(words) <= SHORT_NAME_WORDS
            and not any(c.isdigit() for c in above.text)
            and not STOP_ADDRESS.search(above.folded)
            and _is_name_like(above)
        )
        return (row_index, above) if plain_name else None
    return None


def _payee_guess(rows: list[Row], first_page: list[int], excluded: set[int]) -> IssuerGuess | None:
    """The name a payment goes to: "Titulaire du compte : X", "payable to X", "received by X"."""
    for index in first_page:
        row = rows[index]
        for position, segment in enumerate(row.segments):
            if id(segment) in excluded:
                continue
            match = PAYEE.search(segment.folded)
            if match is None:
                continue
            rest = segment.text[match.end() :]
            value = _PAYEE_END.split(rest, maxsplit=1)[0].strip(" :.-–,")
            if value:
                start = segment.text.index(value, match.end())
                if _payee_name_ok(value):
                    return _tied_guess(segment, start, start + len(value), "payee", index)
                continue
            following = row.segments[position + 1 : position + 2]
            below = [
                s
                for r in rows[index + 1 : index + 2]
                if r.page == row.page and r.bbox[1] - segment.bbox[3] < 1.5 * segment.height
                for s in r.segments
                if s.bbox[0] < segment.bbox[2] and s.bbox[2] > segment.bbox[0]
            ]
            for other, other_index in [(s, index) for s in following] + [
                (s, index + 1) for s in below[:1]
            ]:
                if _payee_name_ok(other.text) and id(other) not in excluded:
                    return _tied_guess(other, 0, len(other.text), "payee", other_index)
    return None


def _payee_name_ok(text: str) -> bool:
    """A name, not prose ("payable to the account below") nor a number."""
    if not text[:1].isupper():
        return False
    letters = sum(c.isalpha() for c in text)
    digits = sum(c.isdigit() for c in text)
    return letters >= 2 and digits * 2 < letters and len(text.split()) <= MAX_NAME_WORDS


def _tied_guess(segment: TextRun, start: int, end: int, source: str, index: int) -> IssuerGuess:
    """An issuer name the page ties to the company, read from `segment.text[start:end]`."""
    value = segment.text[start:end].strip(" ,;-–:")
    candidate = Candidate(
        field="issuer_name",
        value=value,
        confidence=ISSUER_TIED,
        page=segment.page,
        bbox=segment.span_bbox(start, end),
        evidence=segment.span_evidence(start, end),
        source=source,
        order=index,
    )
    return IssuerGuess(candidate, index, segment, "")


def _legal_guess(
    rows: list[Row], index: int, segment: TextRun, found: tuple[str, int], near_top: bool
) -> IssuerGuess:
    name, end = found
    words = segment.words_in(0, end)
    legal = LEGAL_FORM.search(segment.folded)
    if legal is not None and index > 0 and _continues_above(segment, legal.start()):
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


def _top_line_guess(index: int, segment: TextRun) -> IssuerGuess:
    name = re.sub(r"\s*\(\s*[\w\s./-]*\d[\w\s./-]*\)\s*$", "", segment.text)
    name = _TITLE_EDGE.sub("", name).strip(" ,;-–")
    name, *sender = _SENDER_REST.split(name, maxsplit=1)  # "Acme · Weg 4 · Ort": the name
    start = max(0, segment.text.find(name))
    end = start + len(name)
    return IssuerGuess(
        Candidate(
            field="issuer_name",
            value=name,
            confidence=ISSUER_TOP_LINE,
            page=segment.page,
            bbox=segment.span_bbox(start, end) if sender else segment.bbox,
            evidence=segment.span_evidence(start, end) if sender else segment.text,
            source="top_of_page",
            order=index,
        ),
        index,
        segment,
        sender[0] if sender else "",
    )


def _continues_above(segment: TextRun, legal_start: int) -> bool:
    """Whether a legal-form line may continue the name on the line above: it is short
    ("CO. (M) SDN BHD"), or it is set in capitals like a heading the line above may start
    ("GHEE HIANG" / "GH DISTRIBUTOR & MARKETING SDN BHD")."""
    return len(segment.text[:legal_start].split()) <= 2 or segment.text.isupper()


def _join_line_above(
    rows: list[Row], index: int, segment: TextRun, name: str, words: list[Word]
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
        short_caps = candidate.text.isupper() and len(candidate.text.split()) <= 3
        fits = short_caps or len(segment.text.split()) <= 4  # see _continues_above
        if overlaps and close and similar and fits and _is_name_like(candidate):
            return f"{candidate.text} {name}", [*candidate.words, *words]
    return name, words


def guess_buyer(rows: list[Row], issuer: IssuerGuess | None) -> Candidate | None:
    """An unlabelled recipient block: a name heading an address at the top, beside the issuer.

    Letters print the recipient's name and address in a window, in a column of their own; the
    first top-of-page line that heads an address, is not the issuer and is not in the
    issuer's column is read as the buyer, with low confidence since nothing labels it. When
    the issuer's name and address share one line (the sender line over a DIN 5008 window,
    "QualityHosting AG - Uferweg 40-42 - D-63571 Gelnhausen"), the window below it in the same
    column is the recipient's.
    """
    first_page = [i for i, r in enumerate(rows) if r.page == rows[0].page] if rows else []
    if not first_page:
        return None
    page_top = min(rows[i].bbox[1] for i in first_page)
    span = max(1.0, max(rows[i].bbox[3] for i in first_page) - page_top)
    issuer_key = text_key(issuer.candidate.value) if issuer else ""
    beside: TextRun | None = None  # the issuer's segment when it heads the page too
    if issuer is not None and (issuer.segment.bbox[1] - page_top) / span <= TOP_LINE_ZONE:
        beside = issuer.segment
    sender = _sender_line_row(rows, first_page, issuer_key) if issuer_key else None
    column: TextRun | None = beside
    if issuer is None or _sender_line(issuer) or sender is not None:
        column = None  # the window under a sender line is the recipient's, in any column
    for index in first_page:
        row = rows[index]
        if (row.bbox[1] - page_top) / span > TOP_LINE_ZONE:
            break
        if sender is not None and index <= sender:
            continue
        if _is_label_row(row) or (beside is not None and beside in row.segments):
            continue
        for segment in row.segments:
            if not _is_name_like(segment) or match_labels(segment.folded) or ":" in segment.text:
                continue
            if STREET_LINE.search(segment.text):
                continue  # "Lindenallee 140": an address line, not a name
            if sum(c.isdigit() for c in segment.text) * 2 >= sum(c.isalpha() for c in segment.text):
                continue
            if column is not None and (
                segment.bbox[0] < column.bbox[2] and segment.bbox[2] > column.bbox[0]
            ):
                continue
            guess = _top_line_guess(index, segment)
            key = text_key(guess.candidate.value)
            if not key or (issuer_key and (key in issuer_key or issuer_key in key)):
                continue
            if _heads_block_in_its_size(rows, guess):
                return replace(
                    guess.candidate,
                    field="buyer_name",
                    confidence=BUYER_UNLABELLED,
                    source="recipient_block",
                )
    return None


def _sender_line_row(rows: list[Row], first_page: list[int], issuer_key: str) -> int | None:
    """The row of a sender line over an envelope window: the issuer's name, then its address
    after separators ("Acme GmbH · Weg 4 · 12345 Ort"), set small."""
    for index in first_page:
        for segment in rows[index].segments:
            key = text_key(segment.text)
            if not key.startswith(issuer_key) or len(key) <= len(issuer_key):
                continue
            if _SENDER_SEPARATOR.search(segment.text) and any(c.isdigit() for c in segment.text):
                return index
    return None


_SENDER_SEPARATOR = re.compile(r"\s[·•|\-–]\s")
_SENDER_REST = re.compile(r"\s+[·•|\-–]\s+(?=.*\d)")


def _heads_block_in_its_size(rows: list[Row], guess: IssuerGuess) -> bool:
    """The name heads an address with a number, set in the name's own size (not a slogan)."""
    address = guess_address(rows, guess)
    if address is None or not any(c.isdigit() for c in address.value):
        return False
    below = [
        s
        for row in rows[guess.row_index + 1 :]
        for s in row.segments
        if s.page == address.page and s.bbox[1] >= address.bbox[1] - 1
    ]
    first = min(below, key=lambda s: s.bbox[1], default=None)
    if first is None:
        return False
    ratio = guess.segment.height / max(1.0, first.height)
    return SAME_SIZE[0] < ratio < SAME_SIZE[1]


def _sender_line(issuer: IssuerGuess) -> bool:
    """The issuer's address follows its name on the same line ("Acme AG - Weg 4 - 6357 Ort").

    A registration number in brackets ("(139386 X)") is not an address.
    """
    rest = re.sub(r"\([^)]*\)?", " ", issuer.rest)
    words = [w for w in rest.split() if sum(c.isalpha() for c in w) >= 2]
    return len(words) >= SENDER_LINE_WORDS and any(c.isdigit() for c in rest)


def guess_address(rows: list[Row], issuer: IssuerGuess) -> Candidate | None:
    """Lines under the issuer's name in its column, or the rest of the name's own line."""
    if _sender_line(issuer):
        seg = issuer.segment
        start = seg.text.find(issuer.rest)
        return Candidate(
            field="issuer_address",
            value=re.sub(r"\s+[-–·|]\s+", ", ", issuer.rest),
            confidence=0.5,
            page=seg.page,
            bbox=seg.span_bbox(start, start + len(issuer.rest)),
            evidence=seg.span_evidence(start, start + len(issuer.rest)),
            source="below_issuer",
            order=issuer.row_index,
        )
    return address_under(rows, issuer.row_index, issuer.segment, "issuer_address", "below_issuer")


def address_beside(rows: list[Row], issuer: IssuerGuess, excluded: set[int]) -> Candidate | None:
    """A letterhead's address set beside the name (name left, address block right), when
    nothing is under the name: the block level with the name, nearest to it."""
    anchor = issuer.segment
    best: tuple[tuple[int, float], Candidate] | None = None
    for index, row in enumerate(rows):
        if row.page != anchor.page or abs(row.bbox[1] - anchor.bbox[1]) > 3 * anchor.height:
            continue
        for segment in row.segments:
            overlaps = segment.bbox[0] < anchor.bbox[2] and segment.bbox[2] > anchor.bbox[0]
            folded = segment.folded.strip()
            if overlaps or id(segment) in excluded or not _address_line(segment):
                continue
            rest = address_under(rows, index, segment, "issuer_address", "beside_issuer")
            lines = [segment.text, *(rest.evidence.split("\n") if rest else [])]
            if len(lines) < 2 or not any(c.isdigit() for c in folded + "".join(lines)):
                continue
            boxes = [segment.bbox, rest.bbox] if rest else [segment.bbox]
            found = Candidate(
                field="issuer_address",
                value=" ".join(lines),
                confidence=0.45,
                page=segment.page,
                bbox=union(boxes),
                evidence="\n".join(lines),
                source="beside_issuer",
                order=index,
            )
            rank = (-len(lines), row.bbox[1])  # the whole block, from its first line
            if best is None or rank < best[0]:
                best = (rank, found)
    return best[1] if best else None


def _address_line(segment: TextRun) -> bool:
    folded = segment.folded.strip()
    if STOP_ADDRESS.search(folded) or TITLE_WORDS.match(folded) or find_dates(segment.text):
        return False
    return not any(m.start <= 1 and m.weight >= 0.8 for m in match_labels(folded))


def address_under(
    rows: list[Row], row_index: int, anchor: TextRun, field: str, source: str
) -> Candidate | None:
    """The address lines under a name (`anchor`, on row `row_index`) in the name's column, up
    to the first line that is a phone number, tax ID, date or label."""
    x0, _, x1, bottom = anchor.bbox
    height = anchor.height
    lines: list[TextRun] = []
    for row in rows[row_index + 1 : row_index + 8]:
        if row.page != anchor.page:
            break
        column = [s for s in row.segments if s.bbox[0] < x1 + height and s.bbox[2] > x0 - height]
        if not column:
            continue
        if row.bbox[1] - bottom > 2.2 * max(height, row.height):
            break
        segment = column[0]
        folded = segment.folded.strip()
        if not lines and _before_address(segment):
            bottom = row.bbox[3]  # registration and tax numbers, a date: the address follows
            continue
        if STOP_ADDRESS.search(folded) or find_dates(segment.text):
            break
        if lines and _not_address(segment.text):
            break  # a telephone or registration number ends the address block
        if match_labels(folded) and any(
            m.start <= 1 and m.weight >= 0.8 for m in match_labels(folded)
        ):
            break
        lines.append(segment)
        bottom = row.bbox[3]
        if len(lines) == 5:
            break
    spans = _address_spans(lines)
    if not spans:
        return None
    texts = [segment.text[start:end] for segment, start, end in spans]
    return Candidate(
        field=field,
        value=" ".join(texts),
        confidence=0.5,
        page=anchor.page,
        bbox=union([segment.span_bbox(start, end) for segment, start, end in spans]),
        evidence="\n".join(texts),
        source=source,
        order=row_index + 1,
    )


# Registration numbers as receipts print them: "(124525-H)", "(JM0352019-K)", "797887-W".
_REGISTRATION_NUMBER = re.compile(r"\(?\b[A-Z]{0,4}\d{5,}-[A-Z]{1,3}\b\)?")
_TRAILING_REGISTRATION = re.compile(
    r"\s*(?:roc|co\.?\s*reg\w*|company\s*no|reg\w*)\.?\s*no\.?\s*[:.]?\s*\(?[\w-]+\)?\s*$",
    re.IGNORECASE,
)
# A telephone number ending a line: "03-4131 8972", "+607-357.1177", "Tel: 03-7710 0302".
_TRAILING_PHONE = re.compile(
    r"\s*(?:te[l1i]\w*\s*[:.]?\s*)?\+?\(?\d{2,4}\)?[-.\s]\d{3,8}(?:[-.\s]\d{3,5})?"
    r"(?:/\d{2,5})?\b.*$",
    re.IGNORECASE,
)


def _before_address(segment: TextRun) -> bool:
    """A line printed between a name and its address: a registration or tax number, a date."""
    folded = segment.folded.strip()
    return bool(
        REGISTRATION.search(folded)
        or COMPANY_IDENTIFIERS.search(folded)
        or re.search(r"(?<![a-z])(?:gst|sst|vat|tax)\W*(?:reg|id|no)", folded)
        or _REGISTRATION_NUMBER.fullmatch(segment.text.strip())
        or find_dates(segment.text)
    )


def _address_spans(lines: list[TextRun]) -> list[tuple[TextRun, int, int]]:
    """The address part of each line. Not the address: a shop's or building's name heading
    the block (no number and no street word in it, while lines after have a number), a
    registration number before the street, a telephone or registration number after it."""
    spans = [(segment, 0, len(segment.text)) for segment in lines]
    while len(spans) > 1:
        head = spans[0][0]
        numbered_later = any(any(c.isdigit() for c in s.text) for s, _, _ in spans[1:])
        shop_name = not any(c.isdigit() for c in head.text) and not STREET_WORD.search(head.text)
        if (shop_name and numbered_later) or _before_address(head):
            spans.pop(0)
        else:
            break
    while spans and _not_address(spans[-1][0].text):
        spans.pop()
    if spans:
        segment, start, end = spans[0]
        found = list(_REGISTRATION_NUMBER.finditer(segment.text))
        rest = segment.text[found[-1].end() :] if found else ""
        if rest.strip(" ,.:"):
            start = len(segment.text) - len(rest.lstrip(" ,.:"))
        spans[0] = (segment, start, end)
    if spans:
        segment, start, end = spans[-1]
        text = segment.text[:end]
        for pattern in (_TRAILING_PHONE, _TRAILING_REGISTRATION):
            match = pattern.search(text, start)
            if match is not None and text[start : match.start()].strip():
                text = text[: match.start()]
        spans[-1] = (segment, start, len(text.rstrip(" ,;")))
    return [(segment, start, end) for segment, start, end in spans if end > start]


def _not_address(text: str) -> bool:
    """A line of only a telephone, tax or registration number."""
    letters = sum(c.isalpha() for c in text)
    digits = sum(c.isdigit() for c in text)
    if letters == 0 and digits >= 7:
        return True
    stripped = _TRAILING_PHONE.sub("", text).strip(" ,;:")
    return bool(digits >= 7 and not stripped) or bool(_TRAILING_REGISTRATION.fullmatch(text))


def segment_at(rows: list[Row], candidate: Candidate) -> tuple[int, TextRun] | None:
    """The row index and segment a candidate's evidence box lies in."""
    cx = (candidate.bbox[0] + candidate.bbox[2]) / 2
    cy = (candidate.bbox[1] + candidate.bbox[3]) / 2
    for index, row in enumerate(rows):
        if row.page != candidate.page or not row.bbox[1] - 1 <= cy <= row.bbox[3] + 1:
            continue
        for segment in row.segments:
            x0, y0, x1, y1 = segment.bbox
            if x0 - 1 <= cx <= x1 + 1 and y0 - 1 <= cy <= y1 + 1:
                return index, segment
    return None


def buyer_address(rows: list[Row], buyer: Candidate) -> Candidate | None:
    """The address printed under the buyer's name, in its column."""
    found = segment_at(rows, buyer)
    if found is None:
        return None
    index, segment = found
    rest = segment.text[segment.text.find(buyer.evidence) + len(buyer.evidence) :]
    rest = rest.strip(" ,;-–·|")
    if rest and any(c.isdigit() for c in rest):  # "Globex Corp, 12 Main St, Springfield"
        start = segment.text.rfind(rest)
        return Candidate(
            field="buyer_address",
            value=re.sub(r"\s*[,;·|]\s*|\s+[-–]\s+", " ", rest),
            confidence=0.5,
            page=segment.page,
            bbox=segment.span_bbox(start, start + len(rest)),
            evidence=segment.span_evidence(start, start + len(rest)),
            source="beside_buyer",
            order=index,
        )
    # the name's own box: the column starts where the name does, not where its label does
    anchor = TextRun(page=segment.page, words=segment.words_in(*_span_of(segment, buyer)))
    return address_under(rows, index, anchor, "buyer_address", "below_buyer")


def _span_of(segment: TextRun, candidate: Candidate) -> tuple[int, int]:
    start = segment.text.find(candidate.evidence)
    if start < 0:
        return 0, len(segment.text)
    return start, start + len(candidate.evidence)
