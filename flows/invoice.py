"""The invoice flow: validate → normalise → route → read (text layer / OCR) → extract → verify
→ numeric sanity → persist, for each input; every input ends in a result or a typed rejection.

One document (or a few) runs each step as its own task so the UI shows every step; a batch
groups documents per task run, because a SQLite-backed Prefect server records only ~28 task
runs a second (FACTS.md) and 1,000 documents × 8 steps would swamp it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, cast

import pandas as pd
from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.filesystems import LocalFileSystem, WritableFileSystem
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from pydantic import BaseModel, Field

from flows.progress import ItemDone, publish
from flows.steps import InlineSteps, PrefectSteps, StepRunner, retry_on_io
from tasks.caching import Rejected, Stamped, source_key
from tasks.errors import Rejection
from tasks.inputs import expand_inputs, forget_input, read_input, sha256_of
from tasks.invoice import (
    EXTRACT,
    NORMALISE,
    READ,
    ROUTE,
    SANITY,
    VALIDATE,
    VERIFY,
    InvoiceOptions,
    assemble_result,
)
from tasks.models import (
    FIELD_NAMES,
    Check,
    ErrorInfo,
    InvoiceResult,
    LineItem,
    ManifestEntry,
    Status,
)
from tasks.persist import (
    Manifest,
    OutputNames,
    ensure_dir,
    join,
    json_safe,
    write_model,
    write_parquet,
)
from tasks.schemas import line_items_frame


def default_cache_dir() -> str:
    return os.environ.get("MMFLOW_CACHE_DIR", str(Path.home() / ".cache" / "mmflow" / "results"))


class DocumentSummary(BaseModel):
    """What the flow reports per input (the CLI table and the run's table artifact)."""

    uri: str
    sha256: str | None
    status: Status
    error: ErrorInfo | None = None
    output: str | None = None
    routes: list[str] = Field(default_factory=list)
    fields: dict[str, str | None] = Field(default_factory=dict)
    checks: dict[str, int] = Field(default_factory=dict)
    line_items: list[LineItem] = Field(default_factory=list)


class _Stop(Exception):
    def __init__(self, rejected: Rejected) -> None:
        self.rejected = rejected


def _go_on(stamped: Stamped[Any]) -> Stamped[Any]:
    if isinstance(stamped.value, Rejected):
        raise _Stop(stamped.value)
    return stamped


def process_invoice(
    uri: str, sha256: str, steps: StepRunner, options: InvoiceOptions, run_id: str
) -> InvoiceResult:
    """One document through every step; raises `_Stop` with the rejection that ended it."""
    source = source_key(sha256)
    validated = _go_on(steps.run(VALIDATE, [source], uri=uri, limits=options.limits))
    normalised = _go_on(steps.run(NORMALISE, [validated], options=options.normalise))
    routes = steps.run(ROUTE, [normalised], options=options.route)
    text = steps.run(READ, [normalised, routes], ocr_engine=options.ocr_engine, dpi=options.dpi)
    extraction = steps.run(EXTRACT, [text])
    verified = steps.run(VERIFY, [extraction, text])
    sanity = steps.run(SANITY, [verified])
    chain = [validated, normalised, routes, text, extraction, verified, sanity]
    return assemble_result(validated, routes, verified, sanity, chain, run_id)


def _check_counts(checks: list[Check]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for check in checks:
        counts[check.status.value] = counts.get(check.status.value, 0) + 1
    return counts


def run_document(
    uri: str,
    steps: StepRunner,
    options: InvoiceOptions,
    run_id: str,
    out: str,
    names: OutputNames,
    manifest: Manifest,
) -> DocumentSummary:
    """Process one input and write its outputs; whatever happens, it ends in the manifest."""
    sha256: str | None = None
    try:
        sha256 = sha256_of(read_input(uri))
        result = process_invoice(uri, sha256, steps, options, run_id)
    except Rejection as rejection:  # raised before any step: the input could not be read
        summary = DocumentSummary(
            uri=uri,
            sha256=sha256,
            status=Status.REJECTED,
            error=ErrorInfo(code=rejection.code.value, message=rejection.message),
        )
    except _Stop as stop:
        summary = DocumentSummary(
            uri=uri, sha256=sha256, status=Status.REJECTED, error=stop.rejected.error
        )
    except Exception as error:  # a defect, not bad input: record it, let the batch go on
        summary = DocumentSummary(
            uri=uri,
            sha256=sha256,
            status=Status.FAILED,
            error=ErrorInfo(code="processing_error", message=f"{type(error).__name__}: {error}"),
        )
    else:
        output = join(out, names.stem_for(uri, sha256) + ".json")
        write_model(output, result)
        summary = DocumentSummary(
            uri=uri,
            sha256=sha256,
            status=Status.OK,
            output=output,
            routes=[r.route.value for r in result.route],
            fields={name: field.value for name, field in result.fields.items()},
            checks=_check_counts(result.checks),
            line_items=result.line_items,
        )
    finally:
        forget_input(uri)
    manifest.append(
        ManifestEntry(
            uri=summary.uri,
            sha256=summary.sha256,
            status=summary.status,
            error=summary.error,
            output=summary.output,
        )
    )
    publish(ItemDone(uri=uri, status=summary.status.value))
    return summary


@task(
    name="process-documents",
    task_run_name="process {uris[0]} (+{extra})",
    cache_policy=NO_CACHE,  # each step inside caches itself
    retries=2,
    retry_delay_seconds=[2, 8],
    retry_condition_fn=retry_on_io,  # a retried group is cheap: finished steps are cached
)
def process_documents(
    uris: list[str],
    extra: int,
    options: InvoiceOptions,
    storage: WritableFileSystem | None,
    out: str,
    names: OutputNames,
    manifest: Manifest,
    run_id: str,
) -> list[DocumentSummary]:
    """A group of documents in one task run; each step still reads and writes the cache."""
    steps = InlineSteps(storage, run_id)
    return [run_document(u, steps, options, run_id, out, names, manifest) for u in uris]


def _result_storage(cache: bool, cache_dir: str | None) -> WritableFileSystem | None:
    if not cache:
        return None
    return LocalFileSystem(basepath=cache_dir or default_cache_dir())


def _summary_table(summaries: list[DocumentSummary]) -> list[dict[str, Any]]:
    return [
        {
            "input": s.uri,
            "status": s.status.value,
            "route": ",".join(s.routes),
            **{name: s.fields.get(name) for name in FIELD_NAMES},
            "checks": json_safe(s.checks),
            "error": s.error.code if s.error else None,
        }
        for s in summaries
    ]


class InvoiceRunReport(BaseModel):
    out: str
    documents: list[DocumentSummary]

    @property
    def failed(self) -> int:
        return sum(d.status is Status.FAILED for d in self.documents)


@flow(name="invoice", log_prints=True)
def invoice_flow(
    inputs: list[str],
    out: str = "out",
    options: InvoiceOptions | None = None,
    cache: bool = True,
    cache_dir: str | None = None,
    workers: int = 2,
    stepwise_max: int = 4,
    group_size: int | None = None,
) -> InvoiceRunReport:
    """Turn invoices and receipts (PDFs, scans, photos) into verified structured data."""
    options = options or InvoiceOptions()
    run_id = str(flow_run.get_id() or "local")
    uris = expand_inputs(inputs)
    ensure_dir(out)
    manifest, names = Manifest(out), OutputNames()
    storage = _result_storage(cache, cache_dir)

    if len(uris) <= stepwise_max:
        summaries = [
            run_document(
                uri,
                PrefectSteps(storage, run_id, Path(uri).name),
                options,
                run_id,
                out,
                names,
                manifest,
            )
            for uri in uris
        ]
    else:
        size = group_size or max(1, min(25, math.ceil(len(uris) / (2 * workers))))
        groups = [uris[i : i + size] for i in range(0, len(uris), size)]
        futures = [
            process_documents.submit(
                group, len(group) - 1, options, storage, out, names, manifest, run_id
            )
            for group in groups
        ]
        summaries = [s for future in futures for s in future.result()]

    manifest.compact(order=uris)
    items = [
        line_items_frame(s.line_items, s.sha256 or "", s.uri)
        for s in summaries
        if s.status is Status.OK and s.line_items
    ]
    write_parquet(
        join(out, "line_items.parquet"),
        pd.concat(items, ignore_index=True) if items else line_items_frame([], "", ""),
    )
    create_table_artifact(
        key="invoice-results",
        table=_summary_table(summaries),
        description=f"{len(summaries)} inputs → {out}",
    )
    return InvoiceRunReport(out=out, documents=summaries)


def invoice_flow_with_workers(workers: int) -> Any:
    """The flow on a thread pool sized for `workers` concurrent task runs."""
    # Prefect's TaskRunner generic is invariant in its future type; the runner is right here.
    runner = cast(TaskRunner[PrefectFuture[Any]], ThreadPoolTaskRunner(max_workers=workers))
    return invoice_flow.with_options(task_runner=runner)
