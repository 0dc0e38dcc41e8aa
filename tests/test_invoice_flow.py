"""The invoice flow on the real Prefect engine and server: steps, caching, grouping, contracts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mmflow.flows.invoice import invoice_flow
from mmflow.flows.runs import RunSettings
from mmflow.tasks.models import InvoiceResult
from mmflow.tasks.samples import make_samples
from tests.badinputs import build_mixed_directory
from tests.prefect_runs import task_run_names

pytestmark = pytest.mark.slow
STEP_NAMES = {"validate", "normalise", "route", "read", "split", "extract", "verify", "sanity"}


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return make_samples(tmp_path_factory.mktemp("samples"))


def _text_pdf(samples: list[Path]) -> Path:
    return next(p for p in samples if p.suffix == ".pdf" and "scan" not in p.name)


def test_one_document_shows_every_step_as_a_task_run(
    prefect_server: str, samples: list[Path], tmp_path: Path
) -> None:
    state = invoice_flow(
        inputs=[str(_text_pdf(samples))],
        out=str(tmp_path / "out"),
        return_state=True,
        run=RunSettings(cache_dir=str(tmp_path / "cache")),
    )
    report = state.result()
    assert [d.status.value for d in report.inputs] == ["ok"]
    runs = task_run_names(state.state_details.flow_run_id, len(STEP_NAMES))
    names = {name.split(" ")[0] for name in runs}
    assert names >= STEP_NAMES


def test_output_json_carries_fields_checks_routes_and_lineage(
    prefect_server: str, samples: list[Path], tmp_path: Path
) -> None:
    pdf = _text_pdf(samples)
    invoice_flow(inputs=[str(pdf)], out=str(tmp_path / "out"), run=RunSettings(cache=False))
    result = InvoiceResult.model_validate_json((tmp_path / "out" / f"{pdf.stem}.json").read_text())
    truth = json.loads(pdf.with_suffix(".truth.json").read_text())
    assert result.fields["total"].value == truth["total"]
    assert result.fields["total"].evidence and result.fields["total"].bbox
    assert [r.route.value for r in result.route] == ["text_layer"] * result.source.pages
    assert {s["name"] for s in result.lineage["steps"]} == STEP_NAMES
    assert all(s["cache_key"] and s["version"] for s in result.lineage["steps"])
    assert {c.name for c in result.checks}


def test_rerun_of_the_same_inputs_recomputes_nothing(
    prefect_server: str, samples: list[Path], tmp_path: Path
) -> None:
    inputs = [str(p) for p in samples]
    run = RunSettings(cache_dir=str(tmp_path / "cache"), stepwise_max=0)
    first = invoice_flow(inputs=inputs, out=str(tmp_path / "first"), run=run)
    second = invoice_flow(inputs=inputs, out=str(tmp_path / "second"), run=run)
    assert [d.details for d in first.inputs] == [d.details for d in second.inputs]
    for doc in second.inputs:
        if doc.output:
            lineage = json.loads(Path(doc.output).read_text())["lineage"]["steps"]
            assert all(step["cached"] for step in lineage), doc.uri


def test_a_batch_groups_documents_into_few_task_runs(
    prefect_server: str, samples: list[Path], tmp_path: Path
) -> None:
    pdf = _text_pdf(samples)
    folder = tmp_path / "batch"
    folder.mkdir()
    for i in range(12):
        (folder / f"copy{i:02d}.pdf").write_bytes(pdf.read_bytes())
    state = invoice_flow(
        inputs=[str(folder)],
        out=str(tmp_path / "out"),
        return_state=True,
        run=RunSettings(cache=False, group_size=6),
    )
    assert all(d.status.value == "ok" for d in state.result().inputs)
    assert len(task_run_names(state.state_details.flow_run_id, 2)) == 2


def test_fifty_mixed_files_all_end_in_the_manifest_and_the_batch_completes(
    prefect_server: str, tmp_path: Path
) -> None:
    expected = build_mixed_directory(tmp_path / "mixed", n=50)
    report = invoice_flow(
        inputs=[str(tmp_path / "mixed")], out=str(tmp_path / "out"), run=RunSettings(cache=False)
    )
    lines = [json.loads(x) for x in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    assert len(lines) == 50 == len(report.inputs)
    by_name = {Path(line["uri"]).name: line for line in lines}
    for name, code in expected.items():
        line = by_name[name]
        if code == "ok" or code.startswith("flag:"):
            assert line["status"] == "ok", line
        else:
            assert line["status"] == "rejected" and line["error"]["code"] == code, line
            assert line["error"]["message"]
    assert not any(line["status"] == "failed" for line in lines)


def test_cli_writes_contracts_and_prints_a_summary(
    prefect_server: str, samples: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    env = dict(os.environ, PREFECT_API_URL=prefect_server, MMFLOW_CACHE_DIR=str(tmp_path / "c"))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mmflow.cli",
            "run",
            "invoice",
            *map(str, samples),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ok" in done.stdout and "manifest" in done.stdout
    manifest = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(manifest) == len(samples)
    assert all(m["status"] == "ok" for m in manifest)
    items = pd.read_parquet(out / "line_items.parquet")
    assert len(items) > 0 and set(items["sha256"]) <= {m["sha256"] for m in manifest}
