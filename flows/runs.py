"""Running a scenario over many inputs: every input ends in the manifest, whatever happens.

A few inputs run each step as its own Prefect task, so the UI shows every step of a single
document. More inputs are grouped, several per task run, because a SQLite-backed Prefect
server records only ~28 task runs a second (FACTS.md) — 1,000 documents × 8 steps would
swamp it. Both ways use the same step cache (tasks/caching.py).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.filesystems import WritableFileSystem
from prefect.futures import as_completed
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from mmflow.blocks.storage import storage_for
from mmflow.flows.assets import output_assets, record_outputs
from mmflow.flows.progress import ItemDone, listening, publish
from mmflow.flows.steps import InlineSteps, PrefectSteps, StepRunner
from mmflow.tasks.caching import Stopped
from mmflow.tasks.errors import Rejection
from mmflow.tasks.inputs import expand_inputs, forget_input, read_input, sha256_of
from mmflow.tasks.models import ErrorInfo, ManifestEntry, Status
from mmflow.tasks.persist import Manifest, OutputNames, ensure_dir, json_safe


class Scenario(Protocol):
    """What a flow tells the runner: how to process one input and how to report it."""

    @property
    def name(self) -> str:
        """Names the run's artifact and its task runs, e.g. `invoice`."""
        ...

    def process(self, uri: str, sha256: str, steps: StepRunner, run_id: str) -> BaseModel:
        """All steps for one input; raises `Stopped` when a step rejected it."""
        ...

    def write(self, result: BaseModel, out: str, stem: str) -> dict[str, bytes]:
        """Write the input's outputs; returns each path and the bytes written there, its main
        result file first (an input of several documents: one result file each, first, in
        page order, their number given as `documents` in `details`)."""
        ...

    def details(self, result: BaseModel) -> dict[str, Any]:
        """What the run's table artifact and the CLI show for this input."""
        ...


class InputSummary(BaseModel):
    """One input's ending: its manifest line, plus what the scenario reports about it."""

    uri: str
    sha256: str | None
    status: Status
    error: ErrorInfo | None = None
    output: str | None = None
    outputs: list[str] | None = None
    documents: int | None = None
    details: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def of_entry(cls, entry: ManifestEntry) -> InputSummary:
        """An input an earlier run ended, as its manifest line tells it."""
        return cls(**entry.model_dump())

    def manifest_entry(self) -> ManifestEntry:
        return ManifestEntry(
            uri=self.uri,
            sha256=self.sha256,
            status=self.status,
            error=self.error,
            output=self.output,
            outputs=self.outputs,
            documents=self.documents,
        )


def default_cache_dir() -> str:
    return os.environ.get("MMFLOW_CACHE_DIR", str(Path.home() / ".cache" / "mmflow" / "results"))


def result_storage(cache: bool, cache_dir: str | None) -> WritableFileSystem | None:
    """A local folder or an `s3://…` prefix (a `RemoteFileSystem` block) for step results."""
    return storage_for(cache_dir or default_cache_dir()) if cache else None


def run_input(
    uri: str,
    scenario: Scenario,
    steps: StepRunner,
    run_id: str,
    out: str,
    names: OutputNames,
    manifest: Manifest,
) -> InputSummary:
    """Process one input and write its outputs; whatever happens, it ends in the manifest."""
    sha256: str | None = None
    try:
        sha256 = sha256_of(read_input(uri))
        result = scenario.process(uri, sha256, steps, run_id)
        written = scenario.write(result, out, names.stem_for(uri, sha256))
        output = next(iter(written))
        record_outputs(output_assets(scenario.name, uri, written))  # lineage as Prefect assets
        details = scenario.details(result)
        documents = details.get("documents")  # result files of an input of several documents
        summary = InputSummary(
            uri=uri,
            sha256=sha256,
            status=Status.OK,
            output=output,
            outputs=list(written)[:documents] if isinstance(documents, int) else None,
            documents=documents if isinstance(documents, int) else None,
            details=details,
        )
    except Rejection as rejection:  # before any step: the input could not be read at all
        error = ErrorInfo(code=rejection.code.value, message=rejection.message)
        summary = InputSummary(uri=uri, sha256=sha256, status=Status.REJECTED, error=error)
    except Stopped as stop:
        summary = InputSummary(
            uri=uri, sha256=sha256, status=Status.REJECTED, error=stop.rejected.error
        )
    except Exception as error:  # a defect or lasting I/O trouble: record it, the batch goes on
        summary = InputSummary(
            uri=uri,
            sha256=sha256,
            status=Status.FAILED,
            error=ErrorInfo(code="processing_error", message=f"{type(error).__name__}: {error}"),
        )
    finally:
        forget_input(uri)
    manifest.append(summary.manifest_entry())
    publish(done_event(summary))
    return summary


