"""The table's rules in plain Python agree with the pandera schema built from them, and the
table mmflow writes without pandas reads back with the documented dtypes."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pandera.errors
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmflow.tasks.line_item_rules import DocumentItems, problems, row_problems
from mmflow.tasks.line_items_table import table_schema, valid_rows
from mmflow.tasks.models import LineItem
from mmflow.tasks.schemas import LineItemsSchema, line_items_table

SHA = "a" * 64


def _items() -> list[LineItem]:
    return [
        LineItem(
            description="Chair",
            quantity=Decimal("2"),
            unit_price=Decimal("120.00"),
            amount=Decimal("240.00"),
            page=1,
            evidence="Chair 2 120.00 240.00",
            confidence=0.9,
        ),
        LineItem(description="Levy", amount=Decimal("-9.32"), confidence=0.5),
    ]


def _document() -> DocumentItems:
    return DocumentItems(_items(), SHA, "in/a.pdf", 2, "credit_note", "EUR")


BAD = [
    ("currency", "euro"),
    ("document_type", "bill"),
    ("document", 0),
    ("description", "  "),
    ("confidence", 1.5),
    ("sha256", "not-a-hash"),
    ("page", 0),
    ("uri", ""),
    ("line_no", 0),
]  # a number over decimal128(24, 6) cannot even be put into the frame: tested on its own below


@pytest.mark.parametrize(("column", "bad"), BAD)
def test_a_bad_value_breaks_the_plain_rules_and_the_pandera_schema_alike(
    column: str, bad: Any
) -> None:
    rows = _document().rows()
    assert [problems(row) for row in rows] == [[], []]
    LineItemsSchema.validate(line_items_table([_document()]), lazy=True)
    rows[0][column] = bad
    assert len(problems(rows[0])) == 1 and column in problems(rows[0])[0]
    frame = line_items_table([_document()])
    frame.loc[0, column] = bad
    with pytest.raises(pandera.errors.SchemaErrors):
        LineItemsSchema.validate(frame, lazy=True)


def test_a_number_the_table_cannot_hold_leaves_its_document_out_not_the_table_broken() -> None:
    """decimal128(24, 6) holds less than 10^18: pyarrow refused the whole table before."""
    huge = DocumentItems(
        [LineItem(description="Levy", amount=Decimal("1e30"), confidence=0.5)], SHA, "in/b.pdf"
    )
    rows, left_out = valid_rows([_document(), huge])
    assert [doc.uri for doc, _ in left_out] == ["in/b.pdf"]
    assert "amount must be below 10^18" in left_out[0][1]
    assert pa.Table.from_pylist(rows, schema=table_schema()).num_rows == 2


def test_row_problems_name_each_line_and_rule() -> None:
    items = [LineItem(description="   ", amount=Decimal("1.00"), confidence=1.5)]
    assert row_problems(items) == [
        "line 1: description must not be blank (got '   ')",
        "line 1: confidence must be between 0 and 1 (got 1.5)",
    ]


def test_the_table_written_without_pandas_reads_back_as_the_pandas_written_one(
    tmp_path: Path,
) -> None:
    """Readers see the same frame as when mmflow wrote the table from pandas: strings as
    strings, `page` as a nullable integer, money as exact `Decimal` values."""
    rows, left_out = valid_rows([_document()])
    assert left_out == []
    path = tmp_path / "line_items.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=table_schema()), path)
    from_pandas = tmp_path / "from_pandas.parquet"
    line_items_table([_document()]).to_parquet(from_pandas, index=False)
    back = pd.read_parquet(path)
    pd.testing.assert_frame_equal(back, pd.read_parquet(from_pandas))
    assert back["amount"].sum() == Decimal("230.68")
    assert str(back["page"].dtype) == "Int64" and back["page"].isna().tolist() == [False, True]
    assert str(pq.read_schema(path).field("amount").type) == "decimal128(24, 6)"
    assert (
        pq.read_schema(path).remove_metadata().equals(pq.read_schema(from_pandas).remove_metadata())
    )
