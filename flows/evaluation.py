"""The evaluation flow: a tier's datasets run through the scenario flows, scored, kept in the
history, gated against the accepted baseline, and published as artifacts.

```
tier ─► per dataset: prepare (public in place │ generated from a seed) ─► run its scenario flow
        (a subflow, exactly as production runs it) ─► score ─┐
                                                             ├─► results.json ─► history ─► gate
                                                             └─► trend chart + report (artifacts)
```

A dataset that cannot run (missing data, a crash) is recorded with its reason and fails the
gate; one that needs a model when no provider (or judge) was given is skipped, not gated. A
regression of more than the tolerance on a primary metric ends the run Failed, its data an
`EvalFailed` carrying the run and the gate.
"""

from __future__ import annotations

import shutil
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.states import Failed, State
from pydantic import BaseModel

from mmflow.flows.runs import RunFailed, RunSettings, as_is
from mmflow.tasks.errors import MmflowError
from mmflow.tasks.eval import gate as gating
from mmflow.tasks.eval import scoring
from mmflow.tasks.eval.datasets import (
    Dataset,
    DatasetKind,
    DatasetUnavailable,
    PreparedDataset,
    data_root,
    prepare,
    tier_datasets,
)
from mmflow.tasks.eval.history import HistoryStore
from mmflow.tasks.eval.report import render_markdown
from mmflow.tasks.eval.results import DatasetOutcome, EvalRun, Metric, Tier
from mmflow.tasks.eval.trend import trend_png
from mmflow.tasks.eval.version import code_version
from mmflow.tasks.models import Usd
from mmflow.tasks.provider import Budget

Scored = tuple[list[Metric], list[str]]
NOTE_CHARS = 300  # how much of a broken run's message a note keeps


class EvalOutcome(BaseModel):
    """What an evaluation run returns: the run, the gate's verdict, and where it wrote."""

    run: EvalRun
    gate: gating.GateResult | None
    out: str
    history: str
    rows: int


class EvalFailed(MmflowError):
    """The gate failed: raised by calling the flow, and the data of its Failed state."""

    def __init__(self, message: str, outcome: Any) -> None:
        super().__init__(message)
        self.outcome = outcome

    def __reduce__(self) -> tuple[type[EvalFailed], tuple[str, Any]]:
        return (type(self), (str(self), self.outcome))


# ---------------------------------------------------------------- tasks


@task(name="prepare-dataset", task_run_name="prepare {dataset.name}", cache_policy=NO_CACHE)
def prepare_dataset(dataset: Dataset, root: Path, work: Path) -> PreparedDataset:
    """Public sets are found in place; generated ones written afresh (same seed, same bytes)."""
    if work.exists():
        shutil.rmtree(work)
    return prepare(dataset, root, work)


@task(name="ocr-pages", task_run_name="ocr {prepared.name}", cache_policy=NO_CACHE)
def ocr_pages(prepared: PreparedDataset) -> dict[str, Any]:
    """The OCR step on every scan of the dataset (the engine the invoice flow uses)."""
    from PIL import Image

    from mmflow.tasks.ocr import ocr_image

    pages = {}
    for uri in prepared.inputs:
        with Image.open(uri) as image:
            image.load()
            pages[uri] = ocr_image(image, 1)
    return pages


@task(name="score-dataset", task_run_name="score {prepared.name}", cache_policy=NO_CACHE)
def score_dataset(
    prepared: PreparedDataset, outputs: Path, judge: Any = None, budget: Any = None
) -> Scored:
    kind = prepared.kind
    if kind is DatasetKind.INVOICE:
        metrics, notes = scoring.score_invoice(prepared, outputs)
    elif kind is DatasetKind.MEETING:
        metrics, notes = scoring.score_meeting(prepared, outputs)
    elif kind is DatasetKind.BAD_INPUTS:
        return scoring.score_bad_inputs(prepared, outputs)
    elif kind is DatasetKind.CHART:
        metrics, notes = scoring.score_charts(prepared, outputs)
    elif kind is DatasetKind.DESCRIBE:
        metrics, notes = scoring.score_describe(prepared, outputs, judge, budget)
    else:
        raise ValueError(f"{kind} is not scored from flow outputs")
    ok, failed = scoring.inputs_ok(prepared, outputs)
    return [ok, *metrics], failed + notes


