"""The regression gate: a run fails when a primary metric is worse than the last accepted
result by more than 2 points (an absolute 0.02 on a rate), or when it cannot be compared.

The accepted results live in a file committed with the code (`baselines/<tier>.json` beside
this module), written by `mmflow eval accept`: a clean clone (CI) has its baseline without any
database, and a change that moves a figure on purpose shows in review as a change to that file.
The gate never passes by default: no baseline, a dataset that did not run, a dataset or metric
the baseline does not know, or one the baseline knows and the run lacks (a skipped dataset
counts as lacking), all fail with a message that says what to do.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, Field

from mmflow.tasks.eval.results import CodeVersion, EvalRun, Tier

TOLERANCE = 0.02
"""How much worse than accepted a primary metric may be (absolute, on 0..1 rates)."""
BASELINE_DIR = Path(__file__).resolve().parent / "baselines"
_EPSILON = 1e-9  # float noise: a drop of exactly the tolerance passes


def baseline_path(tier: Tier | str) -> Path:
    """The committed baseline of a tier (in a checkout: tasks/eval/baselines/<tier>.json)."""
    return BASELINE_DIR / f"{Tier(tier).value}.json"


class AcceptedMetric(BaseModel):
    value: float
    higher_is_better: bool


class Baseline(BaseModel):
    """The accepted primary figures of a tier, and the run they came from."""

    tier: Tier
    run_id: str
    accepted_at: datetime
    code: CodeVersion
    tolerance: float = TOLERANCE
    metrics: dict[str, dict[str, AcceptedMetric]] = Field(
        description="dataset → metric → accepted value"
    )


class Verdict(StrEnum):
    PASS = "pass"  # within the tolerance
    IMPROVED = "improved"  # better by more than the tolerance: accept it to raise the bar
    REGRESSED = "regressed"
    NOT_RUN = "not_run"  # the dataset could not be evaluated
    MISSING = "missing"  # the baseline has it, the run does not
    UNKNOWN = "unknown"  # the run has it, the baseline does not


FAILING = {Verdict.REGRESSED, Verdict.NOT_RUN, Verdict.MISSING, Verdict.UNKNOWN}


class Finding(BaseModel):
    dataset: str
    metric: str | None
    verdict: Verdict
    accepted: float | None = None
    value: float | None = None
    message: str = ""

    @property
    def change(self) -> float | None:
        if self.accepted is None or self.value is None:
            return None
        return self.value - self.accepted


class GateResult(BaseModel):
    """Whether the run passes, and the finding for every gated figure."""

    passed: bool
    summary: str
    baseline: str  # the file compared against
    findings: list[Finding] = Field(default_factory=list)

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if f.verdict in FAILING]


class BaselineRefused(ValueError):
    """A run that cannot become the baseline (a dataset did not run, another tier)."""


def load_baseline(path: Path) -> Baseline | None:
    if not path.is_file():
        return None
    return Baseline.model_validate_json(path.read_text(encoding="utf-8"))


def write_baseline(baseline: Baseline, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(baseline.model_dump(mode="json"), indent=2, sort_keys=False)
    path.write_text(text + "\n", encoding="utf-8")


def accepted_from(run: EvalRun, previous: Baseline | None, whole_tier: bool) -> Baseline:
    """The baseline after accepting `run`: its primary figures replace the previous ones.

    A run of the whole tier replaces the baseline outright (a dataset dropped from the tier
    leaves it); a run of some datasets (`--dataset`) updates those and keeps the rest.
    """
    if previous is not None and previous.tier != run.tier:
        raise BaselineRefused(f"the baseline is of tier {previous.tier}, the run of {run.tier}")
    ran = [o for o in run.outcomes if not o.skipped]
    broken = [o for o in ran if o.error]
    if broken:
        names = "; ".join(f"{o.dataset}: {o.error}" for o in broken)
        raise BaselineRefused(f"datasets that did not run cannot be accepted ({names})")
    if not ran:
        raise BaselineRefused("the run evaluated no dataset")
    metrics = {} if whole_tier or previous is None else dict(previous.metrics)
    for outcome in ran:
        primary = {
            m.name: AcceptedMetric(value=m.value, higher_is_better=m.higher_is_better)
            for m in outcome.metrics
            if m.primary
        }
        if not primary:
            raise BaselineRefused(f"{outcome.dataset} has no primary metric to accept")
        metrics[outcome.dataset] = primary
    return Baseline(
        tier=run.tier,
        run_id=run.run_id,
        accepted_at=datetime.now(UTC),
        code=run.code,
        metrics=dict(sorted(metrics.items())),
    )


def _compare(
    dataset: str, name: str, accepted: AcceptedMetric, value: float, tol: float
) -> Finding:
    worse_by = accepted.value - value if accepted.higher_is_better else value - accepted.value
    direction = "higher" if accepted.higher_is_better else "lower"
    if worse_by > tol + _EPSILON:
        verdict = Verdict.REGRESSED
        message = (
            f"{dataset} {name} {value:.4f} is {worse_by:.4f} worse than the accepted "
            f"{accepted.value:.4f} ({direction} is better; the gate allows {tol:.2f})"
        )
    elif -worse_by > tol + _EPSILON:
        verdict = Verdict.IMPROVED
        message = f"{dataset} {name} improved by {-worse_by:.4f}: `mmflow eval accept` keeps it"
    else:
        verdict, message = Verdict.PASS, ""
    return Finding(
        dataset=dataset,
        metric=name,
        verdict=verdict,
        accepted=accepted.value,
        value=value,
        message=message,
    )


def check(run: EvalRun, baseline: Baseline | None, path: Path, whole_tier: bool) -> GateResult:
    """Compare a run with the accepted baseline (every dataset of the tier when `whole_tier`,
    else only the datasets the run evaluated)."""
    where = str(path)
    if baseline is None:
        return GateResult(
            passed=False,
            baseline=where,
            summary=(
                f"no accepted baseline for tier {run.tier} at {where}: nothing to compare "
                f"with, so the gate cannot pass. Run `mmflow eval run {run.tier}`, check its "
                "report, then `mmflow eval accept` and commit the baseline file."
            ),
        )
    if baseline.tier != run.tier:
        return GateResult(
            passed=False,
            baseline=where,
            summary=f"{where} is the baseline of tier {baseline.tier}, not {run.tier}",
        )
    tol = baseline.tolerance
    findings: list[Finding] = []
    evaluated = [o for o in run.outcomes if not o.skipped]  # skipped: compared as absent
    for outcome in evaluated:
        accepted = baseline.metrics.get(outcome.dataset)
        if outcome.error:
            findings.append(
                Finding(
                    dataset=outcome.dataset,
                    metric=None,
                    verdict=Verdict.NOT_RUN,
                    message=f"{outcome.dataset} did not run: {outcome.error}",
                )
            )
            continue
        if accepted is None:
            findings.append(
                Finding(
                    dataset=outcome.dataset,
                    metric=None,
                    verdict=Verdict.UNKNOWN,
                    message=f"{outcome.dataset} has no accepted result in {where}: accept a "
                    "run that includes it (`mmflow eval accept`)",
                )
            )
            continue
        for name, expected in accepted.items():
            metric = outcome.metric(name)
            if metric is None:
                findings.append(
                    Finding(
                        dataset=outcome.dataset,
                        metric=name,
                        verdict=Verdict.MISSING,
                        accepted=expected.value,
                        message=f"{outcome.dataset} no longer reports {name}",
                    )
                )
            else:
                findings.append(_compare(outcome.dataset, name, expected, metric.value, tol))
        for metric in outcome.metrics:
            if metric.primary and metric.name not in accepted:
                findings.append(
                    Finding(
                        dataset=outcome.dataset,
                        metric=metric.name,
                        verdict=Verdict.UNKNOWN,
                        value=metric.value,
                        message=f"{outcome.dataset} {metric.name} is a primary metric the "
                        "baseline does not have: accept a run that includes it",
                    )
                )
    if whole_tier:
        ran = {o.dataset for o in evaluated}
        skipped = {o.dataset: o.skipped for o in run.outcomes if o.skipped}
        for dataset in sorted(set(baseline.metrics) - ran):
            message = (
                f"{dataset} was skipped ({skipped[dataset]}), but the baseline has it"
                if dataset in skipped
                else f"{dataset} is in the baseline but not in tier {run.tier}: accept a run "
                "of the whole tier to drop it"
            )
            findings.append(
                Finding(dataset=dataset, metric=None, verdict=Verdict.MISSING, message=message)
            )
    if not evaluated:
        return GateResult(
            passed=False, baseline=where, summary="the run evaluated no dataset", findings=[]
        )
    failures = [f for f in findings if f.verdict in FAILING]
    if failures:
        summary = f"gate failed: {len(failures)} problem(s): " + "; ".join(
            f.message for f in failures
        )
    else:
        summary = (
            f"gate passed: {len(findings)} primary figures within {tol:.2f} of the run "
            f"accepted on {baseline.accepted_at:%Y-%m-%d} ({baseline.code.label})"
        )
    return GateResult(passed=not failures, baseline=where, summary=summary, findings=findings)
