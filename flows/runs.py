"""Running a scenario over many inputs: every input ends in the manifest, whatever happens.

Each scenario (flows/registry.py) brings a `Pipeline`: how one input is processed, written and
summarised, and what the run produces once every input has ended (`finish`). This module does
the rest, the same way for every scenario:

- a few inputs run each step as its own Prefect task, so the UI shows every step of a single
  document; more inputs are grouped, several per task run, because a SQLite-backed Prefect
  server records only ~28 task runs a second (docs/facts.md) — 1,000 documents × 8 steps would
  swamp it. Both ways use the same step cache (tasks/caching.py);
- an input that does not end within `input_timeout_s` ends `failed: timeout` and the rest go on;
  once a stop is asked (flows/stopping.py), no new input starts and the running ones get a grace
  period (with an input timeout; without one they end on their own); either way every input has
  its manifest line;
- a missing input is the operator's mistake, not bad content: it ends `failed: not_found`, and
  a run with any failed input ends in Prefect's Failed state (Cancelled when it was stopped), so
  a typo never shows as a green run.
"""

from __future__ import annotations

import contextvars
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Protocol, TypeVar, cast

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.filesystems import WritableFileSystem
from prefect.futures import as_completed
from prefect.runtime import flow_run
from prefect.states import Cancelled, Failed, State
from prefect.utilities.annotations import quote
from pydantic import BaseModel, Field, field_validator

from mmflow.blocks.storage import storage_for
from mmflow.flows import assets, engine_exit, observe, stopping
from mmflow.flows.assets import (
    asset_events_sent_together,
    flush_asset_events,
    output_assets,
    record_outputs,
)
from mmflow.flows.progress import ItemDone, listening, publish
from mmflow.flows.steps import InlineSteps, PrefectSteps, StepRunner
from mmflow.tasks import redaction
from mmflow.tasks.caching import Stopped
from mmflow.tasks.errors import (
    FailureCode,
    MmflowError,
    OutputNotWritten,
    Rejection,
    RejectionCode,
)
from mmflow.tasks.inputs import (
    MAX_INPUT_BYTES,
    expand_inputs,
    forget_input,
    hash_input,
    open_input,
    refuse_credentials,
)
from mmflow.tasks.models import ErrorInfo, ManifestEntry, Status
from mmflow.tasks.persist import Manifest, OutputNames, check_output_location, json_safe
from mmflow.tasks.trace import LABEL_PATTERN, TraceLabels

R = TypeVar("R")

engine_exit.install()  # every flow that runs inputs ends with its body (flows/engine_exit.py)


class Pipeline(Protocol):
    """What a scenario tells the runner: how to process one input and how to report it."""

    Options: ClassVar[type[BaseModel]]  # what changes the results (part of every cache key)

    @property
    def name(self) -> str:
        """The scenario's name: artifacts, task runs, assets."""
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
        """What the run's table artifact and the CLI show for this input. `review` (a list of
        reasons) marks a result whose checks failed outright: `strict` runs fail it."""
        ...

    def finish(self, out: str, summaries: list[InputSummary]) -> dict[str, Any]:
        """Once every input has ended: what the run as a whole writes (a table over every
        result, a synthesis over the answers); returns figures for the run's report."""
        ...


