"""Amounts, dates and currencies as printed in the common locales, parsed into plain values.

Ambiguity is resolved by document-level evidence rather than guessed per token: which decimal
separator the document uses (`decimal_separator_of`), whether its numeric dates are day-first
(`date_order_of`), and which currency its symbols and codes point to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from enum import StrEnum

from mmflow.tasks.extraction.text import fold
from mmflow.tasks.identifier_checks import iban_length, iban_problem, tax_id_check
from mmflow.tasks.models import CheckStatus

# ------------------------------------------------------------------ currencies

CURRENCY_CODES: frozenset[str] = frozenset(
    [
        "EUR",
        "USD",
        "GBP",
        "INR",
        "MYR",
        "CHF",
        "PLN",
        "SGD",
        "AUD",
        "CAD",
        "JPY",
        "CNY",
        "SEK",
        "NOK",
        "DKK",
        "CZK",
        "HUF",
        "RON",
        "BGN",
        "HKD",
        "NZD",
        "ZAR",
        "BRL",
        "MXN",
        "IDR",
        "THB",
        "AED",
        "SAR",
        "KRW",
        "RUB",
        "UAH",
        "ILS",
        "VND",
    ]
)
# Prefixes and symbols; "$" alone reads as USD, the usual meaning when nothing else says.
CURRENCY_SYMBOLS: dict[str, str] = {
    "US$": "USD",
    "S$": "SGD",
    "A$": "AUD",
    "C$": "CAD",
    "CA$": "CAD",
    "HK$": "HKD",
    "NZ$": "NZD",
    "R$": "BRL",
    "€": "EUR",
    "£": "GBP",
    "₹": "INR",
    "¥": "JPY",
    "₩": "KRW",
    "₽": "RUB",
    "₪": "ILS",
    "zł": "PLN",
    "$": "USD",
}
CURRENCY_WORDS: dict[str, str] = {
    "rs": "INR",
    "rs.": "INR",
    "rupees": "INR",
    "rm": "MYR",
    "ringgit": "MYR",
    "euro": "EUR",
    "euros": "EUR",
    "dollars": "USD",
    "fr.": "CHF",
    "sfr": "CHF",
}

_SYMBOL_RE = "|".join(re.escape(s) for s in sorted(CURRENCY_SYMBOLS, key=len, reverse=True))
_CODE_RE = "|".join(sorted(CURRENCY_CODES))
_PREFIX = rf"(?:{_SYMBOL_RE}|\b(?:{_CODE_RE})\b|\bRM|\bRs\.?)"
_CURRENCY_RE = re.compile(
    rf"(?P<sym>{_SYMBOL_RE})|(?<![A-Za-z])(?P<code>[A-Z]{{3}})(?![A-Za-z])"
    r"|(?<![A-Za-z])(?P<word>RM|Rs\.?|rupees|ringgit|euros?|dollars|Fr\.|SFr)(?![A-Za-z])",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class CurrencyMention:
    code: str
    start: int
    end: int


def find_currencies(text: str) -> list[CurrencyMention]:
    """ISO codes named by symbols, codes or words in `text` (codes only in capitals)."""
    found: list[CurrencyMention] = []
    for match in _CURRENCY_RE.finditer(text):
        if match.group("sym"):
            sym = match.group("sym")
            code = CURRENCY_SYMBOLS.get(sym) or CURRENCY_SYMBOLS.get(sym.upper())
        elif match.group("code"):
            raw = match.group("code")
            code = raw if raw.isupper() and raw in CURRENCY_CODES else None
        else:
            raw = match.group("word")
            code = CURRENCY_WORDS.get(raw.lower())
            if raw.lower() in ("rm", "rs", "rs.") and not raw[0].isupper():
                code = None  # "rm" inside prose is not ringgit
        if code:
            found.append(CurrencyMention(code, match.start(), match.end()))
    return found


# A symbol shared by several currencies reads as the usual one when choosing the document's
# currency, but a value naming any of them is consistent with it.
_SHARED_SYMBOLS: dict[str, frozenset[str]] = {
    "$": frozenset({"USD", "CAD", "AUD", "NZD", "SGD", "HKD", "MXN"}),
    "dollars": frozenset({"USD", "CAD", "AUD", "NZD", "SGD", "HKD"}),
    "¥": frozenset({"JPY", "CNY"}),
    "kr": frozenset({"SEK", "NOK", "DKK"}),
}
_KRONE = re.compile(r"(?<![A-Za-z])kr\.?(?![A-Za-z])", re.IGNORECASE)


def currency_readings(text: str) -> set[str]:
    """Every ISO code `text` can name: its symbols, codes and words, shared symbols in full."""
    codes: set[str] = set()
    for mention in find_currencies(text):
        codes.add(mention.code)
        codes |= _SHARED_SYMBOLS.get(text[mention.start : mention.end].strip().lower(), set())
    if _KRONE.search(text):
        codes |= _SHARED_SYMBOLS["kr"]
    return codes


# ------------------------------------------------------------------ amounts

_AMOUNT_RE = re.compile(
    r"(?<![\w.,/:@#-])"
    rf"(?P<pre>{_PREFIX}\s?)?"
    r"(?P<sign>--?|[−–]|\()?"
    rf"(?:(?P<pre2>{_PREFIX})\s?)?"
    r"(?P<num>\d{1,3}(?:[.,'\u00a0\u202f]\d{3})+(?:[.,]\d{1,3})?"
    r"|\d{1,3}(?: \d{3})+,\d{2}"  # '1 234,56': space groups only with a decimal comma
    r"|\d{1,2}(?:,\d{2})+,\d{3}(?:\.\d{2})?"  # Indian grouping: '1,23,456.00'
    r"|\d+(?:[.,]\d{2,3})?)"
    r"(?P<close>\))?"
    rf"(?P<post>\s?(?:{_SYMBOL_RE}|(?:{_CODE_RE})\b|RM\b|-(?!\d)))?"
    r"(?P<suffix>\*|[A-Z]{1,2}\b)?"
    r"(?![\w%/:]|[.,]\d|\s?%|-\d)"
)


@dataclass(frozen=True)
class AmountMention:
    value: Decimal
    start: int
    end: int
    has_currency: bool
    has_decimals: bool


def decimal_separator_of(texts: list[str]) -> str:
    """'.' or ',': whichever separator more often ends a number with exactly two decimals."""
    dots = commas = 0
    for text in texts:
        dots += len(re.findall(r"\d\.\d{2}(?![\d.,])", text))
        commas += len(re.findall(r"\d,\d{2}(?![\d.,])", text))
    return "," if commas > dots else "."


def parse_number(raw: str, decimal_sep: str = ".") -> Decimal | None:
    """'1.234,56' / '1,234.56' / '1 234,56' / "1'234.56" / '279.84' into a Decimal."""
    text = raw.replace("\u00a0", " ").replace("\u202f", " ").replace("'", " ")
    text = text.strip()
    if not re.fullmatch(r"\d[\d., ]*", text):
        return None
    seps = [c for c in text if c in ".,"]
    if not seps:
        digits = text.replace(" ", "")
    else:
        last = seps[-1]
        head, _, tail = text.rpartition(last)
        if len(seps) == 1 and len(tail) == 3 and last != decimal_sep:
            # '1.234' in a comma-decimal document is a thousand
            digits = text.replace(last, "").replace(" ", "")
        elif len(set(seps)) == 1 and len(seps) > 1:
            digits = text.replace(last, "").replace(" ", "")  # '1.234.567'
            if len(tail) != 3:
                return None
        else:
            digits = head.replace(".", "").replace(",", "").replace(" ", "") + "." + tail
    try:
        return Decimal(digits)
    except InvalidOperation:
        return None


def find_amounts(text: str, decimal_sep: str = ".") -> list[AmountMention]:
    """Money-looking numbers in `text`: decimals, or integers with a currency beside them."""
    found: list[AmountMention] = []
    for match in _AMOUNT_RE.finditer(text):
        num = match.group("num")
        value = parse_number(num, decimal_sep)
        if value is None:
            continue
        post = (match.group("post") or "").strip()
        has_currency = bool(match.group("pre") or match.group("pre2") or (post and post != "-"))
        exponent = value.as_tuple().exponent
        has_decimals = isinstance(exponent, int) and exponent < 0
        if not has_decimals and not has_currency:
            continue
        if len(num.replace(".", "").replace(",", "").replace(" ", "")) > 12:
            continue
        sign = match.group("sign") or ""
        negative = bool(sign and sign != "(") or bool(sign == "(" and match.group("close"))
        negative = negative or post == "-"
        found.append(
            AmountMention(
                value=-value if negative else value,
                start=match.start(),
                end=match.end(),
                has_currency=has_currency,
                has_decimals=has_decimals,
            )
        )
    return found


_BARE_NUMBER = re.compile(r"(?<![\d.,])\d+(?:[.,]\d+)?(?![\d]|[.,]\d)")


def amount_readings(text: str) -> set[Decimal]:
    """Absolute values `text` can mean as an amount, under either decimal separator.

    For checking a value against its evidence, not for finding amounts: "1.234" reads as both
    1234 and 1.234, and a bare "280" or "12.5" (no currency, no two decimals) counts too.
    """
    found = {abs(m.value) for sep in (".", ",") for m in find_amounts(text, sep)}
    for match in _BARE_NUMBER.finditer(text):
        for sep in (".", ","):
            value = parse_number(match.group(), sep)
            if value is not None:
                found.add(value)
    return found


def format_amount(value: Decimal) -> str:
    """Plain decimal string with at least two decimals: Decimal('4.1') -> '4.10'."""
    quantised = (
        value.quantize(Decimal("0.01")) if value == value.quantize(Decimal("0.01")) else value
    )
    return format(quantised, "f")


# ------------------------------------------------------------------ dates


class DateOrder(StrEnum):
    DMY = "dmy"
    MDY = "mdy"


MONTHS: dict[str, int] = {}
for _number, _names in enumerate(
    [
        # English, German, French, Dutch, Spanish, Italian, Polish (nominative and genitive)
        "january jan januar janvier janv januari enero ene jänner janner gennaio gen "
        "styczen stycznia sty",
        "february feb februar fevrier fevr fev februari febrero febbraio luty lutego lut",
        "march mar marz maerz mars maart marzo marzec marca",
        "april apr avril avr abril aprile kwiecien kwietnia kwi",
        "may mai mei mayo maggio mag maj maja",
        "june jun juni juin junio giugno giu czerwiec czerwca cze",
        "july jul juli juillet juil julio luglio lug lipiec lipca lip",
        "august aug august aout augustus agosto ago sierpien sierpnia sie",
        "september sep sept septembre septiembre set settembre wrzesien wrzesnia wrz",
        "october oct oktober octobre okt octubre ottobre ott pazdziernik pazdziernika paz",
        "november nov novembre noviembre listopad listopada lis",
        "december dec dezember decembre dez diciembre dic dicembre grudzien grudnia gru",
    ],
    start=1,
):
    for _name in _names.split():
        MONTHS.setdefault(_name, _number)

_MONTH_RE = "|".join(sorted(MONTHS, key=len, reverse=True))
_DAY = r"(?P<d>[0-3]?\d)(?:st|nd|rd|th|er|e)?"
_YEAR = r"(?P<y>(?:19|20)\d{2}|\d{2})"
_DATE_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    (
        "iso",
        re.compile(r"(?<![\d.])(?P<y>(?:19|20)\d{2})[-/.](?P<m>[01]?\d)[-/.](?P<d>[0-3]?\d)(?!\d)"),
    ),
    (
        "numeric",
        re.compile(
            r"(?<![\d.,/])(?P<a>[0-3]?\d)(?P<s>[./-])(?P<b>[0-3]?\d)(?P=s)"
            + _YEAR
            + r"(?![\d,]|\.\d)"
        ),
    ),
    (
        "day_month",
        re.compile(
            rf"(?<![\w]){_DAY}\.?(?:\s*(?:de|-|/)\s*|\s+|-)(?P<mon>{_MONTH_RE})\.?"
            rf"(?:\s*(?:de|del|-|/|,)\s*|\s+|-)\s*{_YEAR}(?!\d)"
        ),
    ),
    (
        "month_day",
        re.compile(
            rf"(?<![\w])(?P<mon>{_MONTH_RE})\.?\s+{_DAY}\s*,?\s*(?P<y>(?:19|20)\d{{2}})(?!\d)"
        ),
    ),
]


@dataclass(frozen=True)
class DateMention:
    value: date
    start: int
    end: int
    numeric: bool  # printed as digits only, so the day/month order mattered


def _year(raw: str) -> int:
    year = int(raw)
    if len(raw) == 2:
        year += 2000 if year < 70 else 1900
    return year


def date_order_of(texts: list[str], currency: str | None = None) -> DateOrder:
    """Day-first unless the document proves month-first (a 13-31 in the middle) or is in USD."""
    dmy = mdy = 0
    for text in texts:
        for match in _DATE_PATTERNS[1][1].finditer(text):
            a, b = int(match.group("a")), int(match.group("b"))
            if a > 12 >= b:
                dmy += 1
            elif b > 12 >= a:
                mdy += 1
    if dmy or mdy:
        return DateOrder.DMY if dmy >= mdy else DateOrder.MDY
    return DateOrder.MDY if currency == "USD" else DateOrder.DMY


def find_dates(text: str, order: DateOrder = DateOrder.DMY) -> list[DateMention]:
    """Dates in `text`; character offsets index the text as given (folding keeps lengths)."""
    folded = fold(text)
    found: list[DateMention] = []
    taken: list[tuple[int, int]] = []
    for kind, pattern in _DATE_PATTERNS:
        for match in pattern.finditer(folded):
            if any(match.start() < e and s < match.end() for s, e in taken):
                continue
            try:
                if kind == "iso":
                    value = date(int(match["y"]), int(match["m"]), int(match["d"]))
                elif kind == "numeric":
                    a, b = int(match["a"]), int(match["b"])
                    day, month = (a, b) if order is DateOrder.DMY else (b, a)
                    if month > 12:
                        day, month = month, day
                    value = date(_year(match["y"]), month, day)
                else:
                    value = date(_year(match["y"]), MONTHS[match["mon"]], int(match["d"]))
            except ValueError:
                continue
            if not 1970 <= value.year <= 2100:
                continue
            found.append(DateMention(value, match.start(), match.end(), kind == "numeric"))
            taken.append((match.start(), match.end()))
    return sorted(found, key=lambda m: m.start)


def date_readings(text: str) -> set[date]:
    """Every date `text` can mean: numeric dates read both day-first and month-first."""
    return {m.value for order in DateOrder for m in find_dates(text, order)}


# ------------------------------------------------------------------ identifiers


@dataclass(frozen=True)
class IdentifierMention:
    """An identifier in text: `value` compact (no spaces, dots, dashes; upper case)."""

    value: str
    start: int
    end: int


_LEAD = re.compile(r"[\s:.#\-–]*")
_ID_SEPARATORS = re.compile(r"[\s.\-/]")
_ID_TOKEN_CHARS = re.compile(r"[A-Z0-9][A-Z0-9.\-/]*")
# Words printed after an ID that belong to it: Swiss "CHE-123.456.789 MWST", Norwegian "… MVA".
_ID_SUFFIXES = frozenset({"MWST", "TVA", "IVA", "MVA"})


def _compact(text: str) -> str:
    return _ID_SEPARATORS.sub("", text).upper()


def _tokens(text: str, start: int) -> list[re.Match[str]]:
    lead = _LEAD.match(text, start)
    return list(re.finditer(r"\S+", text[lead.end() if lead else start :]))


def read_tax_id(text: str, start: int = 0) -> IdentifierMention | None:
    """The VAT/tax ID that `text` starts with (after `start` and any ": "), as printed over one
    or more groups: "DE 232 446 240", "NL810433941B01", "CHE-107.787.577 MWST", "432-007-95-48".

    Upper-case letters and digits only: the first word with a lower-case letter ends it.
    """
    lead = _LEAD.match(text, start)
    offset = lead.end() if lead else start
    taken: list[tuple[int, int]] = []
    for match in re.finditer(r"\S+", text[offset:]):
        token = match.group().rstrip(",;")
        if not token or not _ID_TOKEN_CHARS.fullmatch(token):
            break
        if taken and token.isalpha() and token not in _ID_SUFFIXES:
            break  # the next word ("BIC", "REGON"), not a group of this ID
        taken.append((offset + match.start(), offset + match.start() + len(token)))
        if len(token) != len(match.group()):
            break  # "DE123456789," ends at its comma
    if not taken:
        return None
    begin, end = taken[0][0], taken[-1][1]
    value = _compact(text[begin:end])
    digits = sum(c.isdigit() for c in value)
    if not 6 <= len(value) <= 20 or digits < 5:
        return None
    return IdentifierMention(value, begin, end)


def read_iban(text: str, start: int = 0) -> IdentifierMention | None:
    """The IBAN `text` starts with (after `start` and any ": "), printed whole or in groups of
    four; groups are taken up to the length its country's IBANs have."""
    lead = _LEAD.match(text, start)
    offset = lead.end() if lead else start
    tokens = list(re.finditer(r"\S+", text[offset:]))
    if not tokens:
        return None
    first = tokens[0].group().rstrip(",;.")
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]*", first):
        return None
    expected = iban_length(first[:2]) or 34
    value, end = first, offset + tokens[0].start() + len(first)
    for match in tokens[1:]:
        token = match.group().rstrip(",;.")
        if len(value) >= expected or not re.fullmatch(r"[A-Z0-9]{1,4}", token):
            break
        if len(value) + len(token) > expected:
            break
        value += token
        end = offset + match.start() + len(token)
    if len(value) < 12:
        return None
    return IdentifierMention(value, offset + tokens[0].start(), end)


