"""Prefect's server on PostgreSQL (deployments/postgres.sh): a real flow's runs land in it.

Starts a private PostgreSQL cluster with the script, a real `prefect server start` on it, and
runs `mmflow run invoice` against that server; everything is stopped at the end, pass or fail.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun, TaskRun

from benchmarks.database_load import (
    VENV_BIN,
    free_port,
    postgres_cluster,
    postgres_psql,
    prefect_server,
)
from mmflow.tasks.samples import SPECS, invoice_pdf
from tests.postgres import postgres_work_folder

pytestmark = pytest.mark.slow

SAMPLES = ("northwind-invoice", "northwind-invoice-2page")


@dataclass(frozen=True)
class RecordedRun:
    data_dir: Path
    api_url: str
    out: Path


@pytest.fixture(scope="module")
def invoice_run_on_postgres() -> Iterator[RecordedRun]:
    """Two text-PDF invoices run by `mmflow run invoice` against a PostgreSQL-backed server."""
    work = postgres_work_folder("mmflow-pg-test-")
    try:
        inputs = work / "inputs"
        inputs.mkdir()
        for name in SAMPLES:
            (inputs / f"{name}.pdf").write_bytes(invoice_pdf(SPECS[name]))
        with (
            postgres_cluster(work / "postgres", free_port()) as database_url,
            prefect_server(work / "server", database_url) as api_url,
        ):
            env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")} | {
                "PREFECT_HOME": str(work / "client"),
                "PREFECT_API_URL": api_url,
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            }
            out = work / "out"
            done = subprocess.run(
                [
                    str(VENV_BIN / "mmflow"),
                    "run",
                    "invoice",
                    str(inputs),
                    "--out",
                    str(out),
                    "--no-cache",
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            yield RecordedRun(work / "postgres", api_url, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def step_runs_in_outputs(out: Path) -> set[str]:
    """Task-run names the stepwise flow made: `<step> <file>` for each step in each lineage."""
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    names = set()
    for entry in manifest:
        lineage = json.loads(Path(entry["output"]).read_text())["lineage"]
        names |= {f"{step['name']} {Path(entry['uri']).name}" for step in lineage["steps"]}
    return names


def read_runs(
    api_url: str, expected: set[str], wait_s: float = 120
) -> tuple[FlowRun, list[TaskRun]]:
    """The single flow run and its task runs; task-run states arrive as events, so wait a bit."""

    async def read() -> tuple[FlowRun, list[TaskRun]]:
        async with PrefectClient(api_url) as client:
            (flow_run,) = await client.read_flow_runs()
            filter_ = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id]))
            task_runs = await client.read_task_runs(flow_run_filter=filter_)
            return flow_run, task_runs

    def settled(task_runs: list[TaskRun]) -> bool:
        return expected <= {t.name for t in task_runs} and all(
            t.state is not None and t.state.is_final() for t in task_runs
        )

    deadline = time.monotonic() + wait_s
    flow_run, task_runs = asyncio.run(read())
    while time.monotonic() < deadline and not settled(task_runs):
        time.sleep(1)
        flow_run, task_runs = asyncio.run(read())
    return flow_run, task_runs


def test_flow_run_and_a_task_run_per_step_are_recorded_completed(
    invoice_run_on_postgres: RecordedRun,
) -> None:
    expected = step_runs_in_outputs(invoice_run_on_postgres.out)
    assert len(expected) >= 2 * 7  # validate … sanity for each document: the flow ran stepwise

    flow_run, task_runs = read_runs(invoice_run_on_postgres.api_url, expected)

    assert flow_run.state is not None and flow_run.state.is_completed()
    completed = {t.name for t in task_runs if t.state is not None and t.state.is_completed()}
    assert expected - completed == set()
    assert len(completed) == len(task_runs)


def test_task_runs_are_rows_in_the_postgres_task_run_table(
    invoice_run_on_postgres: RecordedRun,
) -> None:
    expected = step_runs_in_outputs(invoice_run_on_postgres.out)
    flow_run, task_runs = read_runs(invoice_run_on_postgres.api_url, expected)
    flow_run_id = UUID(str(flow_run.id))  # a UUID by type: safe to put in the SQL text

    rows = postgres_psql(
        invoice_run_on_postgres.data_dir,
        f"SELECT count(*) FROM task_run WHERE flow_run_id = '{flow_run_id}'"
        " AND state_type = 'COMPLETED'",
    )

    assert int(rows) == len(task_runs) >= len(expected)
