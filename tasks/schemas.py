"""The line-items table (`line_items.parquet`) and its pandera schema.

Money columns are canonical decimal STRINGS ("279.84", "-9.32", null), not floats: a string
round-trips through Parquet unchanged and keeps the exact value the invoice printed, which a
float64 would not ("0.1" + "0.2"). Readers who want numbers cast with `Decimal(x)` or
`pd.to_numeric`. The schema checks that each is a plain decimal (no exponent, no thousands
separator, no comma), so every row can be cast without surprises.
"""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaError, SchemaErrors

from mmflow.tasks.models import LineItem

DECIMAL_PATTERN = r"^-?\d+(\.\d+)?$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"
MONEY_COLUMNS = ("quantity", "unit_price", "amount")


def _decimal_or_null(series: pd.Series) -> pd.Series:
    return series.isna() | series.astype("string").str.fullmatch(DECIMAL_PATTERN).fillna(False)


def _not_blank(series: pd.Series) -> pd.Series:
    return series.astype("string").str.strip().str.len().fillna(0) > 0


def _decimal_column() -> pa.Column:
    return pa.Column(
        pd.StringDtype(),
        pa.Check(_decimal_or_null, error="must be a plain decimal string such as '279.84'"),
        nullable=True,
    )


LineItemRowsSchema = pa.DataFrameSchema(
    {
        "line_no": pa.Column("int64", pa.Check.ge(1)),
        "page": pa.Column("Int64", pa.Check.ge(1), nullable=True),
        "description": pa.Column(
            pd.StringDtype(), pa.Check(_not_blank, error="description must not be blank")
        ),
        "quantity": _decimal_column(),
        "unit_price": _decimal_column(),
        "amount": _decimal_column(),
        "evidence": pa.Column(pd.StringDtype(), nullable=True),
        "confidence": pa.Column("float64", pa.Check.in_range(0.0, 1.0)),
    },
    strict=True,
    name="line_item_rows",
)
"""The columns that describe the items themselves (what verify can check)."""

LineItemsSchema = pa.DataFrameSchema(
    {
        "sha256": pa.Column(pd.StringDtype(), pa.Check.str_matches(SHA256_PATTERN)),
        "uri": pa.Column(pd.StringDtype(), pa.Check.str_length(min_value=1)),
        **LineItemRowsSchema.columns,
    },
    strict=True,
    ordered=True,
    name="line_items",
)
"""One row per line item of one or more documents: `line_items.parquet`."""


def _decimal_text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _rows_frame(items: list[LineItem]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "line_no": pd.Series(range(1, len(items) + 1), dtype="int64"),
            "page": pd.Series([i.page for i in items], dtype="Int64"),
            "description": pd.Series([i.description for i in items], dtype=pd.StringDtype()),
            **{
                column: pd.Series(
                    [_decimal_text(getattr(i, column)) for i in items], dtype=pd.StringDtype()
                )
                for column in MONEY_COLUMNS
            },
            "evidence": pd.Series([i.evidence for i in items], dtype=pd.StringDtype()),
            "confidence": pd.Series([i.confidence for i in items], dtype="float64"),
        }
    )


def line_items_frame(items: list[LineItem], sha256: str, uri: str) -> pd.DataFrame:
    """Build the validated table for one document; raises pandera's SchemaErrors if invalid."""
    return line_items_table([(items, sha256, uri)])


def line_items_table(documents: list[tuple[list[LineItem], str, str]]) -> pd.DataFrame:
    """One validated table for many documents' (items, sha256, uri): validated once, because
    a pandera validation costs ~10 ms whatever the size and a batch has thousands of documents.
    """
    frames = [
        pd.concat(
            [
                pd.DataFrame(
                    {
                        "sha256": pd.Series([sha256] * len(items), dtype=pd.StringDtype()),
                        "uri": pd.Series([uri] * len(items), dtype=pd.StringDtype()),
                    }
                ),
                _rows_frame(items),
            ],
            axis=1,
        )
        for items, sha256, uri in documents
    ]
    frame = pd.concat(frames, ignore_index=True) if frames else _empty_table()
    return LineItemsSchema.validate(frame, lazy=True)


def _empty_table() -> pd.DataFrame:
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "sha256": pd.Series([], dtype=pd.StringDtype()),
                    "uri": pd.Series([], dtype=pd.StringDtype()),
                }
            ),
            _rows_frame([]),
        ],
        axis=1,
    )


def line_items_problems(items: list[LineItem]) -> list[str]:
    """What is wrong with the items by the table's rules, one readable line per failure."""
    try:
        LineItemRowsSchema.validate(_rows_frame(items), lazy=True)
    except SchemaErrors as errors:
        cases = errors.failure_cases
        return [
            f"line {int(row['index']) + 1 if pd.notna(row['index']) else '?'}: "
            f"{row['column']} {row['check']} (got {row['failure_case']!r})"
            for _, row in cases.iterrows()
        ]
    except SchemaError as error:  # raised instead of SchemaErrors for frame-level problems
        return [str(error)]
    return []
