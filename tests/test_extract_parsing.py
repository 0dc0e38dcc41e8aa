"""Amounts, dates and currencies in the locale formats invoices print them in."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from mmflow.tasks.extraction.parsing import (
    DateOrder,
    date_order_of,
    decimal_separator_of,
    find_amounts,
    find_currencies,
    find_dates,
    format_amount,
    parse_number,
)
from mmflow.tasks.extraction.text import fold


@pytest.mark.parametrize(
    ("raw", "sep", "expected"),
    [
        ("1.234,56", ",", "1234.56"),  # German, Dutch, Spanish
        ("1,234.56", ".", "1234.56"),  # English
        ("1 234,56", ",", "1234.56"),  # French
        ("1'234.56", ".", "1234.56"),  # Swiss
        ("279.84", ".", "279.84"),
        ("45,93", ",", "45.93"),
        ("2.321", ",", "2321"),  # a thousand in a comma-decimal document
        ("9.000", ".", "9.000"),  # three decimals in a dot-decimal receipt
        ("1.234.567", ",", "1234567"),
        ("1,23,456.00", ".", "123456.00"),  # Indian lakh grouping
    ],
)
def test_parse_number_reads_locale_separators(raw: str, sep: str, expected: str) -> None:
    assert parse_number(raw, sep) == Decimal(expected)


@pytest.mark.parametrize(
    ("text", "sep", "expected"),
    [
        ("Total $4.11", ".", ["4.11"]),
        ("€ 2.321,00", ",", ["2321.00"]),
        ("Total TTC : 1 481,47 €", ",", ["1481.47"]),
        ("Gesamtbetrag 1.826,13 EUR", ",", ["1826.13"]),
        ("Rs 1939", ".", ["1939"]),  # an integer counts when a currency stands beside it
        ("RM9.75", ".", ["9.75"]),
        ("€ -9,32", ",", ["-9.32"]),
        ("(12.50)", ".", ["-12.50"]),
        ("55.10*", ".", ["55.10"]),
        ("₹ 1,23,456.00", ".", ["123456.00"]),
    ],
)
def test_find_amounts_reads_money_in_context(text: str, sep: str, expected: list[str]) -> None:
    assert [str(m.value) for m in find_amounts(text, sep)] == expected


@pytest.mark.parametrize(
    "text",
    ["15.00%", "21 %", "01.05.14-31.05.14", "Tel:03-3271 9872", "8:13:39", "UStId DE 232 446 240"],
)
def test_find_amounts_ignores_percentages_dates_phones_and_ids(text: str) -> None:
    assert find_amounts(text, ".") == []


def test_find_amounts_does_not_join_separate_quantity_and_price() -> None:
    assert [str(m.value) for m in find_amounts("1 278.61", ".")] == ["278.61"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("August 3 , 2014", date(2014, 8, 3)),  # English, month first
        ("Jan 1, 2022", date(2022, 1, 1)),
        ("20 March 2023", date(2023, 3, 20)),
        ("3rd March 2023", date(2023, 3, 3)),
        ("7. Mai 2014", date(2014, 5, 7)),  # German
        ("20. März 2023", date(2023, 3, 20)),
        ("02 Juillet 2015", date(2015, 7, 2)),  # French
        ("1er août 2023", date(2023, 8, 1)),
        ("20 mars 2023", date(2023, 3, 20)),
        ("19 april 2014", date(2014, 4, 19)),  # Dutch
        ("29 maart 2014", date(2014, 3, 29)),
        ("20 de marzo de 2023", date(2023, 3, 20)),  # Spanish
        ("5 de diciembre de 2022", date(2022, 12, 5)),
        ("2023-03-20", date(2023, 3, 20)),  # ISO
        ("20-Mar-2023", date(2023, 3, 20)),
        ("25 MAY 2017", date(2017, 5, 25)),
    ],
)
def test_find_dates_reads_written_months_in_five_languages(text: str, expected: date) -> None:
    assert [m.value for m in find_dates(text)] == [expected]


def test_numeric_dates_follow_the_document_order() -> None:
    assert find_dates("03/12/2023", DateOrder.DMY)[0].value == date(2023, 12, 3)
    assert find_dates("03/12/2023", DateOrder.MDY)[0].value == date(2023, 3, 12)


def test_a_day_above_twelve_fixes_the_order_whatever_the_hint() -> None:
    assert find_dates("03/20/2023", DateOrder.DMY)[0].value == date(2023, 3, 20)
    assert find_dates("20.03.2023", DateOrder.MDY)[0].value == date(2023, 3, 20)


def test_date_order_comes_from_other_dates_on_the_page() -> None:
    assert date_order_of(["Invoice 03/12/2023", "Due 03/28/2023"]) is DateOrder.MDY
    assert date_order_of(["Datum 03.12.2023", "Fällig 28.12.2023"]) is DateOrder.DMY


def test_date_order_falls_back_to_month_first_only_for_dollars() -> None:
    assert date_order_of(["03/12/2023"], "USD") is DateOrder.MDY
    assert date_order_of(["03/12/2023"], "EUR") is DateOrder.DMY


def test_two_digit_years_and_times_beside_dates() -> None:
    assert find_dates("01/03/18 19:14")[0].value == date(2018, 3, 1)
    assert find_dates("Date:15/01/2018")[0].value == date(2018, 1, 15)


def test_decimal_separator_is_the_one_that_ends_amounts() -> None:
    assert decimal_separator_of(["€ 1.234,56", "19,99"]) == ","
    assert decimal_separator_of(["$1,234.56", "19.99"]) == "."


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("29.99 €", "EUR"),
        ("Total EUR 34,73", "EUR"),
        ("$4.11", "USD"),
        ("£ 12.00", "GBP"),
        ("₹ 500", "INR"),
        ("Rs 1939", "INR"),
        ("RM9.75", "MYR"),
        ("CHF 120.00", "CHF"),
        ("316,83 PLN", "PLN"),
        ("US$ 20.00", "USD"),
    ],
)
def test_find_currencies_reads_symbols_codes_and_words(text: str, code: str) -> None:
    assert [m.code for m in find_currencies(text)][:1] == [code]


def test_find_currencies_skips_lowercase_and_non_currency_capitals() -> None:
    assert find_currencies("confirm the TAX and ALL items") == []


def test_format_amount_keeps_two_decimals() -> None:
    assert format_amount(Decimal("4.1")) == "4.10"
    assert format_amount(Decimal("1939")) == "1939.00"
    assert format_amount(Decimal("9.000")) == "9.00"


def test_fold_keeps_length_so_offsets_map_back() -> None:
    text = "Fällig: 20. März — Facture n° 12"
    assert len(fold(text)) == len(text)
    assert fold(text).startswith("fallig")
    assert "facture no 12" in fold(text)
