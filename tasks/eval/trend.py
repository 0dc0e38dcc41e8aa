"""The trend chart: each primary metric of a tier over its recorded runs, with the accepted
baseline and the band the gate allows, as a PNG (matplotlib, the `eval` extra)."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

from mmflow.tasks.eval.charts import pyplot
from mmflow.tasks.eval.gate import Baseline
from mmflow.tasks.eval.history import HistoryRow


def _code_label(row: HistoryRow) -> str:
    return (row.git_commit or row.mmflow_version)[:7]


def trend_png(
    rows: Sequence[HistoryRow], baseline: Baseline | None, title: str, last_runs: int = 30
) -> bytes:
    """One panel per (dataset, primary metric): its value per run (accepted runs filled), the
    accepted value as a dashed line and the gate's tolerance as a shaded band."""
    plt = pyplot("the trend chart")
    primary = [r for r in rows if r.is_primary]
    run_order: dict[str, int] = {}
    for row in primary:
        run_order.setdefault(row.run_id, len(run_order))
    keep = set(list(run_order)[-last_runs:])
    series: dict[tuple[str, str], list[HistoryRow]] = {}
    for row in primary:
        if row.run_id in keep:
            series.setdefault((row.dataset, row.metric), []).append(row)
    panels = sorted(series) or [("no runs yet", "")]
    columns = min(3, len(panels))
    lines = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(lines, columns, figsize=(4.2 * columns, 2.6 * lines), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    index = {run: n for n, run in enumerate(r for r in run_order if r in keep)}
    for ax, key in zip(axes.flat, panels, strict=False):
        dataset, metric = key
        points = series.get(key, [])
        ax.set_title(f"{dataset} · {metric}", fontsize=9)
        ax.tick_params(labelsize=7)
        if not points:
            continue
        xs = [index[p.run_id] for p in points]
        ys = [p.value for p in points]
        ax.plot(xs, ys, marker="o", markersize=3, linewidth=1, color="tab:blue")
        accepted = [(x, p.value) for x, p in zip(xs, points, strict=True) if p.accepted]
        if accepted:
            ax.scatter(
                *zip(*accepted, strict=True), s=30, color="tab:green", zorder=3, label="accepted"
            )
        reference = (baseline.metrics.get(dataset) or {}).get(metric) if baseline else None
        if reference is not None:
            tolerance = baseline.tolerance if baseline else 0.0
            ax.axhline(reference.value, linestyle="--", linewidth=1, color="tab:green")
            low, high = (
                (reference.value - tolerance, reference.value)
                if reference.higher_is_better
                else (reference.value, reference.value + tolerance)
            )
            ax.axhspan(low, high, color="tab:green", alpha=0.12)
        ax.set_xticks(xs, [_code_label(p) for p in points], rotation=45, ha="right")
        ax.set_xlabel("run (commit)", fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()
