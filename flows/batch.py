"""The batch flow: every file under a folder or bucket prefix through one scenario, resumably.

A batch lists its source, hashes every input, and plans before it computes anything:
- the same bytes under two names are processed once; the second name is recorded as a
  `duplicate` rejection that names the first (DESIGN.md: content addressing);
- an input the manifest in `out` already ends (`ok` or `rejected`, same sha256) is not
  touched again, so re-running the same command after a crash or a kill -9 finishes the rest;
  `failed` inputs are tried again;
- the rest run in groups, several inputs per task run, on the flow's task runner.
Every listed input ends with exactly one manifest line. A progress artifact follows the groups
as they return and a report artifact sums the batch up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import cast
from uuid import UUID

import fsspec
from prefect import flow
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from mmflow.flows.invoice import InvoiceScenario, write_line_items
from mmflow.flows.meeting import MeetingScenario
from mmflow.flows.progress import publish
from mmflow.flows.runs import (
    InputSummary,
    Scenario,
    default_group_size,
    done_event,
    result_storage,
    run_groups,
    summary_row,
)
from mmflow.tasks.errors import RejectionCode
from mmflow.tasks.inputs import expand_inputs, forget_input, hash_input, sha256_of
from mmflow.tasks.invoice import InvoiceOptions
from mmflow.tasks.meeting import MeetingOptions
from mmflow.tasks.models import BatchScenario, ErrorInfo, InvoiceResult, ManifestEntry, Status
from mmflow.tasks.persist import Manifest, OutputNames, ensure_dir

HASH_THREADS = 8  # listing and hashing is I/O: object stores answer many reads at once
NOTHING = sha256_of(b"")  # empty files are each rejected as empty, not as copies of each other


class BatchPlan(BaseModel):
    """What a batch will do with each listed input, decided before anything runs."""

    todo: list[str] = Field(default_factory=list)
    resumed: list[ManifestEntry] = Field(default_factory=list)
    duplicates: list[ManifestEntry] = Field(default_factory=list)


def hash_inputs(uris: list[str], threads: int = HASH_THREADS) -> dict[str, str | None]:
    """sha256 of each input's bytes; None where it cannot be read (its run records why)."""

    def digest(uri: str) -> str | None:
        try:
            return hash_input(uri)  # streamed: 8 threads never hold 8 whole inputs
        except Exception:
            return None

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return dict(zip(uris, pool.map(digest, uris), strict=True))


def plan_batch(
    uris: list[str], hashes: dict[str, str | None], before: dict[str, ManifestEntry]
) -> BatchPlan:
    """Split the listing into new work, inputs already ended, and duplicates of an earlier name."""
    plan = BatchPlan()
    first: dict[str, str] = {}
    for uri in uris:
        sha = hashes.get(uri)
        if sha not in (None, NOTHING) and first.setdefault(sha, uri) != uri:
            plan.duplicates.append(
                ManifestEntry(
                    uri=uri,
                    sha256=sha,
                    status=Status.REJECTED,
                    error=ErrorInfo(
                        code=RejectionCode.DUPLICATE.value,
                        message=f"same bytes as {first[sha]}; its result stands for both",
                    ),
                )
            )
            continue
        earlier = before.get(uri)
        ended = earlier is not None and earlier.status in (Status.OK, Status.REJECTED)
        if ended and sha is not None and earlier is not None and earlier.sha256 == sha:
            plan.resumed.append(earlier)
        else:
            plan.todo.append(uri)
    return plan


class BatchReport(BaseModel):
    source: str
    out: str
    scenario: BatchScenario
    listed: int
    processed_inputs: list[str]  # computed by this run
    resumed: int  # already ended in `out` before this run
    duplicates: int
    seconds: float
    inputs: list[InputSummary]

    @property
    def processed(self) -> int:
        return len(self.processed_inputs)

    def count(self, status: Status) -> int:
        return sum(s.status is status for s in self.inputs)

    @property
    def failed(self) -> int:
        return self.count(Status.FAILED)


def _with_invoice_details(
    scenario: InvoiceScenario, summaries: list[InputSummary]
) -> list[InputSummary]:
    """Details (line items) of inputs an earlier run finished, read back from their results."""

    def load(summary: InputSummary) -> InputSummary:
        if summary.details or summary.status is not Status.OK or not summary.output:
            return summary
        with fsspec.open(summary.output, "r", encoding="utf-8") as handle:
            result = InvoiceResult.model_validate_json(handle.read())
        return summary.model_copy(update={"details": scenario.details(result)})

    with ThreadPoolExecutor(max_workers=HASH_THREADS) as pool:
        return list(pool.map(load, summaries))


