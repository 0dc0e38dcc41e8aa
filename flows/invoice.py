"""The invoice flow: validate → normalise → route → read (text layer / OCR) → extract → verify
→ numeric sanity → persist, for each input; every input ends in a result or a typed rejection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from prefect import flow
from prefect.futures import PrefectFuture
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from pydantic import BaseModel

from flows.runs import InputSummary, run_scenario
from flows.steps import StepRunner
from tasks.caching import source_key, unless_rejected
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
from tasks.models import Check, InvoiceResult, LineItem, Status
from tasks.persist import join, write_model, write_parquet
from tasks.schemas import line_items_table


def process_invoice(
    uri: str, sha256: str, steps: StepRunner, options: InvoiceOptions, run_id: str
) -> InvoiceResult:
    """One document through every step; raises `Stopped` when a step rejected it."""
    source = source_key(sha256)
    validated = unless_rejected(steps.run(VALIDATE, [source], uri=uri, limits=options.limits))
    normalised = unless_rejected(steps.run(NORMALISE, [validated], options=options.normalise))
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


@dataclass(frozen=True)
class InvoiceScenario:
    options: InvoiceOptions
    name: str = "invoice"

    def process(self, uri: str, sha256: str, steps: StepRunner, run_id: str) -> BaseModel:
        return process_invoice(uri, sha256, steps, self.options, run_id)

    def write(self, result: BaseModel, out: str, stem: str) -> str:
        path = join(out, f"{stem}.json")
        write_model(path, result)
        return path

    def details(self, result: BaseModel) -> dict[str, Any]:
        invoice = cast(InvoiceResult, result)
        return {
            "route": ",".join(sorted({r.route.value for r in invoice.route})),
            **{name: field.value for name, field in invoice.fields.items()},
            "checks": _check_counts(invoice.checks),
            "line_items": [item.model_dump(mode="json") for item in invoice.line_items],
        }


class InvoiceRunReport(BaseModel):
    out: str
    documents: list[InputSummary]

    @property
    def failed(self) -> int:
        return sum(d.status is Status.FAILED for d in self.documents)


def write_line_items(out: str, summaries: list[InputSummary]) -> None:
    """`line_items.parquet`: every line item of the run, validated by the pandera schema."""
    table = line_items_table(
        [
            (
                [LineItem.model_validate(item) for item in s.details["line_items"]],
                s.sha256 or "",
                s.uri,
            )
            for s in summaries
            if s.status is Status.OK and s.details.get("line_items")
        ]
    )
    write_parquet(join(out, "line_items.parquet"), table)


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
    summaries = run_scenario(
        InvoiceScenario(options or InvoiceOptions()),
        inputs,
        out,
        cache,
        cache_dir,
        workers,
        stepwise_max,
        group_size,
    )
    write_line_items(out, summaries)
    return InvoiceRunReport(out=out, documents=summaries)


def with_workers(flow_object: Any, workers: int) -> Any:
    """The flow on a thread pool sized for `workers` concurrent task runs."""
    # Prefect's TaskRunner generic is invariant in its future type; the runner is right here.
    runner = cast(TaskRunner[PrefectFuture[Any]], ThreadPoolTaskRunner(max_workers=workers))
    return flow_object.with_options(task_runner=runner)
