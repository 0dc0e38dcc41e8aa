"""`mmflow eval run|accept|history`: the evaluation pipeline from the command line.

`mmflow eval run core` runs the evaluation flow (flows/evaluation.py) on a Prefect server, prints
each dataset's figures and the gate's verdict, and exits 1 when the gate fails; `mmflow eval
accept` makes a run's figures the committed baseline; `mmflow eval history` prints the series.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Annotated

import typer

from mmflow.cli.console import console, fail, note, print_table
from mmflow.tasks.eval.results import Tier


def run_tier(
    tier: Annotated[
        Tier, typer.Argument(help="core (every change), domain (nightly), stress.")
    ] = Tier.CORE,
    out: Annotated[
        Path, typer.Option(help="Folder for inputs, outputs, results.json, report.md, trend.png.")
    ] = Path("out/eval"),
    dataset: Annotated[
        list[str] | None,
        typer.Option(help="Only this dataset (repeat); the gate then checks only these."),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(help="Folder of the public sets (default MMFLOW_EVAL_DATA, ../shared/data)."),
    ] = None,
    baseline: Annotated[
        Path | None, typer.Option(help="Accepted results (default: the tier's committed file).")
    ] = None,
    history: Annotated[
        str | None,
        typer.Option(
            envvar="MMFLOW_EVAL_DATABASE_URL",
            help="History database URL (default: the cost ledger's database, "
            "ledger.sqlite in mmflow's data folder).",
        ),
    ] = None,
    gate: Annotated[bool, typer.Option(help="Fail on a regression of a primary metric.")] = True,
    provider: Annotated[
        str | None, typer.Option(help="Saved provider block for the image datasets.")
    ] = None,
    judge: Annotated[str | None, typer.Option(help="Saved provider block that judges.")] = None,
    max_usd: Annotated[
        float | None, typer.Option(min=0, help="Most the run may spend on model calls (USD).")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Inputs processed at once.")] = 2,
    cache: Annotated[bool, typer.Option(help="Reuse step results of unchanged code.")] = True,
) -> None:
    """Evaluate a tier against its gold data, record the figures, gate regressions."""
    from mmflow.cli.run import prefect_api
    from mmflow.flows.evaluation import EvalFailed, EvalOutcome, eval_flow
    from mmflow.flows.runs import RunSettings

    prefect_api()
    state = eval_flow(
        tier=tier,
        out=str(out),
        datasets=dataset or None,
        data=data,
        baseline=str(baseline) if baseline else None,
        history=history,
        gate=gate,
        provider=provider,
        judge=judge,
        max_usd=Decimal(str(max_usd)) if max_usd is not None else None,
        run=RunSettings(workers=workers, cache=cache),
        return_state=True,
    )
    result = state.result(raise_on_failure=False)
    outcome = result.outcome if isinstance(result, EvalFailed) else result
    if not isinstance(outcome, EvalOutcome):
        raise fail("Evaluation could not run", str(outcome), code=1)
    rows = []
    for item in outcome.run.outcomes:
        if item.error or item.skipped:
            what = "did not run" if item.error else "skipped"
            rows.append([item.dataset, what, item.error or item.skipped, f"{item.seconds:.0f}"])
            continue
        primary = ", ".join(f"{m.name} {m.value:.4f}" for m in item.metrics if m.primary)
        rows.append([item.dataset, item.kind, primary, f"{item.seconds:.0f}"])
    print_table(
        f"eval {outcome.run.tier} · {outcome.run.code.label} · {outcome.run.seconds:.0f} s",
        ["dataset", "kind", "primary metrics", "s"],
        rows,
    )
    note(
        f"report: {outcome.out}/report.md · trend: {outcome.out}/trend.png · "
        f"history: {outcome.history}"
    )
    if outcome.gate is None:
        return
    if outcome.gate.passed:
        console.print(f"[green]{outcome.gate.summary}[/]")
        return
    for finding in outcome.gate.failures:
        console.print(f"[red]✗ {finding.message}[/]")
    raise typer.Exit(1)


def accept(
    results: Annotated[
        Path,
        typer.Argument(help="results.json of a run, or the folder holding it (out/eval/<tier>)."),
    ] = Path("out/eval/core"),
    baseline: Annotated[
        Path | None,
        typer.Option(help="Baseline file to write (default: the tier's committed one)."),
    ] = None,
    history: Annotated[
        str | None, typer.Option(envvar="MMFLOW_EVAL_DATABASE_URL", help="History database URL.")
    ] = None,
) -> None:
    """Make a run's primary figures the accepted baseline (commit the file it writes)."""
    from mmflow.tasks.eval import gate as gating
    from mmflow.tasks.eval.history import HistoryStore
    from mmflow.tasks.eval.results import EvalRun

    path = results / "results.json" if results.is_dir() else results
    if not path.is_file():
        raise fail("No results", f"{path} does not exist: run `mmflow eval run` first")
    run = EvalRun.model_validate_json(path.read_text(encoding="utf-8"))
    target = baseline or gating.baseline_path(run.tier)
    previous = gating.load_baseline(target)
    try:
        accepted = gating.accepted_from(run, previous, bool(run.extra.get("whole_tier", True)))
    except gating.BaselineRefused as refused:
        raise fail("Cannot accept", str(refused)) from refused
    gating.write_baseline(accepted, target)
    rows = []
    for name, metrics in accepted.metrics.items():
        for metric, value in metrics.items():
            before = (previous.metrics.get(name) or {}).get(metric) if previous else None
            rows.append(
                [
                    name,
                    metric,
                    "—" if before is None else f"{before.value:.4f}",
                    f"{value.value:.4f}",
                ]
            )
    print_table(f"accepted run {run.run_id} → {target}", ["dataset", "metric", "was", "now"], rows)
    try:
        store = HistoryStore(history)
        store.mark_accepted(run.run_id)
        store.close()
    except Exception as error:  # the baseline file is what counts; the mark is for the chart
        note(f"[yellow]the history was not marked ({type(error).__name__}: {error})[/]")


def show_history(
    tier: Annotated[Tier, typer.Argument(help="The tier whose runs to list.")] = Tier.CORE,
    history: Annotated[
        str | None, typer.Option(envvar="MMFLOW_EVAL_DATABASE_URL", help="History database URL.")
    ] = None,
    last: Annotated[int, typer.Option(min=1, help="How many runs, newest last.")] = 10,
) -> None:
    """The primary figures of the tier's last runs, from the history store."""
    from mmflow.tasks.eval.history import HistoryStore

    store = HistoryStore(history)
    try:
        rows = store.rows(tier, primary_only=True)
    finally:
        store.close()
    runs: dict[str, list] = {}
    for row in rows:
        runs.setdefault(row.run_id, []).append(row)
    table = []
    for figures in list(runs.values())[-last:]:
        first = figures[0]
        for row in figures:
            table.append(
                [
                    f"{first.recorded_at:%Y-%m-%d %H:%M}",
                    (first.git_commit or first.mmflow_version)[:10]
                    + (" ✓" if first.accepted else ""),
                    row.dataset,
                    row.metric,
                    f"{row.value:.4f}",
                ]
            )
    if not table:
        raise fail("No history", f"no runs of tier {tier} recorded in {store.url}", code=1)
    print_table(
        f"eval history · {tier}", ["when", "code (✓ accepted)", "dataset", "metric", "value"], table
    )