class _Progress:
    """The batch's progress artifact, advanced as groups return.

    At most one update a second (and the last one): with small groups a busy server would
    otherwise spend its time on progress writes while task runs wait to be recorded.
    """

    EVERY_S = 1.0

    def __init__(self, key: str, total: int, done: int) -> None:
        self.total, self.done = max(total, 1), done
        self._last = time.monotonic()
        created = create_progress_artifact(
            progress=self.percent, key=key, description=f"{done}/{total} inputs ended"
        )
        self.id = cast(UUID, created)  # called from a sync flow: the UUID, not a coroutine

    @property
    def percent(self) -> float:
        return round(100.0 * self.done / self.total, 1)

    def advance(self, summaries: list[InputSummary]) -> None:
        self.done += len(summaries)
        now = time.monotonic()
        if now - self._last >= self.EVERY_S or self.done >= self.total:
            self._last = now
            update_progress_artifact(
                self.id,
                progress=self.percent,
                description=f"{self.done}/{self.total} inputs ended",
            )


def _report_markdown(report: BatchReport) -> str:
    rows = [
        ("listed", report.listed),
        ("processed by this run", report.processed),
        ("ended by an earlier run", report.resumed),
        ("duplicates (same bytes)", report.duplicates),
        ("ok", report.count(Status.OK)),
        ("rejected", report.count(Status.REJECTED)),
        ("failed", report.count(Status.FAILED)),
    ]
    rate = report.processed / report.seconds if report.seconds else 0.0
    lines = [
        f"# Batch {report.scenario.value}: {report.source} → {report.out}",
        "",
        "| inputs | count |",
        "|---|---:|",
        *(f"| {label} | {count} |" for label, count in rows),
        "",
        f"{report.seconds:.1f} s, {rate:.1f} inputs/s processed.",
    ]
    problems = [s for s in report.inputs if s.status is Status.FAILED][:20]
    if problems:
        lines += ["", "## Failed (run the same command again to retry)", ""]
        lines += [f"- `{s.uri}`: {s.error.message if s.error else ''}" for s in problems]
    return "\n".join(lines) + "\n"


def _scenario(
    kind: BatchScenario, invoice: InvoiceOptions | None, meeting: MeetingOptions | None
) -> Scenario:
    if kind is BatchScenario.MEETING:
        return MeetingScenario(meeting or MeetingOptions())
    return InvoiceScenario(invoice or InvoiceOptions())


@flow(name="batch", log_prints=True, flow_run_name="batch {scenario.value} {source}")
def batch_flow(
    source: str,
    out: str = "out",
    scenario: BatchScenario = BatchScenario.INVOICE,
    invoice: InvoiceOptions | None = None,
    meeting: MeetingOptions | None = None,
    cache: bool = True,
    cache_dir: str | None = None,
    workers: int = 2,
    group_size: int | None = None,
) -> BatchReport:
    """Process every file in a folder or bucket prefix (`s3://bucket/prefix/`), resumably.

    Run it again with the same `source` and `out` after a crash and it completes the rest:
    inputs already in the manifest are not recomputed, duplicates are processed once.
    """
    started = time.perf_counter()
    uris = expand_inputs([source])
    ensure_dir(out)
    manifest = Manifest(out)
    before = manifest.latest()
    hashes = hash_inputs(uris)
    plan = plan_batch(uris, hashes, before)

    names = OutputNames()
    for entry in before.values():
        if entry.output:
            names.remember(entry.uri, entry.output)
    for uri in plan.todo:  # decided here, so copies of `names` in worker processes agree
        names.stem_for(uri, hashes.get(uri))

    for entry in plan.duplicates:
        if before.get(entry.uri) != entry:
            manifest.append(entry)
    ended_before = [InputSummary.of_entry(e) for e in plan.resumed + plan.duplicates]
    for summary in ended_before:
        forget_input(summary.uri)
        publish(done_event(summary))

    work = _scenario(scenario, invoice, meeting)
    progress = _Progress(f"{work.name}-batch-progress", len(uris), len(ended_before))
    on_group: Callable[[list[InputSummary]], None] = progress.advance
    processed = run_groups(
        work,
        plan.todo,
        out,
        result_storage(cache, cache_dir),
        str(flow_run.get_id() or "local"),
        manifest,
        names,
        group_size or default_group_size(len(plan.todo), workers),
        on_group,
    )
    manifest.compact(order=uris)

    by_uri = {s.uri: s for s in ended_before + processed}
    summaries = [by_uri[uri] for uri in uris]
    if isinstance(work, InvoiceScenario):
        summaries = _with_invoice_details(work, summaries)
        write_line_items(out, summaries)
    report = BatchReport(
        source=source,
        out=out,
        scenario=scenario,
        listed=len(uris),
        processed_inputs=[s.uri for s in processed],
        resumed=len(plan.resumed),
        duplicates=len(plan.duplicates),
        seconds=round(time.perf_counter() - started, 3),
        inputs=summaries,
    )
    create_markdown_artifact(
        key=f"{work.name}-batch-report",
        markdown=_report_markdown(report),
        description=f"batch {work.name}: {source}",
    )
    create_table_artifact(
        key=f"{work.name}-results",
        table=[summary_row(s) for s in summaries],
        description=f"{work.name}: {len(summaries)} inputs → {out}",
    )
    return report
