"""The evaluation history: in the cost ledger's database by default, beside its tables."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mmflow.tasks.eval.history import HistoryStore, database_url
from mmflow.tasks.eval.results import CodeVersion, DatasetOutcome, EvalRun, Metric, Tier

pytest.importorskip("sqlalchemy")


def test_the_default_database_is_the_ledger_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MMFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("MMFLOW_EVAL_DATABASE_URL", raising=False)
    monkeypatch.delenv("MMFLOW_LEDGER_URL", raising=False)
    assert database_url() == f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    monkeypatch.setenv("MMFLOW_LEDGER_URL", "sqlite:////srv/costs.sqlite")
    assert database_url() == "sqlite:////srv/costs.sqlite"
    monkeypatch.setenv("MMFLOW_EVAL_DATABASE_URL", "sqlite:////srv/eval.sqlite")
    assert database_url() == "sqlite:////srv/eval.sqlite"
    assert database_url("sqlite:////given.sqlite") == "sqlite:////given.sqlite"


def _run(run_id: str, value: float) -> EvalRun:
    metric = Metric(name="cer", value=value, higher_is_better=False, primary=True, count=900)
    return EvalRun(
        run_id=run_id,
        tier=Tier.CORE,
        started_at=datetime.now(UTC),
        code=CodeVersion(mmflow="0.1.0", git_commit="b" * 40, git_dirty=False),
        outcomes=[DatasetOutcome(dataset="scan-text", kind="ocr", metrics=[metric])],
    )


def test_runs_are_appended_beside_other_tables_and_marked_when_accepted(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with sqlite3.connect(path) as ledger:  # a table of the ledger's, already there
        ledger.execute("CREATE TABLE model_calls (id INTEGER PRIMARY KEY, usd TEXT)")
        ledger.execute("INSERT INTO model_calls (usd) VALUES ('0.0123')")
    store = HistoryStore(f"sqlite:///{path}")
    assert store.append(_run("r1", 0.04)) == 1
    assert store.append(_run("r2", 0.03)) == 1
    assert store.mark_accepted("r1") == 1
    rows = store.rows(Tier.CORE)
    store.close()
    assert [(r.run_id, r.value, r.accepted, r.git_commit) for r in rows] == [
        ("r1", 0.04, True, "b" * 40),
        ("r2", 0.03, False, "b" * 40),
    ]
    with sqlite3.connect(path) as ledger:
        assert ledger.execute("SELECT usd FROM model_calls").fetchall() == [("0.0123",)]
