"""The markdown report of an evaluation run: the gate's verdict first, then every dataset's
figures beside the accepted ones, what did not run and why, and the trend chart."""

from __future__ import annotations

import base64

from mmflow.tasks.eval.gate import Baseline, GateResult, Verdict
from mmflow.tasks.eval.results import EvalRun

MAX_NOTES = 12


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def data_uri(png: bytes) -> str:
    """The PNG inline, as the Prefect UI's markdown artifacts show images (no file server)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render_markdown(
    run: EvalRun, gate: GateResult | None, baseline: Baseline | None, trend_png: bytes | None
) -> str:
    lines = [f"# mmflow evaluation — tier `{run.tier}`", ""]
    lines.append(
        f"Run `{run.run_id}` at {run.started_at:%Y-%m-%d %H:%M} UTC, code {run.code.label}, "
        f"{run.seconds:.0f} s."
    )
    lines.append("")
    if gate is None:
        lines.append("**Gate: not checked** (run with the gate off).")
    else:
        mark = "PASSED" if gate.passed else "FAILED"
        lines.append(f"**Gate: {mark}** — {gate.summary}")
    lines.append("")
    verdicts = {
        (f.dataset, f.metric): f.verdict for f in (gate.findings if gate else []) if f.metric
    }
    for outcome in run.outcomes:
        lines.append(f"## {outcome.dataset} ({outcome.kind}, {outcome.seconds:.0f} s)")
        lines.append("")
        if outcome.error or outcome.skipped:
            why = (
                f"**Did not run:** {outcome.error}"
                if outcome.error
                else f"Skipped: {outcome.skipped}"
            )
            lines += [why, ""]
            continue
        accepted = (baseline.metrics.get(outcome.dataset) or {}) if baseline else {}
        lines.append("| metric | value | accepted | change | verdict | over |")
        lines.append("|---|---:|---:|---:|---|---:|")
        for metric in outcome.metrics:
            reference = accepted.get(metric.name)
            change = metric.value - reference.value if reference else None
            verdict = verdicts.get((outcome.dataset, metric.name))
            name = f"**{metric.name}**" if metric.primary else metric.name
            lines.append(
                f"| {name} | {_number(metric.value)} | "
                f"{_number(reference.value if reference else None)} | "
                f"{'—' if change is None else f'{change:+.4f}'} | "
                f"{verdict.value if isinstance(verdict, Verdict) else ''} | "
                f"{'' if metric.count is None else metric.count} |"
            )
        lines.append("")
        if outcome.notes:
            lines.append("<details><summary>notes</summary>")
            lines.append("")
            lines += [f"- {note}" for note in outcome.notes[:MAX_NOTES]]
            if len(outcome.notes) > MAX_NOTES:
                lines.append(f"- … and {len(outcome.notes) - MAX_NOTES} more (results.json)")
            lines.append("")
            lines.append("</details>")
            lines.append("")
    if gate is not None and gate.failures:
        lines.append("## What failed the gate")
        lines.append("")
        lines += [f"- {f.message}" for f in gate.failures]
        lines.append("")
    if trend_png is not None:
        lines.append("## Trend")
        lines.append("")
        lines.append(f"![trend of the primary metrics]({data_uri(trend_png)})")
        lines.append("")
    return "\n".join(lines)
