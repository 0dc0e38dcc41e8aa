"""Verify: every extracted value must be grounded in the page it claims to come from.

A value is grounded when its evidence text is found among the page's words near the evidence
box, and the value agrees with that evidence once both are normalised ("279.84" and "279,84 €",
"2023-03-20" and "20/03/2023", "EUR" and "€"). Ungrounded values keep their value — verify
never edits data — but lose confidence and get a check naming the field, so a reviewer knows
which numbers to look at. The line items must also pass the table's pandera schema.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from datetime import date
from decimal import Decimal, InvalidOperation

from tasks.models import (
    AMOUNT_FIELDS,
    DATE_FIELDS,
    BBox,
    Check,
    CheckStatus,
    DocumentText,
    Extraction,
    FieldValue,
    LineItem,
    PageText,
)
from tasks.schemas import line_items_problems

UNGROUNDED_FACTOR = 0.3
"""Confidence multiplier when the evidence is missing, not on the page, or contradicts the value."""
MISPLACED_FACTOR = 0.6
"""Confidence multiplier when the evidence is on the page but not where its box says."""
LINE_AMOUNT = "line_amount"


# ---------------------------------------------------------------- text normalisation


def _plain(text: str) -> str:
    """Casefolded, accent-free, NFKC text with single spaces: the form comparisons use."""
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text))
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(text.casefold().split())


def _squash(text: str) -> str:
    return "".join(_plain(text).split())


def _alnum(text: str) -> str:
    return "".join(c for c in _plain(text) if c.isalnum())


# ---------------------------------------------------------------- amounts

_NUMBER = re.compile(r"\d[\d.,'’]*\d|\d")
_SPACED_THOUSANDS = re.compile(r"\d{1,3}(?:[ \u00a0\u202f]\d{3})+(?:[.,]\d{1,2})?")


def _number_readings(token: str) -> set[Decimal]:
    """Every decimal a printed number can mean: "1.234" is 1234 (German) or 1.234 (English)."""
    token = token.replace("'", "").replace("’", "")
    readings: set[str] = set()
    if "," in token and "." in token:
        decimal_sep = "," if token.rfind(",") > token.rfind(".") else "."
        thousands = "." if decimal_sep == "," else ","
        readings.add(token.replace(thousands, "").replace(decimal_sep, "."))
    elif "," in token or "." in token:
        sep = "," if "," in token else "."
        head, _, tail = token.rpartition(sep)
        if token.count(sep) > 1:
            readings.add(token.replace(sep, ""))  # 1.234.567: thousands only
            readings.add(head.replace(sep, "") + "." + tail)
        elif len(tail) == 3:
            readings.add(head + tail)  # ambiguous: thousands...
            readings.add(head + "." + tail)  # ...or three decimals
        else:
            readings.add(head + "." + tail)
    else:
        readings.add(token)
    values = set()
    for reading in readings:
        try:
            values.add(Decimal(reading))
        except InvalidOperation:
            continue
    return values


def amount_candidates(text: str) -> set[Decimal]:
    """Absolute values of the amounts printed in `text`, under every plausible locale."""
    found: set[Decimal] = set()
    for match in _NUMBER.finditer(text):
        found |= _number_readings(match.group())
    for match in _SPACED_THOUSANDS.finditer(text):
        joined = re.sub(r"[ \u00a0\u202f]", "", match.group())
        found |= _number_readings(joined)
    return {abs(v) for v in found}


# ---------------------------------------------------------------- dates

_MONTH_NAMES: dict[int, tuple[str, ...]] = {
    1: ("january", "januar", "janvier", "januari", "enero", "jan", "ene", "jänner", "janner"),
    2: ("february", "februar", "fevrier", "februari", "febrero", "feb", "fev", "fevr"),
    3: ("march", "marz", "maerz", "mars", "maart", "marzo", "mar", "mrz", "mrt"),
    4: ("april", "avril", "abril", "apr", "avr", "abr"),
    5: ("may", "mai", "mei", "mayo", "may"),
    6: ("june", "juni", "juin", "junio", "jun"),
    7: ("july", "juli", "juillet", "julio", "jul", "juil"),
    8: ("august", "aout", "augustus", "agosto", "aug", "ago"),
    9: ("september", "septembre", "septiembre", "setiembre", "sep", "sept", "set"),
    10: ("october", "oktober", "octobre", "octubre", "oct", "okt"),
    11: ("november", "novembre", "noviembre", "nov"),
    12: ("december", "dezember", "decembre", "diciembre", "dec", "dez", "dic"),
}
_MONTHS = {name: number for number, names in _MONTH_NAMES.items() for name in names}
_ISO_DATE = re.compile(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})")
_NUMERIC_DATE = re.compile(r"(?<!\d)(\d{1,2})[-/.](\d{1,2})[-/.](\d{4}|\d{2})(?!\d)")
_DAY_MONTH_YEAR = re.compile(
    r"(?<!\d)(\d{1,2})(?:st|nd|rd|th|er|\.)?\s*(?:de\s+)?([a-z]+)\.?,?\s*(?:de\s+)?(\d{4}|\d{2})(?!\d)"
)
_MONTH_DAY_YEAR = re.compile(r"([a-z]+)\.?\s*(\d{1,2})(?:st|nd|rd|th)?,?\s*(\d{4})(?!\d)")


def _year(text: str) -> int:
    value = int(text)
    if len(text) == 2:
        return 2000 + value if value < 70 else 1900 + value
    return value


def _make_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def date_candidates(text: str) -> set[date]:
    """Dates `text` can mean: ISO, D/M/Y and M/D/Y, and month names in EN/DE/FR/NL/ES."""
    plain = _plain(text)
    found: list[date | None] = []
    for y, m, d in _ISO_DATE.findall(plain):
        found.append(_make_date(int(y), int(m), int(d)))
    for a, b, y in _NUMERIC_DATE.findall(plain):
        found.append(_make_date(_year(y), int(b), int(a)))  # day first
        found.append(_make_date(_year(y), int(a), int(b)))  # month first
    for d, month, y in _DAY_MONTH_YEAR.findall(plain):
        if month in _MONTHS:
            found.append(_make_date(_year(y), _MONTHS[month], int(d)))
    for month, d, y in _MONTH_DAY_YEAR.findall(plain):
        if month in _MONTHS:
            found.append(_make_date(int(y), _MONTHS[month], int(d)))
    return {d for d in found if d is not None}


# ---------------------------------------------------------------- currencies

_ISO_CURRENCY_LIST = (
    "EUR USD GBP CHF JPY CNY INR MYR SGD AUD CAD NZD SEK NOK DKK PLN CZK HUF RON BGN TRY "
    "RUB BRL MXN ZAR HKD KRW IDR THB PHP VND AED SAR ILS"
)
_ISO_CURRENCIES = frozenset(_ISO_CURRENCY_LIST.split())
_CURRENCY_MARKS: dict[str, frozenset[str]] = {
    "€": frozenset({"EUR"}),
    "£": frozenset({"GBP"}),
    "$": frozenset({"USD", "CAD", "AUD", "NZD", "SGD", "HKD", "MXN"}),
    "¥": frozenset({"JPY", "CNY"}),
    "₹": frozenset({"INR"}),
    "₩": frozenset({"KRW"}),
    "₺": frozenset({"TRY"}),
    "₽": frozenset({"RUB"}),
    "zł": frozenset({"PLN"}),
}
_CURRENCY_WORDS: dict[str, frozenset[str]] = {
    "euro": frozenset({"EUR"}),
    "euros": frozenset({"EUR"}),
    "eur": frozenset({"EUR"}),
    "dollar": frozenset({"USD", "CAD", "AUD", "NZD", "SGD", "HKD"}),
    "dollars": frozenset({"USD", "CAD", "AUD", "NZD", "SGD", "HKD"}),
    "rs": frozenset({"INR"}),
    "rupees": frozenset({"INR"}),
    "rm": frozenset({"MYR"}),
    "ringgit": frozenset({"MYR"}),
    "kr": frozenset({"SEK", "NOK", "DKK"}),
    "fr": frozenset({"CHF"}),
    "pounds": frozenset({"GBP"}),
}


def currency_candidates(text: str) -> set[str]:
    """ISO 4217 codes that `text` names by upper-case code, symbol or word."""
    codes = {
        token
        for token in re.findall(r"(?<![A-Za-z])[A-Z]{3}(?![A-Za-z])", text)
        if token in _ISO_CURRENCIES
    }
    for mark, options in _CURRENCY_MARKS.items():
        if mark in text:
            codes |= options
    for word in re.findall(r"[a-z]+", _plain(text)):
        codes |= _CURRENCY_WORDS.get(word, frozenset())
    return codes


# ---------------------------------------------------------------- grounding


def _near(box: BBox, page: PageText) -> list[str]:
    """Words (in the page's reading order) that touch the box grown by a small margin."""
    x0, y0, x1, y1 = box
    margin_y = max(y1 - y0, page.height * 0.01)
    margin_x = max(page.width * 0.02, margin_y)
    gx0, gy0, gx1, gy1 = x0 - margin_x, y0 - margin_y, x1 + margin_x, y1 + margin_y
    return [
        w.text
        for w in page.words
        if w.bbox[0] <= gx1 and w.bbox[2] >= gx0 and w.bbox[1] <= gy1 and w.bbox[3] >= gy0
    ]


def _contains(haystack: list[str], evidence: str) -> bool:
    """Evidence appears in the words, ignoring spacing, or every evidence token is among them."""
    if not haystack:
        return False
    needle = _squash(evidence)
    if needle and needle in _squash(" ".join(haystack)):
        return True
    wanted = Counter(_plain(evidence).split())
    have = Counter(token for word in haystack for token in _plain(word).split())
    return bool(wanted) and not (wanted - have)


def value_agrees(kind: str, value: str, evidence: str) -> str | None:
    """None when `value` is what `evidence` says; otherwise why it is not.

    `kind` is a field name of FIELD_NAMES, or LINE_AMOUNT for a line item's amount.
    """
    if kind in AMOUNT_FIELDS or kind == LINE_AMOUNT:
        try:
            amount = Decimal(value)
        except InvalidOperation:
            return f"value {value!r} is not a decimal amount"
        if abs(amount) not in amount_candidates(evidence):
            return f"value {value} is not the amount in the evidence {evidence!r}"
        return None
    if kind in DATE_FIELDS:
        try:
            day = date.fromisoformat(value)
        except ValueError:
            return f"value {value!r} is not an ISO 8601 date"
        if day not in date_candidates(evidence):
            return f"value {value} is not a date the evidence {evidence!r} can mean"
        return None
    if kind == "currency":
        if value.upper() not in currency_candidates(evidence):
            return f"value {value} is not named in the evidence {evidence!r}"
        return None
    wanted = _alnum(value)
    if wanted and wanted in _alnum(evidence):
        return None
    tokens = _plain(value).split()
    present = sum(_alnum(t) in _alnum(evidence) for t in tokens if _alnum(t))
    if tokens and present / len(tokens) >= 0.8:
        return None
    return f"value {value!r} does not appear in the evidence {evidence!r}"


def _ground(
    kind: str,
    label: str,
    value: str,
    evidence: str | None,
    page_number: int | None,
    box: BBox | None,
    pages: dict[int, PageText],
) -> tuple[CheckStatus, float, str]:
    """(status, confidence factor, detail) of one value against the page text."""
    if not evidence or page_number is None or box is None:
        missing = [
            n for n, v in (("evidence", evidence), ("page", page_number), ("bbox", box)) if not v
        ]
        return CheckStatus.FAIL, UNGROUNDED_FACTOR, f"{label}: no {', '.join(missing)} recorded"
    page = pages.get(page_number)
    if page is None:
        return CheckStatus.FAIL, UNGROUNDED_FACTOR, f"{label}: page {page_number} has no text"
    disagreement = value_agrees(kind, value, evidence)
    if disagreement is not None:
        return CheckStatus.FAIL, UNGROUNDED_FACTOR, f"{label}: {disagreement}"
    if _contains(_near(box, page), evidence):
        return CheckStatus.PASS, 1.0, f"{label}: {evidence!r} found on page {page_number}"
    if _contains([w.text for w in page.words], evidence):
        return (
            CheckStatus.WARN,
            MISPLACED_FACTOR,
            f"{label}: {evidence!r} is on page {page_number} but not at the recorded box",
        )
    return (
        CheckStatus.FAIL,
        UNGROUNDED_FACTOR,
        f"{label}: {evidence!r} not found on page {page_number}",
    )


def _ground_line_items(
    items: list[LineItem], pages: dict[int, PageText]
) -> tuple[list[LineItem], Check]:
    """Each line's evidence must be on its page and hold its amount (or its description)."""
    if not items:
        return [], Check(
            name="grounding:line_items", status=CheckStatus.SKIPPED, detail="no line items"
        )
    grounded: list[LineItem] = []
    failures: list[str] = []
    for number, item in enumerate(items, start=1):
        if item.amount is not None:
            kind, value = LINE_AMOUNT, str(item.amount)
        else:
            kind, value = "description", item.description
        status, factor, detail = _ground(
            kind, f"line {number}", value, item.evidence, item.page, item.bbox, pages
        )
        if status is not CheckStatus.PASS:
            failures.append(detail)
        grounded.append(item.model_copy(update={"confidence": item.confidence * factor}, deep=True))
    if not failures:
        status = CheckStatus.PASS
    elif len(failures) * 2 <= len(items):
        status = CheckStatus.WARN
    else:
        status = CheckStatus.FAIL
    detail = f"{len(items) - len(failures)} of {len(items)} line items grounded"
    if failures:
        detail += ": " + "; ".join(failures)
    return grounded, Check(name="grounding:line_items", status=status, detail=detail)


def verify_extraction(extraction: Extraction, text: DocumentText) -> tuple[Extraction, list[Check]]:
    """A new Extraction with confidences adjusted by grounding, and the checks that say why."""
    pages = {page.page: page for page in text.pages}
    checks: list[Check] = []
    fields: dict[str, FieldValue] = {}
    for name, field in extraction.fields.items():
        if field.value is None:
            fields[name] = field.model_copy(deep=True)
            continue
        status, factor, detail = _ground(
            name, name, field.value, field.evidence, field.page, field.bbox, pages
        )
        fields[name] = field.model_copy(update={"confidence": field.confidence * factor}, deep=True)
        checks.append(Check(name=f"grounding:{name}", status=status, detail=detail))
    items, items_check = _ground_line_items(extraction.line_items, pages)
    checks.append(items_check)
    problems = line_items_problems(extraction.line_items)
    if not extraction.line_items:
        schema_check = Check(
            name="line_items_schema", status=CheckStatus.SKIPPED, detail="no line items"
        )
    elif problems:
        schema_check = Check(
            name="line_items_schema", status=CheckStatus.FAIL, detail="; ".join(problems)
        )
    else:
        schema_check = Check(
            name="line_items_schema",
            status=CheckStatus.PASS,
            detail=f"{len(extraction.line_items)} rows valid",
        )
    checks.append(schema_check)
    return Extraction(fields=fields, line_items=items), checks
