"""The batch flow: every file under a folder or bucket prefix through one scenario, resumably.

A batch lists its source, hashes every input, and plans before it computes anything:
- the same bytes under two names are processed once; the second name is recorded as a
  `duplicate` rejection that names the first (docs/architecture.md: content addressing);
- an input the manifest in `out` already ends (`ok` or `rejected`, same sha256) is not
  touched again, so re-running the same command after a crash or a kill -9 finishes the rest;
  `failed` inputs are tried again;
- the rest run in groups, several inputs per task run, on the flow's task runner.
Every listed input ends with exactly one manifest line. A progress artifact follows the groups
as they return and a report artifact sums the batch up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast
from uuid import UUID

import fsspec
from prefect import flow
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)
from prefect.runtime import flow_run
from prefect.states import State
from pydantic import BaseModel, Field, ValidationError

from mmflow.flows import registry, stopping
from mmflow.flows.progress import publish
from mmflow.flows.runs import (
    InputSummary,
    Pipeline,
    RunContext,
    RunSettings,
    done_event,
    final_state,
    publish_results,
    result_storage,
    run_groups,
)
from mmflow.tasks import redaction
from mmflow.tasks.errors import RejectionCode
from mmflow.tasks.inputs import (
    MAX_INPUT_BYTES,
    expand_inputs,
    forget_input,
    hash_input,
    refuse_credentials,
    sha256_of,
)
from mmflow.tasks.models import ErrorInfo, ManifestEntry, Status
from mmflow.tasks.persist import (
    Manifest,
    OutputLock,
    OutputNames,
    check_output_location,
)

HASH_THREADS = 8  # listing and hashing is I/O: object stores answer many reads at once
NOTHING = sha256_of(b"")  # empty files are each rejected as empty, not as copies of each other


class BatchPlan(BaseModel):
    """What a batch will do with each listed input, decided before anything runs."""

    todo: list[str] = Field(default_factory=list)
    resumed: list[ManifestEntry] = Field(default_factory=list)
    duplicates: list[ManifestEntry] = Field(default_factory=list)
    redo: dict[str, str] = Field(default_factory=dict)  # ended before, result lost: why redone


def hash_inputs(
    uris: list[str], max_bytes: int = MAX_INPUT_BYTES, threads: int = HASH_THREADS
) -> dict[str, str | None]:
    """sha256 of each input's bytes; None where it cannot be read or is over `max_bytes` (its
    run records why). Planning holds the scenario's bound too: a sparse 3 GB file given to the
    invoice flow (50 MB) is judged from its size, not streamed for half a minute first."""

    def digest(uri: str) -> str | None:
        try:
            return hash_input(uri, max_bytes)  # streamed: 8 threads never hold 8 whole inputs
        except Exception:
            return None

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return dict(zip(uris, pool.map(digest, uris), strict=True))


def plan_batch(
    uris: list[str],
    hashes: dict[str, str | None],
    before: dict[str, ManifestEntry],
    outputs: Mapping[str, int] | None = None,
) -> BatchPlan:
    """Split the listing into new work, inputs already ended, and duplicates of an earlier name.

    `outputs` (the files OUT holds and their sizes, if known) sends an input whose result is
    gone, empty or cut short back to work, with a note, instead of trusting its manifest line.
    """
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
            damage = result_damage(earlier, outputs) if outputs is not None else None
            if damage is not None:
                plan.redo[uri] = f"{damage}; computed again"
                plan.todo.append(uri)
            else:
                plan.resumed.append(earlier)
        else:
            plan.todo.append(uri)
    return plan


def result_damage(entry: ManifestEntry, outputs: Mapping[str, int]) -> str | None:
    """What is wrong with the files an `ok` line names, judged from a listing (no file is read):
    missing, empty, or (where the line recorded sizes) not the size written. None: intact."""
    if entry.status is not Status.OK:
        return None
    expected: dict[str, int | None] = dict(entry.output_bytes or {})
    for path in entry.outputs or ([entry.output] if entry.output else []):
        expected.setdefault(path, None)  # a line from an mmflow that recorded no sizes
    for path, size in expected.items():
        found = outputs.get(path)
        if not found:
            return f"its result {path} was missing or empty"
        if size is not None and found != size:
            return f"its result {path} holds {found} bytes, not the {size} written (cut short?)"
    return None


def existing_outputs(out: str) -> dict[str, int]:
    """Every file under OUT and its size, named as the manifest names outputs (one listing)."""
    fs, root = fsspec.core.url_to_fs(out)
    fs.invalidate_cache()
    prefix = out.split("://", 1)[0] + "://" if "://" in out else ""
    found = fs.find(root, detail=True)
    return {
        (prefix + path if prefix else path): int(info.get("size") or 0)
        for path, info in found.items()
        if info.get("type") == "file"
    }


class BatchReport(BaseModel):
    source: str
    out: str
    scenario: str
    listed: int
    processed_inputs: list[str]  # computed by this run
    resumed: int  # already ended in `out` before this run
    duplicates: int
    redone: dict[str, str] = Field(default_factory=dict)  # input → why its result was redone
    seconds: float
    inputs: list[InputSummary]
    totals: dict[str, Any] = Field(default_factory=dict)
    stopped: bool = False

    @property
    def processed(self) -> int:
        return len(self.processed_inputs)

    def count(self, status: Status) -> int:
        return sum(s.status is status for s in self.inputs)

    @property
    def failed(self) -> int:
        return self.count(Status.FAILED)


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
        ("redone (result missing)", len(report.redone)),
        ("ok", report.count(Status.OK)),
        ("rejected", report.count(Status.REJECTED)),
        ("failed", report.count(Status.FAILED)),
    ]
    rate = report.processed / report.seconds if report.seconds else 0.0
    lines = [
        f"# Batch {report.scenario}: {report.source} → {report.out}",
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
    if report.redone:
        lines += ["", "## Redone", ""]
        lines += [f"- `{uri}`: {why}" for uri, why in list(report.redone.items())[:20]]
    return "\n".join(lines) + "\n"


def batch_pipeline(scenario: str, options: dict[str, Any] | None) -> Pipeline:
    """The named scenario's pipeline with its options validated; a clear error otherwise."""
    entry = registry.get(scenario)
    if not entry.batch:
        batchable = [s.name for s in registry.scenarios() if s.batch]
        raise ValueError(f"scenario {scenario!r} has no batch mode; these do: {batchable}")
    pipeline_class = entry.load_pipeline()
    try:
        parsed = pipeline_class.Options.model_validate(options or {})
    except ValidationError as error:
        raise ValueError(f"options for {scenario}: {error}") from error
    return pipeline_class(parsed)


