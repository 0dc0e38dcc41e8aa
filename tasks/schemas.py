"""The line-items table (`line_items.parquet`) and its pandera schema.

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

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

import pandas as pd
import pandera.pandas as pa
import pyarrow
from pandera.errors import SchemaError, SchemaErrors

from mmflow.tasks.models import DocumentType, LineItem

SHA256_PATTERN = r"^[0-9a-f]{64}$"
NUMBER_COLUMNS = ("quantity", "unit_price", "amount")
DECIMAL_DTYPE = pd.ArrowDtype(pyarrow.decimal128(24, 6))
_SCALE = Decimal("0.000001")


def _not_blank(series: pd.Series) -> pd.Series:
    return series.astype("string").str.strip().str.len().fillna(0) > 0


LineItemRowsSchema = pa.DataFrameSchema(
    {
        "line_no": pa.Column("int64", pa.Check.ge(1)),
        "page": pa.Column("Int64", pa.Check.ge(1), nullable=True),
        "description": pa.Column(
            pd.StringDtype(), pa.Check(_not_blank, error="description must not be blank")
        ),
        **{column: pa.Column(DECIMAL_DTYPE, nullable=True) for column in NUMBER_COLUMNS},
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
        "document": pa.Column("int64", pa.Check.ge(1)),
        "document_type": pa.Column(
            pd.StringDtype(), pa.Check.isin([t.value for t in DocumentType]), nullable=True
        ),
        "currency": pa.Column(pd.StringDtype(), pa.Check.str_matches(r"^[A-Z]{3}$"), nullable=True),
        **LineItemRowsSchema.columns,
    },
    strict=True,
    ordered=True,
    name="line_items",
)
"""One row per line item of one or more documents: `line_items.parquet`."""


@dataclass(frozen=True)
class DocumentItems:
    """The line items of one document of one input, and what the table says about them."""

    items: list[LineItem]
    sha256: str
    uri: str
    document: int = 1
    document_type: str | None = None
    currency: str | None = None


def _exact(value: Decimal | None) -> Decimal | None:
    if value is None:
        return None
    exponent = value.as_tuple().exponent
    fine = isinstance(exponent, int) and exponent >= -6
    return value if fine else value.quantize(_SCALE, ROUND_HALF_EVEN)


def _rows_frame(items: list[LineItem]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "line_no": pd.Series(range(1, len(items) + 1), dtype="int64"),
            "page": pd.Series([i.page for i in items], dtype="Int64"),
            "description": pd.Series([i.description for i in items], dtype=pd.StringDtype()),
            **{
                column: pd.Series([_exact(getattr(i, column)) for i in items], dtype=DECIMAL_DTYPE)
                for column in NUMBER_COLUMNS
            },
            "evidence": pd.Series([i.evidence for i in items], dtype=pd.StringDtype()),
            "confidence": pd.Series([i.confidence for i in items], dtype="float64"),
        }
    )


def _document_frame(doc: DocumentItems) -> pd.DataFrame:
    count = len(doc.items)
    about = pd.DataFrame(
        {
            "sha256": pd.Series([doc.sha256] * count, dtype=pd.StringDtype()),
            "uri": pd.Series([doc.uri] * count, dtype=pd.StringDtype()),
            "document": pd.Series([doc.document] * count, dtype="int64"),
            "document_type": pd.Series([doc.document_type] * count, dtype=pd.StringDtype()),
            "currency": pd.Series([doc.currency] * count, dtype=pd.StringDtype()),
        }
    )
    return pd.concat([about, _rows_frame(doc.items)], axis=1)


def line_items_frame(items: list[LineItem], sha256: str, uri: str) -> pd.DataFrame:
    """Build the validated table for one document; raises pandera's SchemaErrors if invalid."""
    return line_items_table([DocumentItems(items, sha256, uri)])


def line_items_table(documents: list[DocumentItems]) -> pd.DataFrame:
    """One validated table for many documents: validated once, because a pandera validation
    costs ~10 ms whatever the size and a batch has thousands of documents."""
    frames = [_document_frame(doc) for doc in documents]
    frame = (
        pd.concat(frames, ignore_index=True)
        if frames
        else _document_frame(DocumentItems([], "", ""))
    )
    return LineItemsSchema.validate(frame, lazy=True)


def line_items_table_of_valid(
    documents: list[DocumentItems],
) -> tuple[pd.DataFrame, list[tuple[DocumentItems, str]]]:
    """The validated table of the documents whose items pass the schema, and the others with
    what is wrong. An input whose items fail (a description OCR left blank) already carries a
    failed `line_items_schema` check; it must not stop the table of every other input."""
    try:
        return line_items_table(documents), []
    except SchemaErrors as errors:
        failing = {int(i) for i in errors.failure_cases["index"].dropna()}
    bad: dict[int, list[str]] = {}
    first = 0
    for number, doc in enumerate(documents):
        rows = range(first, first + len(doc.items))
        problems = [f"line {row - first + 1}" for row in rows if row in failing]
        if problems:
            bad[number] = problems
        first += len(doc.items)
    good = [doc for number, doc in enumerate(documents) if number not in bad]
    left_out = [
        (documents[number], "line items fail the table's schema: " + ", ".join(lines))
        for number, lines in bad.items()
    ]
    return line_items_table(good), left_out


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