class RunSettings(BaseModel):
    """How a run is carried out. Nothing here changes what a step computes."""

    workers: int = Field(
        2, ge=1, le=64, description="Inputs (or groups of them) processed at once."
    )
    cache: bool = Field(True, description="Reuse the results of steps whose inputs are unchanged.")
    cache_dir: str | None = Field(
        None,
        description="Folder or s3:// prefix where step results persist "
        "(default: MMFLOW_CACHE_DIR or ~/.cache/mmflow/results).",
    )
    strict: bool = Field(
        False,
        description="An input whose checks fail outright (it would be marked for review) ends "
        "`failed` instead of `ok`.",
    )
    input_timeout_s: float | None = Field(
        None,
        gt=0,
        description="An input still running after this many seconds ends `failed: timeout`; the "
        "others go on.",
    )
    group_size: int | None = Field(
        None,
        ge=1,
        description="Inputs per task run in large runs (default: two groups per worker, ≤ 25; "
        "in worker processes, a worker's share, ≤ 100).",
    )
    stepwise_max: int = Field(
        4, ge=0, description="Runs of up to this many inputs show every step as its own task run."
    )
    # Who and what a run is for: they label its traces, metrics and cost-ledger rows, and
    # choose the tenant's quota (docs/observability.md).
    tenant: str | None = Field(
        None,
        pattern=LABEL_PATTERN,
        description="Who the run is for (a customer, a team): its traces, metrics and cost "
        "ledger rows carry it, and its quota applies to the run's model calls.",
    )
    feature: str | None = Field(
        None,
        pattern=LABEL_PATTERN,
        description="What the run serves (a product feature): costs are reported by it "
        "(`mmflow costs --by feature`).",
    )

    @field_validator("tenant", "feature", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        """An empty label (a form left blank, a webhook without the header) is no label."""
        return None if isinstance(value, str) and not value.strip() else value


class InputSummary(ManifestEntry):
    """One input's ending: its manifest line, plus what the scenario reports about it."""

    details: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def of_entry(cls, entry: ManifestEntry) -> InputSummary:
        """An input an earlier run ended, as its manifest line tells it (its trace is that
        run's: this run did not process it)."""
        return cls(**entry.model_dump(include={"uri", "sha256", "status", "error", "output"}))

    def manifest_entry(self) -> ManifestEntry:
        return ManifestEntry(**{name: getattr(self, name) for name in ManifestEntry.model_fields})


@dataclass(frozen=True)
class RunContext:
    """Where and how one run writes: what every input of the run shares."""

    pipeline: Pipeline
    out: str
    storage: WritableFileSystem | None  # the step cache; None: no cache
    run_id: str
    manifest: Manifest
    names: OutputNames
    settings: RunSettings
    labels: dict[str, str] = field(default_factory=dict)  # input → display name
    process: str = assets.PROCESS  # the flow's process (flows/assets.py)

    def label(self, uri: str) -> str:
        return self.labels.get(uri) or display_name(uri)

    @property
    def trace_labels(self) -> TraceLabels:
        """Who and what the run is for, on every input's trace (flows/observe.py)."""
        settings = self.settings
        return TraceLabels(self.pipeline.name, self.run_id, settings.tenant, settings.feature)


class RunReport(BaseModel):
    """What a scenario run returns: every input's ending, and the pipeline's run-level figures."""

    scenario: str
    out: str
    inputs: list[InputSummary]
    totals: dict[str, Any] = Field(default_factory=dict)
    stopped: bool = False  # a stop was asked: inputs not started ended `failed: interrupted`

    def count(self, status: Status) -> int:
        return sum(s.status is status for s in self.inputs)

    @property
    def failed(self) -> int:
        return self.count(Status.FAILED)


class RunFailed(MmflowError):
    """A run in which some input failed (or that was stopped): raised by calling the flow, and
    the data of its Failed (Cancelled) state; `report` holds every input's ending."""

    def __init__(self, message: str, report: Any) -> None:
        super().__init__(message)
        self.report = report

    def __reduce__(self) -> tuple[type[RunFailed], tuple[str, Any]]:
        return (type(self), (str(self), self.report))


class RunStopped(RunFailed):
    """A run stopped before every input could end."""


def report_of(result: Any) -> Any:
    """The report a flow's state carries, whether it completed, failed or was stopped."""
    return result.report if isinstance(result, RunFailed) else result


class InputTimeout(Exception):
    """An input ran longer than the run's `input_timeout_s`."""


class Interrupted(Exception):
    """A stop was asked before the input could end."""


def as_is(value: R) -> R:
    """Hand a task this very object: Prefect must not walk or copy it (a live provider, a
    budget's lock, the manifest's lock)."""
    return cast(R, quote(value))


def default_cache_dir() -> str:
    return os.environ.get("MMFLOW_CACHE_DIR", str(Path.home() / ".cache" / "mmflow" / "results"))


def result_storage(cache: bool, cache_dir: str | None) -> WritableFileSystem | None:
    """A local folder or an `s3://…` prefix (a `RemoteFileSystem` block) for step results."""
    return storage_for(cache_dir or default_cache_dir()) if cache else None


def display_name(uri: str) -> str:
    """How an input is named in run names, task-run names and the CLI: its file name."""
    return PurePosixPath(uri.replace("\\", "/")).name or uri


def _bounded(call: Callable[[], R], timeout_s: float | None, label: str) -> R:
    """`call()` in a thread of its own, given up after `timeout_s`, or once a stop was asked and
    the grace period is over. A thread given up on runs to its end unobserved: Python cannot
    kill a thread; its result is dropped and the input is recorded as timed out.

    Without a timeout, `call()` runs here: a thread per input cost ~5 ms of handing the GIL
    back and forth in a batch of small inputs (docs/performance.md), and an input already
    running when a stop is asked then ends on its own (a second Ctrl-C stops at once)."""
    if timeout_s is None:
        return call()
    box: Future[R] = Future()
    context = contextvars.copy_context()  # the flow (or task) run this input belongs to

    def work() -> None:
        try:
            box.set_result(context.run(call))
        except BaseException as error:  # handed to the waiting thread, which raises it
            box.set_exception(error)

    threading.Thread(target=work, name=f"input {label}"[:60], daemon=True).start()
    started = time.monotonic()
    stop_seen: float | None = None
    while True:
        try:
            return box.result(timeout=0.2)
        except FutureTimeout:
            now = time.monotonic()
            if timeout_s is not None and now - started > timeout_s:
                raise InputTimeout(
                    f"still running after {timeout_s:g} s (the run's input timeout); it may be "
                    "too large or complex — raise the timeout or check the file"
                ) from None
            if stopping.stop_requested():
                stop_seen = stop_seen or now
                if now - stop_seen > stopping.GRACE_S:
                    raise Interrupted(
                        "the run was stopped while this input was running; run the same "
                        "command again to finish it"
                    ) from None


def _failure(code: str, message: str) -> ErrorInfo:
    return ErrorInfo(code=code, message=message)


def other_scenario_hint(uri: str, scenario: str) -> str:
    """For a file this scenario cannot read: which other scenario takes it, if one does."""
    import puremagic

    from mmflow.flows import registry

    try:
        with open_input(uri) as handle:
            head = handle.read(8192)
        media = puremagic.from_string(head, mime=True)
    except (puremagic.PureError, ValueError, OSError, Rejection):
        return ""
    if not media or media == "application/octet-stream":
        return ""
    takers = [
        s.name
        for s in registry.scenarios()
        if s.name != scenario and s.accepts(media) and media != "application/octet-stream"
    ]
    if not takers:
        return ""
    commands = " or ".join(f"`mmflow run {name}`" for name in takers)
    return f" It looks like {media}: {commands} reads it."


def _with_hint(error: ErrorInfo, uri: str, scenario: str) -> ErrorInfo:
    if error.code != RejectionCode.UNSUPPORTED_FORMAT.value:
        return error
    return error.model_copy(update={"message": error.message + other_scenario_hint(uri, scenario)})


def run_input(uri: str, steps: StepRunner, run: RunContext) -> InputSummary:
    """Process one input and write its outputs; whatever happens, it ends in the manifest."""
    pipeline, settings, run_id = run.pipeline, run.settings, run.run_id
    observed = observe.start_input(
        run.trace_labels
    )  # its trace: steps, model calls, quota (flows/observe.py)
    steps = observed.steps(steps)
    sha256: str | None = None
    status, error, output, details = Status.FAILED, None, None, {}
    outputs: list[str] | None = None
    sizes: dict[str, int] | None = None
    try:
        if stopping.stop_requested():
            raise Interrupted(
                "the run was stopped before this input started; run the same "
                "command again to finish it"
            )
        # Streamed, and refused from its size first when the scenario reads less than this.
        sha256 = hash_input(uri, getattr(pipeline, "max_input_bytes", MAX_INPUT_BYTES))
        digest = sha256
        result = _bounded(
            lambda: pipeline.process(uri, digest, steps, run_id),
            settings.input_timeout_s,
            run.label(uri),
        )
        written = pipeline.write(result, run.out, run.names.stem_for(uri, sha256))
        output = next(iter(written))
        sizes = {path: len(data) for path, data in written.items()}
        record_outputs(output_assets(pipeline.name, uri, written))  # lineage as Prefect assets
        details = pipeline.details(result)
        documents = details.get("documents")  # an input holding several documents
        if isinstance(documents, int) and documents > 1:
            outputs = list(written)[:documents]  # their result files come first, in page order
        status = Status.OK
        if settings.strict and details.get("review"):
            status = Status.FAILED
            reasons = details.get("review_reasons") or ["a check failed"]
            error = _failure(
                FailureCode.CHECKS_FAILED, "checks failed (strict run): " + "; ".join(reasons)
            )
    except Rejection as rejection:  # the input could not be read at all
        # A path that does not exist is the operator's mistake, not bad content: an error.
        status = Status.FAILED if rejection.code is RejectionCode.NOT_FOUND else Status.REJECTED
        error = _with_hint(_failure(rejection.code.value, rejection.message), uri, pipeline.name)
    except Stopped as stop:
        status, error = Status.REJECTED, _with_hint(stop.rejected.error, uri, pipeline.name)
    except InputTimeout as timeout:
        error = _failure(FailureCode.TIMEOUT, str(timeout))
    except Interrupted as interrupted:
        error = _failure(FailureCode.INTERRUPTED, str(interrupted))
    except OutputNotWritten as unwritten:  # a full disk, a storage error: names file and cause
        error = _failure(FailureCode.OUTPUT_NOT_WRITTEN, str(unwritten))
    except Exception as exc:  # a defect or lasting I/O trouble: record it, the batch goes on
        error = _failure(FailureCode.PROCESSING_ERROR, f"{type(exc).__name__}: {exc}")
    finally:
        forget_input(uri)
    summary = InputSummary(
        uri=uri,
        sha256=sha256,
        status=status,
        error=error,
        output=output,
        outputs=outputs,
        documents=len(outputs) if outputs else None,
        output_bytes=sizes,
        details=details,
        trace=observed.end(status, error, details),
    )
    run.manifest.append(summary.manifest_entry())
    publish(done_event(summary))
    return summary


@task(
    name="process-inputs",
    task_run_name="{scenario} {first} (+{extra})",
    cache_policy=NO_CACHE,  # each step inside caches itself; a failure is recorded per input
)
def process_inputs(
    scenario: str, first: str, extra: int, uris: list[str], run: RunContext
) -> list[InputSummary]:
    """A group of inputs in one task run; every step inside still reads and writes the cache.
    The group's asset events go to the API in one request at its end."""
    here = run.process == assets.PROCESS  # a thread of the flow's process, not a worker's
    with InlineSteps(run.storage, run.run_id) as steps, asset_events_sent_together(later=here):
        return [run_input(uri, steps, run) for uri in uris]


def done_event(summary: InputSummary) -> ItemDone:
    """A progress event; a scenario may count in its own units (seconds of audio), default 1."""
    units = float(summary.details.get("progress_units", 1.0))
    return ItemDone(uri=summary.uri, status=summary.status.value, units=units)


def default_group_size(inputs: int, workers: int, in_processes: bool = False) -> int:
    """Two groups per worker so the pool stays busy, at most 25 inputs per task run.

    A task run in a worker process (Dask, Ray, `processes`) costs ~0.1–0.35 s more than in a
    thread (benchmarks/runner_overhead.py), so there a group is a worker's share, at most
    100 inputs: 200 text PDFs of ~25 ms each would otherwise spend a third of their time
    starting 8 task runs."""
    if in_processes:
        return max(1, min(100, math.ceil(inputs / workers)))
    return max(1, min(25, math.ceil(inputs / (2 * workers))))


def _task_runs_in_other_processes() -> bool:
    """Whether this flow run's task runner runs task runs outside this process."""
    from prefect.context import FlowRunContext
    from prefect.task_runners import ThreadPoolTaskRunner

    context = FlowRunContext.get()
    return context is not None and not isinstance(context.task_runner, ThreadPoolTaskRunner)


def run_groups(
    run: RunContext,
    uris: list[str],
    on_group: Callable[[list[InputSummary]], None] | None = None,
) -> list[InputSummary]:
    """Inputs in groups per task run, on the flow's task runner; results in order.

    Worker processes (Dask, Ray) cannot reach this process's progress listeners, so inputs a
    group reports that no listener heard of are announced here when the group returns. A group
    whose task run dies as a whole (a killed worker) still ends each of its inputs in the
    manifest, as failed.
    """
    size = run.settings.group_size or default_group_size(
        len(uris), run.settings.workers, _task_runs_in_other_processes()
    )
    groups = [uris[i : i + size] for i in range(0, len(uris), size)]
    heard: set[str] = set()
    with listening(lambda event: heard.add(event.uri)):
        try:
            ended = _run_each(run, groups, heard, on_group)
        finally:  # groups here sent their asset events in the background: all are sent now
            flush_asset_events()
    return [summary for index in range(len(groups)) for summary in ended[index]]


def _run_each(
    run: RunContext,
    groups: list[list[str]],
    heard: set[str],
    on_group: Callable[[list[InputSummary]], None] | None,
) -> dict[int, list[InputSummary]]:
    """Submit every group; each one's summaries (by group index) once it ends."""
    futures = {
        process_inputs.submit(run.pipeline.name, run.label(group[0]), len(group) - 1, group, run): i
        for i, group in enumerate(groups)
    }
    ended: dict[int, list[InputSummary]] = {}
    for future in as_completed(list(futures)):
        index = futures[future]
        try:
            summaries = future.result()
        except Exception as error:
            summaries = [_group_lost(uri, error, run.manifest) for uri in groups[index]]
        for summary in summaries:
            if summary.uri not in heard:
                publish(done_event(summary))
        ended[index] = summaries
        if on_group is not None:
            on_group(summaries)
    return ended


def _group_lost(uri: str, error: Exception, manifest: Manifest) -> InputSummary:
    message = f"its task run ended without a result ({type(error).__name__}: {error}); run again"
    summary = InputSummary(
        uri=uri,
        sha256=None,
        status=Status.FAILED,
        error=_failure(FailureCode.PROCESSING_ERROR, message),
    )
    manifest.append(summary.manifest_entry())
    return summary


def run_stepwise(run: RunContext, uris: list[str]) -> list[InputSummary]:
    """A few inputs, each step its own task run; up to `workers` inputs at once."""

    def one(uri: str) -> InputSummary:
        return run_input(uri, PrefectSteps(run.storage, run.run_id, run.label(uri)), run)

    if run.settings.workers == 1 or len(uris) == 1:
        return [one(uri) for uri in uris]
    with ThreadPoolExecutor(run.settings.workers, thread_name_prefix="input") as pool:
        futures = [pool.submit(contextvars.copy_context().run, one, uri) for uri in uris]
        return [future.result() for future in futures]


def input_labels(uris: Sequence[str], names: Sequence[str] | None) -> dict[str, str]:
    """Each input's display name: as given (the webhook passes the uploaded file's name), else
    its file name."""
    given = list(names or [])
    return {
        uri: (given[i] if i < len(given) and given[i] else display_name(uri))
        for i, uri in enumerate(uris)
    }


def run_inputs(run: RunContext, uris: list[str]) -> list[InputSummary]:
    """Every input through the pipeline, one manifest line each, then the manifest compacted."""
    run.names.reserve(uris)
    if len(uris) <= run.settings.stepwise_max:
        summaries = run_stepwise(run, uris)
    else:
        summaries = run_groups(run, uris)
    run.manifest.compact(order=uris)
    return summaries


def run_scenario(
    pipeline: Pipeline,
    inputs: list[str],
    out: str,
    settings: RunSettings,
    names: list[str] | None = None,
) -> RunReport | State[Any]:
    """A scenario flow's body: expand the inputs, run them all into `out`, finish the run.

    Returns the report, or a Failed (some input failed) or Cancelled (a stop was asked) state
    that carries it, so the flow run's state says what happened.
    """
    redaction.install()  # logs of this run, and the secrets of its environment
    with redaction.secrets_kept_out_of_errors():  # the run's state message is stored
        return _run_scenario(pipeline, inputs, out, settings, names)


def _run_scenario(
    pipeline: Pipeline,
    inputs: list[str],
    out: str,
    settings: RunSettings,
    names: list[str] | None,
) -> RunReport | State[Any]:
    refuse_credentials(inputs, "the input")
    refuse_credentials([out], "OUT")
    check_output_location(out)
    uris = expand_inputs(inputs)
    run = RunContext(
        pipeline=pipeline,
        out=out,
        storage=result_storage(settings.cache, settings.cache_dir),
        run_id=str(flow_run.get_id() or "local"),
        manifest=Manifest(out),
        names=OutputNames(),
        settings=settings,
        labels=input_labels(uris, names),
    )
    summaries = run_inputs(run, uris)
    report = RunReport(
        scenario=pipeline.name,
        out=out,
        inputs=summaries,
        totals=observe.run_level(run.trace_labels, lambda: pipeline.finish(out, summaries)),
        stopped=stopping.stop_requested(),
    )
    publish_results(report.scenario, report.out, report.inputs)
    return final_state(report)


def publish_results(scenario: str, out: str, inputs: list[InputSummary]) -> None:
    """The run's table artifact: one row per input; then the run's telemetry is closed (alert
    conditions as Prefect events, metrics file or push, spans sent)."""
    create_table_artifact(
        key=f"{scenario}-results",
        table=redaction.redact_data([summary_row(s) for s in inputs]),
        description=redaction.redact(f"{scenario}: {len(inputs)} inputs → {out}"),
    )
    observe.run_ended(scenario, inputs)


def final_state(report: R) -> R | State[Any]:
    """Completed with the report; Failed when an input failed; Cancelled when stopped."""
    inputs: list[InputSummary] = getattr(report, "inputs", [])
    failed = [s for s in inputs if s.status is Status.FAILED]
    if getattr(report, "stopped", False):
        message = (
            f"stopped: {len(inputs) - len(failed)} of {len(inputs)} inputs ended; "
            "run the same command again to finish the rest"
        )
        return Cancelled(message=message, data=RunStopped(message, report))
    if failed:
        codes = sorted({s.error.code for s in failed if s.error})
        message = (
            f"{len(failed)} of {len(inputs)} inputs failed ({', '.join(codes)}); see the manifest"
        )
        return Failed(message=message, data=RunFailed(message, report))
    return report


def summary_row(summary: InputSummary) -> dict[str, Any]:
    """A table-artifact row: the manifest fields and the scenario's scalar details."""
    return {
        "input": summary.uri,
        "status": summary.status.value,
        "error": summary.error.code if summary.error else None,
        **{k: json_safe(v) for k, v in summary.details.items() if not isinstance(v, list)},
    }


def run_name(scenario: str) -> Callable[[], str]:
    """A flow-run name from its parameters: the scenario and the first input's display name
    (`invoice acme-march.pdf (+3)`), so a webhook-started run is found by the file's name."""

    def name() -> str:
        parameters = flow_run.parameters or {}
        inputs = list(parameters.get("inputs") or [])
        labels = input_labels(inputs, parameters.get("names"))
        first = labels.get(inputs[0], "") if inputs else ""
        more = f" (+{len(inputs) - 1})" if len(inputs) > 1 else ""
        return redaction.redact(f"{scenario} {first}{more}".strip())

    return name
