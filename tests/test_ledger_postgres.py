"""The production database of the cost ledger and the evaluation history: a real PostgreSQL.

A private cluster started by deployments/postgres.sh (the one Prefect's server uses in
production); the ledger takes the URL that script prints. Two tenants' calls go in, `mmflow
costs --by tenant` reads them back to the cent, and an evaluation run lands in the same
database beside them.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from benchmarks.database_load import VENV_BIN, free_port, postgres_cluster
from mmflow.tasks.eval.history import HistoryStore
from mmflow.tasks.eval.results import CodeVersion, DatasetOutcome, EvalRun, Metric, Tier
from mmflow.tasks.ledger import CostGrouping, CostLedger, LedgerRow
from tests.postgres import postgres_work_folder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    work = postgres_work_folder("mmflow-pg-ledger-")
    with postgres_cluster(work / "postgres", free_port()) as url:
        yield url


def _call(tenant: str, usd: str, at: datetime) -> LedgerRow:
    return LedgerRow(
        at=at,
        run_id="run-1",
        trace_id="0" * 32,
        tenant=tenant,
        feature="receipts",
        scenario="image",
        provider="openai",
        model="gpt-4o",
        operation="describe",
        image_count=1,
        image_tokens=765,
        prompt_tokens=800,
        output_tokens=40,
        estimated_usd=Decimal(usd),
        actual_usd=Decimal(usd),
        outcome="ok",
    )


def test_the_ledger_and_the_history_live_in_postgresql(postgres_url: str) -> None:
    now = datetime.now(UTC)
    ledger = CostLedger(postgres_url)
    ledger.add_all(
        [
            _call("acme", "0.002413", now),
            _call("acme", "0.001100", now),
            _call("globex", "0.000700", now),
            _call("globex", "9.000000", now - timedelta(days=30)),  # outside the week
        ]
    )
    lines = ledger.cost_lines(now - timedelta(days=7), CostGrouping.TENANT)
    assert [(line.key, line.calls, line.actual_usd) for line in lines] == [
        ("acme", 2, Decimal("0.003513")),
        ("globex", 1, Decimal("0.000700")),
    ]
    shown = subprocess.run(
        [
            *(str(VENV_BIN / "mmflow"), "costs", "--since", "7d", "--by", "tenant"),
            *("--ledger", postgres_url, "--no-artifact"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"COLUMNS": "200"},
    )
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "acme" in shown.stdout and "0.003513" in shown.stdout, shown.stdout

    store = HistoryStore(postgres_url)
    metric = Metric(name="cer", value=0.036, higher_is_better=False, primary=True, count=900)
    run = EvalRun(
        run_id="eval-1",
        tier=Tier.CORE,
        started_at=now,
        code=CodeVersion(mmflow="0.1.0", git_commit="c" * 40, git_dirty=False),
        outcomes=[DatasetOutcome(dataset="scan-text", kind="ocr", metrics=[metric])],
    )
    assert store.append(run) == 1
    assert [(r.run_id, r.value) for r in store.rows(Tier.CORE)] == [("eval-1", 0.036)]
    store.close()
    assert len(CostLedger(postgres_url).rows()) == 4  # both tables, one database