def check_source(source: str) -> str:
    """A batch source must be named: an empty one would list the worker's working directory."""
    cleaned = source.strip()
    if not cleaned or cleaned in (".", "./") or "{{" in cleaned:
        raise ValueError(
            f"the batch source is {source!r}: name the folder, glob or s3:// prefix to process "
            "(for the scheduled deployment, set MMFLOW_BATCH_SOURCE before `prefect deploy`, "
            "or the deployment's `source` parameter)"
        )
    return cleaned


def batch_run_name() -> str:
    """`batch <scenario> <source>`, redacted: a source URL may carry a key or a signature."""
    parameters = flow_run.parameters or {}
    scenario, source = parameters.get("scenario", "invoice"), parameters.get("source", "")
    return redaction.redact(f"batch {scenario} {source}")


@flow(name="batch", log_prints=True, flow_run_name=batch_run_name)
def batch_flow(
    source: str,
    out: str,
    scenario: str = "invoice",
    options: dict[str, Any] | None = None,
    run: RunSettings = RunSettings(),
) -> BatchReport | State[Any]:
    """Process every file in a folder or bucket prefix (`s3://bucket/prefix/`), resumably.

    Run it again with the same `source` and `out` after a crash and it completes the rest:
    inputs already in the manifest are not recomputed, duplicates are processed once.

    Args:
        source: The folder, glob or s3:// prefix whose files are processed.
        out: Absolute folder or s3:// prefix for the results and manifest.jsonl; one batch at
            a time may write into it.
        scenario: What every input is: a registered scenario (invoice, meeting, image, …).
        options: The scenario's options (as in its own deployment), by field name.
        run: Workers, caching, timeouts and strictness of the run.
    """
    started = time.perf_counter()
    redaction.install()  # logs of this run, and the secrets of its environment
    with redaction.secrets_kept_out_of_errors():  # the run's state message is stored
        refuse_credentials([source], "the batch source")
        refuse_credentials([out], "OUT")
        source = check_source(source)
        pipeline = batch_pipeline(scenario, options)
        check_output_location(out)
        with OutputLock(out, timeout_s=0, name=".mmflow-batch.lock"):
            report = _run_batch(pipeline, source, out, run, started)
    create_markdown_artifact(
        key=f"{pipeline.name}-batch-report",
        markdown=redaction.redact(_report_markdown(report)),
        description=redaction.redact(f"batch {pipeline.name}: {source}"),
    )
    publish_results(report.scenario, report.out, report.inputs)
    return final_state(report)


def _run_batch(
    pipeline: Pipeline, source: str, out: str, run: RunSettings, started: float
) -> BatchReport:
    uris = expand_inputs([source])
    manifest = Manifest(out)
    before = manifest.latest()
    hashes = hash_inputs(uris, getattr(pipeline, "max_input_bytes", MAX_INPUT_BYTES))
    plan = plan_batch(uris, hashes, before, existing_outputs(out))

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

    progress = _Progress(f"{pipeline.name}-batch-progress", len(uris), len(ended_before))
    on_group: Callable[[list[InputSummary]], None] = progress.advance
    context = RunContext(
        pipeline=pipeline,
        out=out,
        storage=result_storage(run.cache, run.cache_dir),
        run_id=str(flow_run.get_id() or "local"),
        manifest=manifest,
        names=names,
        settings=run,
    )
    processed = run_groups(context, plan.todo, on_group)
    manifest.compact(order=uris)
    by_uri = {s.uri: s for s in ended_before + processed}
    summaries = [by_uri[uri] for uri in uris]
    return BatchReport(
        source=source,
        out=out,
        scenario=pipeline.name,
        listed=len(uris),
        processed_inputs=[s.uri for s in processed],
        resumed=len(plan.resumed),
        duplicates=len(plan.duplicates),
        redone=plan.redo,
        seconds=round(time.perf_counter() - started, 3),
        inputs=summaries,
        totals=pipeline.finish(out, processed),
        stopped=stopping.stop_requested(),
    )
