"""The regression gate: what passes, what fails, and that it never passes by default."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from mmflow.tasks.eval import gate as gating
from mmflow.tasks.eval.datasets import TIERS
from mmflow.tasks.eval.gate import BaselineRefused, Verdict, accepted_from, check
from mmflow.tasks.eval.results import CodeVersion, DatasetOutcome, EvalRun, Metric, Tier

CODE = CodeVersion(mmflow="0.1.0", git_commit="a" * 40, git_dirty=False)


def _run(*outcomes: DatasetOutcome, tier: Tier = Tier.CORE) -> EvalRun:
    return EvalRun(
        run_id="run-1",
        tier=tier,
        started_at=datetime(2026, 11, 20, tzinfo=UTC),
        code=CODE,
        outcomes=list(outcomes),
    )


def _outcome(dataset: str = "sample-set", **values: float) -> DatasetOutcome:
    metrics = [
        Metric(name=name, value=value, higher_is_better=name != "wer", primary=True)
        for name, value in values.items()
    ]
    return DatasetOutcome(dataset=dataset, kind="invoice", metrics=metrics)


def _baseline(*outcomes: DatasetOutcome) -> gating.Baseline:
    return accepted_from(_run(*outcomes), None, whole_tier=True)


def test_no_baseline_fails_and_says_how_to_make_one(tmp_path: Path) -> None:
    result = check(_run(_outcome(field_accuracy=0.95)), None, tmp_path / "core.json", True)
    assert not result.passed
    assert "no accepted baseline" in result.summary and "mmflow eval accept" in result.summary


def test_a_drop_of_more_than_two_points_fails_and_names_the_metric(tmp_path: Path) -> None:
    baseline = _baseline(_outcome(field_accuracy=0.950))
    result = check(_run(_outcome(field_accuracy=0.929)), baseline, tmp_path / "b.json", True)
    assert not result.passed
    [failure] = result.failures
    assert (failure.dataset, failure.metric, failure.verdict) == (
        "sample-set",
        "field_accuracy",
        Verdict.REGRESSED,
    )
    assert "0.0210 worse" in failure.message


def test_a_drop_of_exactly_two_points_passes(tmp_path: Path) -> None:
    baseline = _baseline(_outcome(field_accuracy=0.95))
    assert check(_run(_outcome(field_accuracy=0.93)), baseline, tmp_path / "b.json", True).passed


def test_lower_is_better_metrics_fail_when_they_rise(tmp_path: Path) -> None:
    baseline = _baseline(_outcome("speech", wer=0.08))
    assert check(_run(_outcome("speech", wer=0.095)), baseline, tmp_path / "b", True).passed
    result = check(_run(_outcome("speech", wer=0.11)), baseline, tmp_path / "b", True)
    assert [f.verdict for f in result.failures] == [Verdict.REGRESSED]


def test_an_improvement_passes_and_suggests_accepting_it(tmp_path: Path) -> None:
    baseline = _baseline(_outcome(field_accuracy=0.90))
    result = check(_run(_outcome(field_accuracy=0.97)), baseline, tmp_path / "b", True)
    assert result.passed
    assert [f.verdict for f in result.findings] == [Verdict.IMPROVED]


def test_a_dataset_that_did_not_run_fails(tmp_path: Path) -> None:
    baseline = _baseline(_outcome(field_accuracy=0.95))
    broken = DatasetOutcome(dataset="sample-set", kind="invoice", error="data missing")
    result = check(_run(broken), baseline, tmp_path / "b", True)
    assert not result.passed and result.failures[0].verdict is Verdict.NOT_RUN


def test_a_dataset_or_metric_the_baseline_lacks_fails(tmp_path: Path) -> None:
    baseline = _baseline(_outcome(field_accuracy=0.95))
    new_dataset = check(
        _run(_outcome(field_accuracy=0.95), _outcome("sroie", field_accuracy=0.9)),
        baseline,
        tmp_path / "b",
        True,
    )
    assert [f.verdict for f in new_dataset.failures] == [Verdict.UNKNOWN]
    new_metric = check(
        _run(_outcome(field_accuracy=0.95, schema_compliance=1.0)), baseline, tmp_path / "b", True
    )
    assert [f.metric for f in new_metric.failures] == ["schema_compliance"]


def test_a_metric_the_run_no_longer_reports_fails(tmp_path: Path) -> None:
    baseline = _baseline(_outcome(field_accuracy=0.95, schema_compliance=1.0))
    result = check(_run(_outcome(field_accuracy=0.95)), baseline, tmp_path / "b", True)
    assert [(f.metric, f.verdict) for f in result.failures] == [
        ("schema_compliance", Verdict.MISSING)
    ]


def test_a_whole_tier_run_must_cover_every_accepted_dataset(tmp_path: Path) -> None:
    baseline = _baseline(_outcome(field_accuracy=0.95), _outcome("speech", wer=0.08))
    partial = _run(_outcome(field_accuracy=0.95))
    assert not check(partial, baseline, tmp_path / "b", whole_tier=True).passed
    assert check(partial, baseline, tmp_path / "b", whole_tier=False).passed


def test_accepting_refuses_a_run_with_a_dataset_that_did_not_run() -> None:
    broken = DatasetOutcome(dataset="speech", kind="meeting", error="no audio stack")
    with pytest.raises(BaselineRefused, match="speech: no audio stack"):
        accepted_from(_run(_outcome(field_accuracy=0.9), broken), None, whole_tier=True)


def test_accepting_some_datasets_keeps_the_others() -> None:
    previous = _baseline(_outcome(field_accuracy=0.95), _outcome("speech", wer=0.08))
    updated = accepted_from(_run(_outcome("speech", wer=0.07)), previous, whole_tier=False)
    assert updated.metrics["speech"]["wer"].value == 0.07
    assert updated.metrics["sample-set"]["field_accuracy"].value == 0.95
    replaced = accepted_from(_run(_outcome("speech", wer=0.07)), previous, whole_tier=True)
    assert set(replaced.metrics) == {"speech"}


def test_the_baseline_file_round_trips(tmp_path: Path) -> None:
    baseline = _baseline(_outcome(field_accuracy=0.95))
    gating.write_baseline(baseline, tmp_path / "core.json")
    assert gating.load_baseline(tmp_path / "core.json") == baseline
    assert gating.load_baseline(tmp_path / "none.json") is None


@pytest.mark.parametrize("tier", [Tier.CORE, Tier.STRESS])
def test_the_committed_baseline_covers_every_dataset_of_the_tier(tier: Tier) -> None:
    """CI gates the core tier against its file (the stress tier before a release): it must
    exist and know every dataset of the tier."""
    baseline = gating.load_baseline(gating.baseline_path(tier))
    assert baseline is not None, f"commit {gating.baseline_path(tier)} (`mmflow eval accept`)"
    assert baseline.tier is tier
    assert set(baseline.metrics) == set(TIERS[tier])
    assert all(metrics for metrics in baseline.metrics.values())


def test_a_skipped_dataset_is_not_gated_unless_the_baseline_has_it(tmp_path: Path) -> None:
    skipped = DatasetOutcome(dataset="charts", kind="chart", skipped="needs a provider")
    run = _run(_outcome(field_accuracy=0.95), skipped)
    without = _baseline(_outcome(field_accuracy=0.95))
    assert check(run, without, tmp_path / "b", whole_tier=True).passed
    assert set(accepted_from(run, None, whole_tier=True).metrics) == {"sample-set"}
    with_charts = _baseline(
        _outcome(field_accuracy=0.95), _outcome("charts", chart_relaxed_accuracy=0.9)
    )
    result = check(run, with_charts, tmp_path / "b", whole_tier=True)
    [failure] = result.failures
    assert failure.verdict is Verdict.MISSING and "skipped (needs a provider)" in failure.message