_IBAN_START = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}")


def find_ibans(text: str) -> list[IdentifierMention]:
    """Every IBAN printed in `text` that passes its checks (printed anywhere, unlabelled)."""
    found = []
    for match in _IBAN_START.finditer(text):
        mention = read_iban(text, match.start())
        if mention is not None and iban_problem(mention.value) is None:
            found.append(mention)
    return found


def read_bic(text: str, start: int = 0) -> IdentifierMention | None:
    """The BIC (SWIFT code) `text` starts with: 8 or 11 letters and digits."""
    tokens = _tokens(text, start)
    if not tokens:
        return None
    lead = _LEAD.match(text, start)
    offset = lead.end() if lead else start
    token = tokens[0].group().rstrip(",;.")
    if not re.fullmatch(r"[A-Z]{6}[A-Z0-9]{2}(?:[A-Z0-9]{3})?", token):
        return None
    begin = offset + tokens[0].start()
    return IdentifierMention(token, begin, begin + len(token))


_VAT_START = re.compile(r"(?<![A-Za-z0-9])(?:CHE|ATU|[A-Z]{2})(?=[\s.\-]?\d)")


def find_vat_ids(text: str) -> list[IdentifierMention]:
    """VAT numbers printed with their country prefix that pass their country's check digits
    (EU, GB, CH, NO): found even without a label ("NL810433941B01" alone in a footer)."""
    found = []
    for match in _VAT_START.finditer(text):
        mention = read_tax_id(text, match.start())
        if mention is None:
            continue
        if (
            tax_id_check("vat", mention.value).status is CheckStatus.PASS
            and mention.value[:2].isalpha()
        ):
            found.append(mention)
    return found
