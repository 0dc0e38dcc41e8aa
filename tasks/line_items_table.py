"""`line_items.parquet`: the line items of every input the folder's manifest ends `ok`.

Runs into one folder accumulate (a nightly batch, one run per webhook upload, several at once),
and the table must say what the manifest says: each `ok` line's input, with the rows of the
results that line names. So each run reconciles the table with the whole manifest, under the
folder's lock, instead of writing only its own inputs:
- rows of inputs the manifest no longer ends `ok` with the same sha256 are dropped;
- this run's inputs come from what it just extracted;
- any other `ok` input the table lacks (a run that crashed before reconciling, a deleted table,
  one written by an older mmflow with other columns) is read from its result JSON files.
Inputs with no line items are listed in the file's metadata, so "no rows" is not "missing".
Rows are checked against the table's rules (tasks/line_item_rules.py) and written with pyarrow,
without building a pandas DataFrame or importing pandera (a few hundred milliseconds per
command); the file carries pandas' own metadata, so `pd.read_parquet` gives the same frame as
before (tests/test_line_item_rules.py).
A result that cannot be read back (deleted or cut short since its run) is reported by the run,
never fatal; a batch over its source recomputes it (flows/batch.py), and the next
reconciliation picks it up.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError
from typing import TYPE_CHECKING, Any

import fsspec
from pydantic import BaseModel, Field

from mmflow.tasks.line_item_rules import (
    DECIMAL_PRECISION,
    DECIMAL_SCALE,
    TABLE_RULES,
    ColumnRule,
    DocumentItems,
    problems,
)
from mmflow.tasks.models import FieldValue, InvoiceResult, LineItem, ManifestEntry, Status
from mmflow.tasks.persist import Manifest, OutputLock, join, write_bytes
from mmflow.tasks.versions import installed_version

if TYPE_CHECKING:
    import pyarrow as pa

logger = logging.getLogger(__name__)

FILENAME = "line_items.parquet"
WITHOUT_ROWS = b"mmflow.inputs_without_line_items"  # parquet metadata: [[uri, sha256], …]

Key = tuple[str, str]  # (input uri, sha256)


def _keys(table: pa.Table) -> list[Key]:
    return list(
        zip(
            (str(u) for u in table.column("uri").to_pylist()),
            (str(s) for s in table.column("sha256").to_pylist()),
            strict=True,
        )
    )


def _read_table(path: str) -> tuple[pa.Table | None, set[Key]]:
    """The current table and the inputs it covers without rows; (None, ∅) when there is none."""
    import pyarrow.parquet as pq

    fs, fs_path = fsspec.core.url_to_fs(path)
    if not fs.exists(fs_path):
        return None, set()
    with fs.open(fs_path, "rb") as handle:
        table = pq.read_table(handle)
    without = json.loads((table.schema.metadata or {}).get(WITHOUT_ROWS, b"[]"))
    return table, {(str(uri), str(sha)) for uri, sha in without}


def _read_documents(entry: ManifestEntry) -> list[DocumentItems]:
    """The line items an earlier run wrote into this input's results (one file per document)."""
    documents = []
    for number, path in enumerate(entry.outputs or [entry.output], start=1):
        assert path is not None
        with fsspec.open(path, "r", encoding="utf-8") as handle:
            result = InvoiceResult.model_validate_json(handle.read())
        documents.append(
            DocumentItems(
                items=result.line_items,
                sha256=entry.sha256 or "",
                uri=entry.uri,
                document=number,
                document_type=result.fields.get("document_type", FieldValue()).value,
                currency=result.fields.get("currency", FieldValue()).value,
            )
        )
    return documents


def _fresh_documents(key: Key, rows: list[dict[str, Any]]) -> list[DocumentItems]:
    """This run's line items of one input, as the runner's details carry them (one row per
    item, each naming the document it belongs to)."""
    by_document: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_document.setdefault(int(row.get("document", 1)), []).append(row)
    return [
        DocumentItems(
            items=[LineItem.model_validate(row) for row in items],
            sha256=key[1],
            uri=key[0],
            document=number,
            document_type=items[0].get("document_type"),
            currency=items[0].get("currency"),
        )
        for number, items in sorted(by_document.items())
    ]


def _pandas_column(rule: ColumnRule) -> dict[str, Any]:
    """How pandas should read one column back (its metadata format, as pyarrow writes it)."""
    pandas_type, numpy_type, metadata = {
        "string": ("object", "string", None),  # pandas' StringDtype
        "int": ("int64", "Int64" if rule.nullable else "int64", None),
        "decimal": ("decimal", "object", {"precision": DECIMAL_PRECISION, "scale": DECIMAL_SCALE}),
        "float": ("float64", "float64", None),
    }[rule.kind]
    return {
        "name": rule.name,
        "field_name": rule.name,
        "pandas_type": pandas_type,
        "numpy_type": numpy_type,
        "metadata": metadata,
    }


