"""The evaluation flow on a real Prefect server: datasets run through their scenario flows,
scored, recorded in the history, gated, and published; a broken extractor fails the gate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mmflow.tasks.eval import gate as gating
from mmflow.tasks.eval.datasets import DATASETS, TIERS, DatasetKind
from mmflow.tasks.eval.history import HistoryStore
from mmflow.tasks.eval.results import Tier

pytestmark = pytest.mark.slow
pytest.importorskip("sqlalchemy")
pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]


def test_every_tier_declares_datasets_and_the_stress_tier_the_bad_cases() -> None:
    assert set(TIERS) == set(Tier)
    for tier, names in TIERS.items():
        assert names and all(name in DATASETS for name in names), tier
    kinds = {DATASETS[name].kind for name in TIERS[Tier.STRESS]}
    assert DatasetKind.BAD_INPUTS in kinds and DatasetKind.MEETING in kinds
    assert not any(DATASETS[name].needs_provider for name in TIERS[Tier.CORE])


def test_the_flow_records_history_gates_and_publishes_a_trend(
    prefect_server: str, tmp_path: Path
) -> None:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from mmflow.flows.evaluation import EvalFailed, eval_flow
    from mmflow.flows.runs import RunSettings

    history = f"sqlite:///{tmp_path / 'history.sqlite'}"
    baseline = tmp_path / "core.json"
    common = {
        "tier": Tier.CORE,
        "out": str(tmp_path / "eval"),
        "datasets": ["sample-set"],  # the quickest flow-run set: 60 text PDFs
        "history": history,
        "baseline": str(baseline),
        # a fresh cache: the first run computes, the second reuses its steps (same code)
        "run": RunSettings(cache_dir=str(tmp_path / "cache")),
    }
    first = eval_flow(**common, return_state=True)
    assert first.is_failed() and "no accepted baseline" in (first.message or "")
    failed = first.result(raise_on_failure=False)
    assert isinstance(failed, EvalFailed)
    run = failed.outcome.run
    [outcome] = run.outcomes
    assert outcome.error is None, outcome.error
    figures = {m.name: m for m in outcome.metrics}
    assert figures["inputs_ok"].value == 1.0 and figures["inputs_ok"].count == 60
    assert figures["schema_compliance"].value == 1.0
    assert 0.5 < figures["field_accuracy"].value <= 1.0 and figures["field_accuracy"].primary

    results = tmp_path / "eval" / "core" / "results.json"
    whole = bool(json.loads(results.read_text())["extra"]["whole_tier"])
    gating.write_baseline(gating.accepted_from(run, None, whole), baseline)
    second = eval_flow(**common, return_state=True)
    assert second.is_completed(), second.message
    outcome_two = second.result()
    assert outcome_two.gate.passed and outcome_two.rows == len(outcome.metrics)

    store = HistoryStore(history)
    rows = store.rows(Tier.CORE)
    assert store.run_ids(Tier.CORE) == [run.run_id, outcome_two.run.run_id]
    assert {r.dataset for r in rows} == {"sample-set"}
    assert all(r.mmflow_version and r.git_commit for r in rows)
    store.close()
    folder = tmp_path / "eval" / "core"
    assert (folder / "trend.png").read_bytes().startswith(b"\x89PNG")
    report = (folder / "report.md").read_text()
    assert "**Gate: PASSED**" in report and "data:image/png;base64," in report
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["mmflow-eval-core"]))
        )
    assert artifacts and artifacts[-1].type == "markdown"
    assert "data:image/png;base64," in str(artifacts[-1].data)


def test_a_dataset_whose_data_is_missing_fails_the_gate_and_says_why(
    prefect_server: str, tmp_path: Path
) -> None:
    from mmflow.flows.evaluation import eval_flow

    state = eval_flow(
        tier=Tier.CORE,
        out=str(tmp_path / "eval"),
        datasets=["invoice2data"],
        data=str(tmp_path / "nowhere"),
        history=f"sqlite:///{tmp_path / 'h.sqlite'}",
        return_state=True,
    )
    assert state.is_failed()
    assert "invoice2data did not run" in (state.message or "")
    assert "--data or MMFLOW_EVAL_DATA" in (state.message or "")


BREAK_THE_EXTRACTOR = """
import sys
import mmflow.tasks.extract as extract

extract._issue_date = lambda *args, **kwargs: None  # the issue date is never found
from mmflow.cli.app import app

app(sys.argv[1:], prog_name="mmflow")
"""


def test_a_broken_extractor_fails_the_gate_against_the_committed_baseline(
    prefect_server: str, tmp_path: Path
) -> None:
    """The extractor loses one field (in a child process, as a bad change would); the core
    tier's generated set then drops below its committed baseline and the command fails."""
    env = dict(
        os.environ,
        PREFECT_API_URL=prefect_server,
        MMFLOW_CACHE_DIR=str(tmp_path / "cache"),  # the patch is invisible to cache keys
        MMFLOW_EVAL_DATABASE_URL=f"sqlite:///{tmp_path / 'history.sqlite'}",
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(BREAK_THE_EXTRACTOR),
            "eval",
            "run",
            "core",
            "--dataset",
            "sample-set",
            "--no-cache",
            "--out",
            str(tmp_path / "eval"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "sample-set field_accuracy" in output and "worse than the accepted" in output
    results = json.loads((tmp_path / "eval" / "core" / "results.json").read_text())
    [outcome] = results["outcomes"]
    figures = {m["name"]: m["value"] for m in outcome["metrics"]}
    assert figures["accuracy.issue_date"] == 0.0
    assert figures["inputs_ok"] == 1.0  # every input still ends ok: only the gate notices


def test_a_scenario_run_that_breaks_after_its_inputs_is_noted_in_the_outcome(
    prefect_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stress tier's degraded scans once broke the invoice run's line-items table after
    every input had ended ok: the inputs are scored, and the report says the run broke."""
    import mmflow.flows.invoice as invoice
    from mmflow.flows.evaluation import evaluate_dataset
    from mmflow.flows.runs import RunSettings
    from mmflow.tasks.eval.datasets import data_root
    from mmflow.tasks.provider import Budget

    def broken_table(out: str, fresh: object) -> None:
        raise ValueError("description must not be blank")

    monkeypatch.setattr(invoice, "reconcile", broken_table)
    outcome = evaluate_dataset(
        DATASETS["bad-inputs"],
        data_root(),
        tmp_path / "bad-inputs",
        RunSettings(cache=False),
        provider=None,
        judge=None,
        budget=Budget(),
    )
    assert outcome.error is None, outcome.error
    assert outcome.notes[0] == (
        "the invoice flow run ended FAILED, not because of an input: "
        "ValueError: description must not be blank"
    )
    assert {m.name for m in outcome.metrics} >= {"expected_outcome_rate", "not_failed_rate"}