@task(
    name="process-inputs",
    task_run_name="{scenario.name} {uris[0]} (+{extra})",
    cache_policy=NO_CACHE,  # each step inside caches itself; a failure is recorded per input
)
def process_inputs(
    uris: list[str],
    extra: int,
    scenario: Scenario,
    storage: WritableFileSystem | None,
    out: str,
    names: OutputNames,
    manifest: Manifest,
    run_id: str,
) -> list[InputSummary]:
    """A group of inputs in one task run; every step inside still reads and writes the cache."""
    with InlineSteps(storage, run_id) as steps:
        return [run_input(u, scenario, steps, run_id, out, names, manifest) for u in uris]


def done_event(summary: InputSummary) -> ItemDone:
    """A progress event; a scenario may count in its own units (seconds of audio), default 1."""
    units = float(summary.details.get("progress_units", 1.0))
    return ItemDone(uri=summary.uri, status=summary.status.value, units=units)


def default_group_size(inputs: int, workers: int) -> int:
    """Two groups per worker so the pool stays busy, at most 25 inputs per task run."""
    return max(1, min(25, math.ceil(inputs / (2 * workers))))


def run_groups(
    scenario: Scenario,
    uris: list[str],
    out: str,
    storage: WritableFileSystem | None,
    run_id: str,
    manifest: Manifest,
    names: OutputNames,
    size: int,
    on_group: Callable[[list[InputSummary]], None] | None = None,
) -> list[InputSummary]:
    """Inputs in groups of `size` per task run, on the flow's task runner; results in order.

    Worker processes (Dask, Ray) cannot reach this process's progress listeners, so inputs a
    group reports that no listener heard of are announced here when the group returns. A group
    whose task run dies as a whole (a killed worker) still ends each of its inputs in the
    manifest, as failed.
    """
    groups = [uris[i : i + size] for i in range(0, len(uris), size)]
    heard: set[str] = set()
    ended: dict[int, list[InputSummary]] = {}
    with listening(lambda event: heard.add(event.uri)):
        futures = {
            process_inputs.submit(g, len(g) - 1, scenario, storage, out, names, manifest, run_id): i
            for i, g in enumerate(groups)
        }
        for future in as_completed(list(futures)):
            index = futures[future]
            try:
                summaries = future.result()
            except Exception as error:
                summaries = [_group_lost(uri, error, manifest) for uri in groups[index]]
            for summary in summaries:
                if summary.uri not in heard:
                    publish(done_event(summary))
            ended[index] = summaries
            if on_group is not None:
                on_group(summaries)
    return [summary for index in range(len(groups)) for summary in ended[index]]


def _group_lost(uri: str, error: Exception, manifest: Manifest) -> InputSummary:
    message = f"its task run ended without a result ({type(error).__name__}: {error}); run again"
    summary = InputSummary(
        uri=uri,
        sha256=None,
        status=Status.FAILED,
        error=ErrorInfo(code="processing_error", message=message),
    )
    manifest.append(summary.manifest_entry())
    return summary


def run_inputs(
    scenario: Scenario,
    uris: list[str],
    out: str,
    storage: WritableFileSystem | None,
    run_id: str,
    workers: int = 2,
    stepwise_max: int = 4,
    group_size: int | None = None,
) -> list[InputSummary]:
    """Every input through the scenario, then one manifest line each and a table artifact."""
    manifest, names = Manifest(out), OutputNames()
    names.reserve(uris)
    if len(uris) <= stepwise_max:
        summaries = [
            run_input(
                uri,
                scenario,
                PrefectSteps(storage, run_id, Path(uri).name),
                run_id,
                out,
                names,
                manifest,
            )
            for uri in uris
        ]
    else:
        size = group_size or default_group_size(len(uris), workers)
        summaries = run_groups(scenario, uris, out, storage, run_id, manifest, names, size)
    manifest.compact(order=uris)
    create_table_artifact(
        key=f"{scenario.name}-results",
        table=[summary_row(s) for s in summaries],
        description=f"{scenario.name}: {len(summaries)} inputs → {out}",
    )
    return summaries


def run_scenario(
    scenario: Scenario,
    inputs: list[str],
    out: str,
    cache: bool,
    cache_dir: str | None,
    workers: int,
    stepwise_max: int,
    group_size: int | None,
) -> list[InputSummary]:
    """A scenario flow's body: expand the inputs, then run them all into `out`."""
    uris = expand_inputs(inputs)
    ensure_dir(out)
    return run_inputs(
        scenario,
        uris,
        out,
        result_storage(cache, cache_dir),
        str(flow_run.get_id() or "local"),
        workers=workers,
        stepwise_max=stepwise_max,
        group_size=group_size,
    )


def summary_row(summary: InputSummary) -> dict[str, Any]:
    """A table-artifact row: the manifest fields and the scenario's scalar details."""
    return {
        "input": summary.uri,
        "status": summary.status.value,
        "error": summary.error.code if summary.error else None,
        **{k: json_safe(v) for k, v in summary.details.items() if not isinstance(v, list)},
    }
