"""The rules of the line-items table (`line_items.parquet`), in plain Python, stated once.

Every column has a rule: may it be empty, and what must a present value satisfy. Two things
apply them:
- `verify` checks each document's items against them (`row_problems`), and the table is
  written from rows that pass (tasks/line_items_table.py), both without pandera: importing
  it costs a few hundred milliseconds per command, which a one-document run of the CLI should
  not pay (docs/performance.md);
- tasks/schemas.py builds the pandera schema of the table as a pandas DataFrame from these
  same rules, so the two cannot drift apart (tests/test_line_item_rules.py checks they agree).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Literal

from mmflow.tasks.models import DocumentType, LineItem

SHA256_PATTERN = r"^[0-9a-f]{64}$"
CURRENCY_PATTERN = r"^[A-Z]{3}$"
NUMBER_COLUMNS = ("quantity", "unit_price", "amount")
DECIMAL_PRECISION, DECIMAL_SCALE = 24, 6  # Arrow's decimal128(24, 6): exact money, six places
_SCALE = Decimal(1).scaleb(-DECIMAL_SCALE)

Kind = Literal["string", "int", "decimal", "float"]


@dataclass(frozen=True)
class ColumnRule:
    """One column: its kind, whether it may be empty, and what a present value must satisfy."""

    name: str
    kind: Kind
    nullable: bool = False
    test: Callable[[Any], bool] | None = None
    error: str = ""  # what `test` asks, said as a reader would: "must be at least 1"


def _at_least_one(value: Any) -> bool:
    return bool(value >= 1)


def _matches(pattern: str) -> Callable[[Any], bool]:
    compiled = re.compile(pattern)
    return lambda value: compiled.match(str(value)) is not None


def _not_blank(value: Any) -> bool:
    return bool(str(value).strip())


_DECIMAL_LIMIT = Decimal(10) ** (DECIMAL_PRECISION - DECIMAL_SCALE)


def _fits(value: Any) -> bool:
    """Within decimal128(24, 6): a larger number (a hostile or garbled page) cannot be stored,
    and must leave its document out of the table, not stop the table of every other one."""
    return bool(abs(value) < _DECIMAL_LIMIT)


def _share(value: Any) -> bool:
    return bool(0.0 <= value <= 1.0)


_DOCUMENT_TYPES = frozenset(t.value for t in DocumentType)

ROW_RULES: tuple[ColumnRule, ...] = (
    ColumnRule("line_no", "int", test=_at_least_one, error="must be at least 1"),
    ColumnRule("page", "int", nullable=True, test=_at_least_one, error="must be at least 1"),
    ColumnRule("description", "string", test=_not_blank, error="must not be blank"),
    *(
        ColumnRule(column, "decimal", nullable=True, test=_fits, error="must be below 10^18")
        for column in NUMBER_COLUMNS
    ),
    ColumnRule("evidence", "string", nullable=True),
    ColumnRule("confidence", "float", test=_share, error="must be between 0 and 1"),
)
"""The columns that describe the items themselves (what verify can check)."""

DOCUMENT_RULES: tuple[ColumnRule, ...] = (
    ColumnRule("sha256", "string", test=_matches(SHA256_PATTERN), error="must be a sha256"),
    ColumnRule("uri", "string", test=_not_blank, error="must not be empty"),
    ColumnRule("document", "int", test=_at_least_one, error="must be at least 1"),
    ColumnRule(
        "document_type",
        "string",
        nullable=True,
        test=lambda value: value in _DOCUMENT_TYPES,
        error="must be one of " + ", ".join(sorted(_DOCUMENT_TYPES)),
    ),
    ColumnRule(
        "currency",
        "string",
        nullable=True,
        test=_matches(CURRENCY_PATTERN),
        error="must be three capital letters",
    ),
)
"""The columns that say which document of which input a row belongs to."""

TABLE_RULES: tuple[ColumnRule, ...] = (*DOCUMENT_RULES, *ROW_RULES)
"""Every column of `line_items.parquet`, in order."""


def exact(value: Decimal | None) -> Decimal | None:
    """`value` with at most six decimal places (more only a model could produce)."""
    if value is None:
        return None
    exponent = value.as_tuple().exponent
    fine = isinstance(exponent, int) and exponent >= -DECIMAL_SCALE
    return value if fine else value.quantize(_SCALE, ROUND_HALF_EVEN)


def item_rows(items: Sequence[LineItem]) -> list[dict[str, Any]]:
    """The row columns of `items`, numbered from 1, as the table holds them."""
    return [
        {
            "line_no": number,
            "page": item.page,
            "description": item.description,
            **{column: exact(getattr(item, column)) for column in NUMBER_COLUMNS},
            "evidence": item.evidence,
            "confidence": item.confidence,
        }
        for number, item in enumerate(items, start=1)
    ]


def problems(row: Mapping[str, Any], rules: Sequence[ColumnRule] = TABLE_RULES) -> list[str]:
    """What is wrong with one row by `rules`: one readable phrase per broken rule."""
    found = []
    for rule in rules:
        value = row.get(rule.name)
        if value is None:
            if not rule.nullable:
                found.append(f"{rule.name} is missing")
        elif rule.test is not None and not rule.test(value):
            found.append(f"{rule.name} {rule.error} (got {value!r})")
    return found


def row_problems(items: Sequence[LineItem]) -> list[str]:
    """What is wrong with the items by the table's rules, one line per failure."""
    return [
        f"line {row['line_no']}: {problem}"
        for row in item_rows(items)
        for problem in problems(row, ROW_RULES)
    ]


@dataclass(frozen=True)
class DocumentItems:
    """The line items of one document of one input, and what the table says about them."""

    items: list[LineItem]
    sha256: str
    uri: str
    document: int = 1
    document_type: str | None = None
    currency: str | None = None

    def rows(self) -> list[dict[str, Any]]:
        """Its rows of the table: every column of `TABLE_RULES`, in order."""
        about = {
            "sha256": self.sha256,
            "uri": self.uri,
            "document": self.document,
            "document_type": self.document_type,
            "currency": self.currency,
        }
        return [about | row for row in item_rows(self.items)]
