"""The line-items table (`line_items.parquet`) as a pandas DataFrame, and its pandera schema.

mmflow itself writes the table with pyarrow from rows checked against the rules of
tasks/line_item_rules.py, without pandera (tasks/line_items_table.py). This module states the
same table for pandas users and tests: `line_items_table` builds it as a DataFrame with Arrow
dtypes, validated by `LineItemsSchema`, which is built from those same rules, so the two cannot
drift apart.

Money and quantity columns are exact decimals: Arrow's `decimal128(24, 6)`, which Parquet stores
as a decimal and pandas reads back as Python `Decimal` values, so the value the invoice printed
is kept exactly (a float64 would not keep "0.1" + "0.2") and sums need no casting:
`pd.read_parquet(p).groupby("currency")["amount"].sum()`. Six decimal places hold every price
an invoice prints; a value with more (only a model could produce one) is rounded to six.

Each row also says which input (`sha256`, `uri`), which document of it (`document`, 1-based: a
file can hold several), what that document is (`document_type`), its `currency`, and the
`page` the line was read from.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pandera.pandas as pa
import pyarrow

from mmflow.tasks.line_item_rules import (
    DECIMAL_PRECISION,
    DECIMAL_SCALE,
    TABLE_RULES,
    ColumnRule,
    DocumentItems,
)
from mmflow.tasks.models import LineItem

DECIMAL_DTYPE = pd.ArrowDtype(pyarrow.decimal128(DECIMAL_PRECISION, DECIMAL_SCALE))


def _dtype(rule: ColumnRule) -> Any:
    return {
        "string": pd.StringDtype(),
        "int": "Int64" if rule.nullable else "int64",
        "decimal": DECIMAL_DTYPE,
        "float": "float64",
    }[rule.kind]


def _column(rule: ColumnRule) -> pa.Column:
    checks = []
    if rule.test is not None:
        checks.append(pa.Check(rule.test, element_wise=True, error=f"{rule.name} {rule.error}"))
    return pa.Column(_dtype(rule), checks, nullable=rule.nullable)


LineItemsSchema = pa.DataFrameSchema(
    {rule.name: _column(rule) for rule in TABLE_RULES},
    strict=True,
    ordered=True,
    name="line_items",
)
"""One row per line item of one or more documents: `line_items.parquet`."""


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            rule.name: pd.Series([row[rule.name] for row in rows], dtype=_dtype(rule))
            for rule in TABLE_RULES
        }
    )


def line_items_frame(items: list[LineItem], sha256: str, uri: str) -> pd.DataFrame:
    """Build the validated table for one document; raises pandera's SchemaErrors if invalid."""
    return line_items_table([DocumentItems(items, sha256, uri)])


def line_items_table(documents: list[DocumentItems]) -> pd.DataFrame:
    """One validated table for many documents, as `line_items.parquet` holds them."""
    rows = [row for doc in documents for row in doc.rows()]
    return LineItemsSchema.validate(_frame(rows), lazy=True)