@task(name="record-history", cache_policy=NO_CACHE)
def record_history(run: EvalRun, url: str | None) -> tuple[int, str]:
    store = HistoryStore(url)
    try:
        return store.append(run), store.url
    finally:
        store.close()


@task(name="check-gate", cache_policy=NO_CACHE)
def check_gate(run: EvalRun, baseline_file: Path, whole_tier: bool) -> gating.GateResult:
    baseline = gating.load_baseline(baseline_file)
    return gating.check(run, baseline, baseline_file, whole_tier)


@task(name="publish-report", cache_policy=NO_CACHE)
def publish_report(
    run: EvalRun, gate: gating.GateResult | None, baseline_file: Path, url: str, out: Path
) -> Path:
    """trend.png and report.md in `out`, and the report (chart inline) as a markdown artifact."""
    store = HistoryStore(url)
    try:
        rows = store.rows(run.tier, primary_only=True)
    finally:
        store.close()
    baseline = gating.load_baseline(baseline_file)
    png = trend_png(rows, baseline, f"mmflow eval · {run.tier} · {run.code.label}")
    (out / "trend.png").write_bytes(png)
    markdown = render_markdown(run, gate, baseline, png)
    path = out / "report.md"
    path.write_text(markdown, encoding="utf-8")
    create_markdown_artifact(
        key=f"mmflow-eval-{run.tier.value}",
        markdown=markdown,
        description=f"mmflow evaluation of tier {run.tier}: figures, gate, trend",
    )
    return path


# ---------------------------------------------------------------- one dataset


def _run_scenario(
    name: str, prepared: PreparedDataset, outputs: Path, **parameters: Any
) -> str | None:
    """The scenario's own flow as a subflow. Its Failed state because some input failed is a
    result here, scored like any other (`inputs_ok` says how many ended ok); a run that broke
    otherwise (a crash after the inputs, in what the run writes as a whole) is returned as a
    note for the report, since the inputs' own results are still scored."""
    from mmflow.flows import registry

    scenario_flow = registry.get(name).load_flow()
    state = cast(
        "State[Any]",
        scenario_flow(inputs=prepared.inputs, out=str(outputs), return_state=True, **parameters),
    )
    if state.is_completed():
        return None
    data = state.result(raise_on_failure=False)
    if isinstance(data, RunFailed):
        return None
    why = f"{type(data).__name__}: {data}" if isinstance(data, BaseException) else state.message
    said = " ".join(str(why or "").split())  # a multi-line message (a schema's report) as one
    if len(said) > NOTE_CHARS:
        said = said[:NOTE_CHARS] + " …"
    return f"the {name} flow run ended {state.type.value}, not because of an input: {said}"


def evaluate_dataset(
    dataset: Dataset,
    root: Path,
    folder: Path,
    run: RunSettings,
    provider: str | None,
    judge: Any,
    budget: Budget,
) -> DatasetOutcome:
    """Prepare, run and score one dataset; whatever goes wrong is its outcome's `error`."""
    started = time.monotonic()
    outcome = DatasetOutcome(dataset=dataset.name, kind=dataset.kind.value)
    if dataset.needs_provider and provider is None:
        outcome.skipped = "needs a provider: give --provider (a saved provider block)"
    elif dataset.needs_judge and judge is None:
        outcome.skipped = "needs a judge: give --judge (a saved provider block)"
    if outcome.skipped:
        return outcome
    try:
        prepared = prepare_dataset(dataset, root, folder / "inputs")
        outputs = folder / "outputs"
        if outputs.exists():
            shutil.rmtree(outputs)
        broke: str | None = None
        if dataset.kind in (DatasetKind.INVOICE, DatasetKind.BAD_INPUTS):
            broke = _run_scenario("invoice", prepared, outputs, run=run)
        elif dataset.kind is DatasetKind.MEETING:
            broke = _run_scenario("meeting", prepared, outputs, run=run)
        elif dataset.kind in (DatasetKind.CHART, DatasetKind.DESCRIBE):
            from mmflow.tasks.image import ImageTask

            task_name = ImageTask.CHART if dataset.kind is DatasetKind.CHART else ImageTask.DESCRIBE
            broke = _run_scenario(
                "image",
                prepared,
                outputs,
                task=task_name,
                provider=provider,
                synthesise_results=False,
                run=run,
            )
        if dataset.kind is DatasetKind.OCR:
            metrics, notes = scoring.score_ocr(prepared, ocr_pages(prepared))
        elif dataset.kind is DatasetKind.JUDGE_AGREEMENT:
            metrics, notes = scoring.score_judge_agreement(prepared, judge, budget)
        else:
            metrics, notes = score_dataset(prepared, outputs, as_is(judge), as_is(budget))
        outcome.metrics, outcome.notes = metrics, ([broke] if broke else []) + notes
    except DatasetUnavailable as missing:
        outcome.error = str(missing)
    except Exception as error:  # a defect: recorded, the other datasets still run
        outcome.error = f"{type(error).__name__}: {error}"
    outcome.seconds = time.monotonic() - started
    return outcome


