"""Bank and tax identifiers checked offline by their published rules, never corrected."""

from __future__ import annotations

import pytest

from mmflow.tasks.identifier_checks import (
    bic_problem,
    currency_problem,
    iban_problem,
    identifier_checks,
    tax_id_check,
)
from mmflow.tasks.models import CheckStatus, Extraction, FieldValue


@pytest.mark.parametrize(
    "iban", ["DE89 3704 0044 0532 0130 00", "NL50INGB0683251309", "GB82WEST12345698765432"]
)
def test_valid_ibans_pass(iban: str) -> None:
    assert iban_problem(iban) is None


@pytest.mark.parametrize(
    ("iban", "reason"),
    [
        ("DE89 3704 0044 0532 0130 01", "check digits"),
        ("DE89 3704 0044 0532 0130 0", "22 characters"),
        ("US1234567890", "does not use IBANs"),
        ("1234", "two letters"),
    ],
)
def test_invalid_ibans_fail_with_the_reason(iban: str, reason: str) -> None:
    problem = iban_problem(iban)
    assert problem is not None and reason in problem


def test_bic_shape_and_country_are_checked() -> None:
    assert bic_problem("INGBNL2A") is None
    assert bic_problem("COBADEFFXXX") is None
    assert bic_problem("COBA1EFF") is not None


@pytest.mark.parametrize(
    ("value", "status"),
    [
        ("DE 232 446 240", CheckStatus.PASS),  # EU member state, check digit
        ("DE 232 446 241", CheckStatus.FAIL),
        ("NL810433941B01", CheckStatus.PASS),
        ("FR60421938861", CheckStatus.PASS),
        ("GB980780684", CheckStatus.PASS),
        ("CHE-107.787.577 MWST", CheckStatus.PASS),
        ("NO 995 525 828 MVA", CheckStatus.PASS),
        ("83 914 571 673", CheckStatus.PASS),  # Australian ABN
        ("83 914 571 674", CheckStatus.FAIL),
        ("000306020352", CheckStatus.SKIPPED),  # no published scheme to test it against
    ],
)
def test_tax_ids_are_checked_by_country_prefix(value: str, status: CheckStatus) -> None:
    assert tax_id_check("issuer_tax_id", value).status is status


def test_failed_identifiers_are_reported_not_corrected() -> None:
    fields = {
        "iban": FieldValue(value="DE89370400440532013001"),
        "issuer_tax_id": FieldValue(value="DE232446241"),
        "currency": FieldValue(value="EUR"),
    }
    extraction = Extraction(fields=fields)
    checks = {c.name: c for c in identifier_checks(extraction)}
    assert checks["identifier:iban"].status is CheckStatus.FAIL
    assert "DE89370400440532013001" in checks["identifier:iban"].detail
    assert checks["identifier:issuer_tax_id"].status is CheckStatus.FAIL
    assert checks["identifier:currency"].status is CheckStatus.PASS
    assert extraction.fields["iban"].value == "DE89370400440532013001"


def test_currency_must_be_an_iso_4217_code() -> None:
    assert currency_problem("EUR") is None
    assert currency_problem("RMB") is not None