def _installed(package: str) -> str:
    try:
        return installed_version(package)
    except PackageNotFoundError:
        return ""


def table_schema() -> pa.Schema:
    """The table's Arrow schema, with the metadata pandas reads its dtypes from."""
    import pyarrow as pa

    types = {
        "string": pa.large_string(),
        "int": pa.int64(),
        "decimal": pa.decimal128(DECIMAL_PRECISION, DECIMAL_SCALE),
        "float": pa.float64(),
    }
    pandas_metadata = {
        "index_columns": [],
        "column_indexes": [],
        "columns": [_pandas_column(rule) for rule in TABLE_RULES],
        "attributes": {},
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": _installed("pandas"),
    }
    return pa.schema(
        [pa.field(rule.name, types[rule.kind], nullable=True) for rule in TABLE_RULES],
        metadata={b"pandas": json.dumps(pandas_metadata).encode()},
    )


def valid_rows(
    documents: list[DocumentItems],
) -> tuple[list[dict[str, Any]], list[tuple[DocumentItems, str]]]:
    """The rows of the documents whose items keep the table's rules, and the others with what
    is wrong. An input whose items fail (a description OCR left blank) already carries a
    failed `line_items_schema` check; it must not stop the table of every other input."""
    rows: list[dict[str, Any]] = []
    left_out: list[tuple[DocumentItems, str]] = []
    for doc in documents:
        doc_rows = doc.rows()
        broken = [f"line {row['line_no']}: {p}" for row in doc_rows for p in problems(row)]
        if broken:
            left_out.append((doc, "line items fail the table's rules: " + "; ".join(broken)))
        else:
            rows += doc_rows
    return rows, left_out


def _write_table(path: str, table: pa.Table, without: list[Key]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    metadata = dict(table.schema.metadata or {})
    metadata[WITHOUT_ROWS] = json.dumps([list(key) for key in without]).encode()
    sink = pa.BufferOutputStream()
    pq.write_table(table.replace_schema_metadata(metadata), sink)
    write_bytes(path, sink.getvalue().to_pybytes())


class Reconciled(BaseModel):
    """What reconciling the table found: its rows, and the `ok` inputs whose result files could
    not be read (deleted, cut short), by uri with the reason. Those have no rows until their
    results are written again (a batch over their source recomputes them); each later
    reconciliation tries them again."""

    rows: int
    unreadable: dict[str, str] = Field(default_factory=dict)
    # `ok` inputs whose items break the table's rules (their result says so in the failed
    # `line_items_schema` check): left out of the table, by uri with the reason.
    invalid: dict[str, str] = Field(default_factory=dict)


def reconcile(out: str, fresh: Mapping[Key, list[dict[str, Any]]]) -> Reconciled:
    """Rewrite `OUT/line_items.parquet` to match OUT's manifest.

    `fresh` holds this run's inputs' line items (as the runner's details carry them), so they
    are not read back from the results just written. A result that cannot be read back is
    reported, not fatal: one damaged file must not stop the table of every other input.
    """
    import pyarrow as pa

    path = join(out, FILENAME)
    with OutputLock(out):
        ended_ok = {
            (e.uri, e.sha256): e
            for e in Manifest(out).latest().values()
            if e.status is Status.OK and e.sha256 and e.output
        }
        current, without = _read_table(path)
        schema = table_schema()  # the table's columns, as this mmflow writes them
        if current is not None and not current.schema.remove_metadata().equals(
            schema.remove_metadata()
        ):
            current, without = None, set()  # written by another mmflow: rebuilt from results
        covered = (set(_keys(current)) if current is not None else set()) | without
        keep = {key for key in covered if key in ended_ok and key not in fresh}
        documents: list[DocumentItems] = []
        unreadable: dict[str, str] = {}
        for key, entry in ended_ok.items():
            if key in keep:
                continue
            if key in fresh:
                documents += _fresh_documents(key, fresh[key])
                continue
            try:
                documents += _read_documents(entry)
            except (OSError, ValueError) as error:  # deleted, cut short, not an invoice result
                unreadable[entry.uri] = f"{type(error).__name__}: {str(error)[:200]}"
                logger.warning("line items of %s not read back: %s", entry.uri, error)
        valid, left_out = valid_rows(documents)
        invalid = {doc.uri: reason for doc, reason in left_out}
        for uri, reason in invalid.items():
            logger.warning("line items of %s left out of %s: %s", uri, FILENAME, reason)
        tables = [pa.Table.from_pylist(valid, schema=schema)]
        if current is not None:
            mask = pa.array([key in keep for key in _keys(current)], type=pa.bool_())
            tables.insert(0, current.filter(mask).cast(schema))
        table = pa.concat_tables(tables)
        with_rows = set(_keys(table))
        not_held = unreadable.keys() | invalid.keys()
        without_rows = [k for k in ended_ok if k not in with_rows and k[0] not in not_held]
        _write_table(path, table, sorted(without_rows))
    return Reconciled(rows=table.num_rows, unreadable=unreadable, invalid=invalid)
