"""`line_items.parquet`: the line items of every input the folder's manifest ends `ok`.

Runs into one folder accumulate (a nightly batch, one run per webhook upload, several at once),
and the table must say what the manifest says: each `ok` line's input, with the rows of the
result that line names. So each run reconciles the table with the whole manifest, under the
folder's lock, instead of writing only its own inputs:
- rows of inputs the manifest no longer ends `ok` with the same sha256 are dropped;
- this run's inputs come from what it just extracted;
- any other `ok` input the table lacks (a run that crashed before reconciling, a deleted table,
  one from an older mmflow) is read from its result JSON.
Inputs with no line items are listed in the file's metadata, so "no rows" is not "missing".
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import fsspec

from mmflow.tasks.models import InvoiceResult, LineItem, ManifestEntry, Status
from mmflow.tasks.persist import Manifest, OutputLock, join, write_bytes

if TYPE_CHECKING:
    import pandas as pd

FILENAME = "line_items.parquet"
WITHOUT_ROWS = b"mmflow.inputs_without_line_items"  # parquet metadata: [[uri, sha256], …]

Key = tuple[str, str]  # (input uri, sha256)


def _keys(frame: pd.DataFrame) -> list[Key]:
    return list(zip(frame["uri"].astype(str), frame["sha256"].astype(str), strict=True))


def _read_table(path: str) -> tuple[pd.DataFrame | None, set[Key]]:
    """The current table and the inputs it covers without rows; (None, ∅) when there is none."""
    import pyarrow.parquet as pq

    fs, fs_path = fsspec.core.url_to_fs(path)
    if not fs.exists(fs_path):
        return None, set()
    with fs.open(fs_path, "rb") as handle:
        table = pq.read_table(handle)
    without = json.loads((table.schema.metadata or {}).get(WITHOUT_ROWS, b"[]"))
    return table.to_pandas(), {(str(uri), str(sha)) for uri, sha in without}


def _items_of(entry: ManifestEntry) -> list[LineItem]:
    """The line items an earlier run wrote into this input's result."""
    assert entry.output is not None
    with fsspec.open(entry.output, "r", encoding="utf-8") as handle:
        return InvoiceResult.model_validate_json(handle.read()).line_items


def _write_table(path: str, frame: pd.DataFrame, without: list[Key]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    metadata = dict(table.schema.metadata or {})
    metadata[WITHOUT_ROWS] = json.dumps([list(key) for key in without]).encode()
    sink = pa.BufferOutputStream()
    pq.write_table(table.replace_schema_metadata(metadata), sink)
    write_bytes(path, sink.getvalue().to_pybytes())


def reconcile_line_items(out: str, fresh: Mapping[Key, list[dict[str, Any]]]) -> int:
    """Rewrite `OUT/line_items.parquet` to match OUT's manifest; returns its row count.

    `fresh` holds this run's inputs' line items (as the runner's details carry them), so they
    are not read back from the results just written.
    """
    import pandas as pd

    from mmflow.tasks.schemas import line_items_table

    path = join(out, FILENAME)
    with OutputLock(out):
        ended_ok = {
            (e.uri, e.sha256): e
            for e in Manifest(out).latest().values()
            if e.status is Status.OK and e.sha256 and e.output
        }
        current, without = _read_table(path)
        covered = (set(_keys(current)) if current is not None else set()) | without
        keep = {key for key in covered if key in ended_ok and key not in fresh}
        added = line_items_table(
            [
                (
                    [LineItem.model_validate(item) for item in fresh[key]]
                    if key in fresh
                    else _items_of(entry),
                    key[1],
                    key[0],
                )
                for key, entry in ended_ok.items()
                if key not in keep
            ]
        )
        frames = [added]
        if current is not None:
            frames.insert(0, current[[key in keep for key in _keys(current)]])
        frame = pd.concat([f for f in frames if len(f)] or [added], ignore_index=True)
        with_rows = set(_keys(frame))
        _write_table(path, frame, sorted(key for key in ended_ok if key not in with_rows))
    return len(frame)