# ---------------------------------------------------------------- the flow


def _local_folder(out: str) -> Path:
    if "://" in out:
        raise ValueError(f"the evaluation writes to a local folder, not {out}")
    return Path(out).expanduser().resolve()


@flow(name="eval", flow_run_name="eval {tier}", log_prints=True)
def eval_flow(
    tier: Tier = Tier.CORE,
    out: str = "out/eval",
    datasets: list[str] | None = None,
    data: str | None = None,
    baseline: str | None = None,
    history: str | None = None,
    gate: bool = True,
    provider: str | None = None,
    judge: str | None = None,
    max_usd: Usd | None = None,
    run: RunSettings = RunSettings(),
) -> EvalOutcome | State[Any]:
    """Evaluate a tier of datasets against their gold, record the figures and gate regressions.

    Args:
        tier: core (every change), domain (nightly) or stress (before a release).
        out: Local folder for each dataset's inputs and outputs, results.json, report.md and
            trend.png (under <out>/<tier>).
        datasets: Only these datasets (any tier's); the gate then checks only them.
        data: Folder of the public sets (default MMFLOW_EVAL_DATA, else ../shared/data).
        baseline: Accepted results to gate against (default: the tier's committed file).
        history: Database URL of the history (default MMFLOW_EVAL_DATABASE_URL, else the cost
            ledger's database: MMFLOW_LEDGER_URL, else ledger.sqlite in mmflow's data folder).
        gate: Fail the run when a primary metric is worse than accepted by more than 0.02.
        provider: Saved provider block that answers the image datasets (charts, describe).
        judge: Saved provider block that judges descriptions and the labelled pairs.
        max_usd: Most the run may spend on model calls, in US dollars.
        run: Workers, caching and timeouts of the scenario runs.
    """
    from mmflow.blocks.providers import resolve_provider

    started_at, started = datetime.now(UTC), time.monotonic()
    tier = Tier(tier)
    folder = _local_folder(out) / tier.value
    folder.mkdir(parents=True, exist_ok=True)
    selected = tier_datasets(tier, datasets)
    root = data_root(data)
    judge_block = resolve_provider(judge)
    budget = Budget(max_usd_per_run=max_usd)
    outcomes = [
        evaluate_dataset(dataset, root, folder / dataset.name, run, provider, judge_block, budget)
        for dataset in selected
    ]
    evaluation = EvalRun(
        run_id=str(flow_run.get_id() or uuid.uuid4()),
        tier=tier,
        started_at=started_at,
        code=code_version(),
        outcomes=outcomes,
        seconds=time.monotonic() - started,
        extra={"datasets": [d.name for d in selected], "whole_tier": not datasets},
    )
    (folder / "results.json").write_text(evaluation.model_dump_json(indent=2), encoding="utf-8")
    rows, url = record_history(evaluation, history)
    baseline_file = Path(baseline) if baseline else gating.baseline_path(tier)
    verdict = check_gate(evaluation, baseline_file, not datasets) if gate else None
    publish_report(evaluation, verdict, baseline_file, url, folder)
    result = EvalOutcome(run=evaluation, gate=verdict, out=str(folder), history=url, rows=rows)
    if verdict is not None and not verdict.passed:
        return Failed(message=verdict.summary, data=EvalFailed(verdict.summary, result))
    return result
