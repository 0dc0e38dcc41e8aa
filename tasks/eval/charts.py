"""Charts with known values, and the score of a chart reading against them.

The chart set is drawn here with matplotlib from numbers drawn from a seed (bar and line
charts, one or two series, integer and decimal values), and each PNG gets a `<stem>.truth.json`
with the values it plots. A reading (the image scenario's `chart` answer) is scored the way
ChartQA's "relaxed accuracy" does: a number counts as right when it is within 5% of the true
value, because a value read off a plotted bar is an estimate, while a label or series that is
missing counts as wrong.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from mmflow.tasks.errors import MissingDependency

RELATIVE_TOLERANCE = 0.05
TRUTH_SUFFIX = ".truth.json"
REGIONS = ("North", "South", "East", "West", "Central", "Online")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug")


class ChartTruth(BaseModel):
    chart_type: str
    title: str
    series: dict[str, dict[str, float]]  # series name → category label → value


class ChartScore(BaseModel):
    right: int
    values: int
    misses: list[str]

    @property
    def accuracy(self) -> float:
        return self.right / self.values if self.values else 0.0


def pyplot(purpose: str) -> Any:
    """matplotlib's pyplot drawing to files only (no display), or what to install for it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingDependency(f"matplotlib ({purpose})", "pip install 'mmflow[eval]'") from exc
    return plt


def chart_truth(seed: int) -> ChartTruth:
    """What chart `seed` plots: a bar chart (even seeds) or a line chart, labelled values."""
    rng = np.random.default_rng(seed)
    bars = seed % 2 == 0
    labels = REGIONS[: 4 + seed % 3] if bars else MONTHS[: 5 + seed % 4]
    names = ["2025", "2026"] if seed % 3 == 0 else ["Revenue"]
    decimals = 1 if seed % 4 in (1, 2) else 0
    series = {
        name: {label: round(float(rng.uniform(12, 95)), decimals) for label in labels}
        for name in names
    }
    title = f"{'Sales by region' if bars else 'Monthly orders'} ({seed})"
    return ChartTruth(chart_type="bar" if bars else "line", title=title, series=series)


def draw_chart(truth: ChartTruth, path: Path) -> Path:
    """A PNG of the chart, each value written above its mark as a reader would print it."""
    plt = pyplot("the chart set")
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    names = list(truth.series)
    labels = list(next(iter(truth.series.values())))
    x = np.arange(len(labels))
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        values = [truth.series[name][label] for label in labels]
        if truth.chart_type == "bar":
            marks = ax.bar(x + (k - (len(names) - 1) / 2) * width, values, width, label=name)
            ax.bar_label(marks, fmt="%g", fontsize=8)
        else:
            ax.plot(x, values, marker="o", label=name)
            for xi, value in zip(x, values, strict=True):
                ax.annotate(
                    f"{value:g}",
                    (xi, value),
                    textcoords="offset points",
                    xytext=(0, 6),
                    ha="center",
                    fontsize=8,
                )
    ax.set_xticks(x, labels)
    ax.set_title(truth.title)
    if len(names) > 1:
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def make_chart_set(out_dir: Path, count: int = 8, seed: int = 40) -> list[Path]:
    """`count` charts with their truth files; returns the PNG paths."""
    written = []
    for n in range(count):
        truth = chart_truth(seed + n)
        path = draw_chart(truth, out_dir / f"chart-{seed + n:03d}.png")
        (out_dir / f"{path.stem}{TRUTH_SUFFIX}").write_text(
            json.dumps(truth.model_dump(), indent=2) + "\n", encoding="utf-8"
        )
        written.append(path)
    return written


def load_chart_truth(path: Path) -> ChartTruth:
    return ChartTruth.model_validate_json(path.read_text(encoding="utf-8"))


def _key(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "", text.lower())


def within_tolerance(predicted: float | None, truth: float, tolerance: float) -> bool:
    if predicted is None:
        return False
    return abs(predicted - truth) <= tolerance * abs(truth)


def score_chart(
    answer: Mapping[str, Any] | None, truth: ChartTruth, tolerance: float = RELATIVE_TOLERANCE
) -> ChartScore:
    """Every true value looked up in the answer by series and label (case and punctuation
    ignored; a one-series chart matches whatever the answer named its series)."""
    read: dict[str, dict[str, float | None]] = {}
    for series in (answer or {}).get("series") or []:
        labels, values = series.get("labels") or [], series.get("values") or []
        read[_key(str(series.get("name", "")))] = {
            _key(str(label)): value for label, value in zip(labels, values, strict=False)
        }
    right, total, misses = 0, 0, []
    for name, points in truth.series.items():
        found = read.get(_key(name))
        if found is None and len(truth.series) == 1 and len(read) == 1:
            found = next(iter(read.values()))
        for label, value in points.items():
            total += 1
            got = (found or {}).get(_key(label))
            if within_tolerance(got, value, tolerance):
                right += 1
            else:
                misses.append(f"{name}/{label}: {value:g}, read {got if got is not None else '—'}")
    return ChartScore(right=right, values=total, misses=misses)
