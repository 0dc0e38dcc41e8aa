"""Identifier checks: bank and tax identifiers tested offline by their own published rules.

A misread digit in an IBAN sends money to the wrong account, and a tax ID that fails its check
digits is a reason to look twice at a supplier; both rules are public and cost nothing to run.
Each identifier the extractor reported gets one check, `pass` or `fail` with the reason (or
`skipped` when no published rule applies to it). The value itself is never changed: a failed
identifier is reported as printed, so a person can see what the page says.

Rules, through python-stdnum (LGPL) and pycountry's ISO 4217 table:
- IBAN (ISO 13616): a country that uses IBANs, its length, its account-part format, then the
  mod-97 check digits and any national check digits;
- BIC (ISO 9362): 4 letters of bank, 2 of country, 2 of location, optionally 3 of branch;
- VAT and tax IDs by country prefix: the EU member states (with `EL` for Greece and `XI` for
  Northern Ireland), GB, CH (CHE…), NO (…MVA) and AU (an 11-digit ABN), with check digits
  wherever the scheme publishes them; India's GSTIN when printed as one;
- currency: an ISO 4217 alphabetic code.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pycountry
from stdnum import bic as stdnum_bic
from stdnum import iban as stdnum_iban
from stdnum import numdb
from stdnum.au import abn as au_abn
from stdnum.ch import vat as ch_vat
from stdnum.eu import vat as eu_vat
from stdnum.exceptions import ValidationError
from stdnum.gb import vat as gb_vat
from stdnum.in_ import gstin as in_gstin
from stdnum.no import mva as no_mva

from mmflow.tasks.models import Check, CheckStatus, Extraction

TAX_ID_FIELDS = ("issuer_tax_id", "buyer_tax_id")

_EU_PREFIXES = frozenset(p.upper() for p in eu_vat.MEMBER_STATES) | {"EL", "XI"}
_SEPARATORS = re.compile(r"[\s.\-/]")


def compact_identifier(text: str) -> str:
    """Upper case without spaces, dots, dashes or slashes: "DE 281 447 305" → "DE281447305"."""
    return _SEPARATORS.sub("", text).upper()


def _why(error: ValidationError) -> str:
    reasons = {
        "InvalidChecksum": "its check digits do not match",
        "InvalidLength": "it has the wrong length",
        "InvalidFormat": "it has the wrong format",
        "InvalidComponent": "a part of it is not valid",
    }
    return reasons.get(type(error).__name__, str(error))


def _bban_length(structure: str) -> int:
    """The account part's length from the IBAN registry's structure ("8!n10!n" → 18)."""
    return sum(int(n) for n in re.findall(r"(\d+)!?[nace]", structure))


def iban_length(country: str) -> int | None:
    """How many characters the IBANs of `country` have; None where it does not use IBANs."""
    info = numdb.get("iban").info(f"{country.upper()}00")[0][1]
    return 4 + _bban_length(info.get("bban", "")) if info else None


def iban_problem(value: str) -> str | None:
    """None for a valid IBAN; else why not, in the order a person would check it."""
    number = compact_identifier(value)
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]+", number):
        return "an IBAN is two letters, two check digits and the account part"
    country = number[:2]
    info = numdb.get("iban").info(number)[0][1]
    if not info:
        return f"country code {country} does not use IBANs"
    expected = 4 + _bban_length(info.get("bban", ""))
    if len(number) != expected:
        return f"an IBAN of {country} has {expected} characters, this one {len(number)}"
    try:
        stdnum_iban.validate(number)
    except ValidationError as error:
        if type(error).__name__ == "InvalidChecksum":
            return "its check digits do not match (ISO 7064 mod 97-10)"
        return f"the account part is not valid for {country}: {_why(error)}"
    return None


def bic_problem(value: str) -> str | None:
    number = compact_identifier(value)
    try:
        stdnum_bic.validate(number)
    except ValidationError:
        return "a BIC is 4 letters (bank), 2 (country), 2 letters or digits, optionally 3 more"
    if pycountry.countries.get(alpha_2=number[4:6]) is None:
        return f"{number[4:6]} is not a country code"
    return None


def _tax_scheme(number: str) -> tuple[str, Callable[[str], object]] | None:
    """The scheme a compact tax ID belongs to, by its prefix (or shape, for an ABN/GSTIN)."""
    prefix = number[:2]
    if number.startswith("CHE"):
        return "Swiss UID (CHE)", ch_vat.validate
    if prefix == "GB":
        return "UK VAT number", gb_vat.validate
    if prefix == "NO":
        return "Norwegian MVA number", no_mva.validate
    if prefix in _EU_PREFIXES:
        return f"EU VAT number of {prefix}", eu_vat.validate
    if re.fullmatch(r"\d{11}", number):
        return "Australian ABN", au_abn.validate
    if re.fullmatch(r"\d{2}[A-Z]{5}\d{4}[A-Z][1-9A-Z]Z[0-9A-Z]", number):
        return "Indian GSTIN", in_gstin.validate
    return None


def tax_id_check(field: str, value: str) -> Check:
    number = compact_identifier(value)
    scheme = _tax_scheme(number)
    name = f"identifier:{field}"
    if scheme is None:
        return Check(
            name=name,
            status=CheckStatus.SKIPPED,
            detail=f"{value!r}: no published format known for it (no EU, GB, CH, NO or AU form)",
        )
    label, validate = scheme
    try:
        validate(number)
    except ValidationError as error:
        return Check(
            name=name,
            status=CheckStatus.FAIL,
            detail=f"{value!r} is not a valid {label}: {_why(error)}",
        )
    return Check(name=name, status=CheckStatus.PASS, detail=f"{value!r} is a valid {label}")


def _graded(name: str, value: str, problem: str | None, what: str) -> Check:
    if problem is None:
        return Check(name=name, status=CheckStatus.PASS, detail=f"{value!r} is a valid {what}")
    return Check(name=name, status=CheckStatus.FAIL, detail=f"{value!r}: {problem}")


def currency_problem(value: str) -> str | None:
    if pycountry.currencies.get(alpha_3=value.upper()) is None:
        return "not an ISO 4217 currency code"
    return None


def identifier_checks(extraction: Extraction) -> list[Check]:
    """One check per identifier the extraction holds; absent ones are not checked."""
    fields = extraction.fields
    checks: list[Check] = []
    iban = fields.get("iban")
    if iban is not None and iban.value:
        checks.append(_graded("identifier:iban", iban.value, iban_problem(iban.value), "IBAN"))
    bic = fields.get("bic")
    if bic is not None and bic.value:
        checks.append(_graded("identifier:bic", bic.value, bic_problem(bic.value), "BIC"))
    for field in TAX_ID_FIELDS:
        tax_id = fields.get(field)
        if tax_id is not None and tax_id.value:
            checks.append(tax_id_check(field, tax_id.value))
    currency = fields.get("currency")
    if currency is not None and currency.value:
        checks.append(
            _graded(
                "identifier:currency",
                currency.value,
                currency_problem(currency.value),
                "ISO 4217 currency",
            )
        )
    return checks
