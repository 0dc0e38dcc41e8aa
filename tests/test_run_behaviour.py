"""How a run ends, whatever the inputs and whoever stops it (issue: nothing lost, nothing
silently wrong): missing inputs fail the run, a stuck input times out, a strict run fails
inputs whose checks fail, the first Ctrl-C stops gently and leaves a complete manifest, and
output folders shared by several runs stay consistent with their manifests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from prefect.states import StateType

from mmflow.flows import stopping
from mmflow.flows.batch import batch_flow
from mmflow.flows.invoice import invoice_flow
from mmflow.flows.runs import RunContext, RunSettings, input_labels, run_input
from mmflow.flows.steps import InlineSteps
from mmflow.tasks.persist import Manifest, OutputNames
from mmflow.tasks.samples import numbered_invoices, write_files
from tests.prefect_runs import task_run_names

pytestmark = pytest.mark.slow


def _manifest(out: Path) -> dict[str, dict[str, object]]:
    lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    return {Path(str(line["uri"])).name: line for line in lines}


def _mmflow(*args: str, env: dict[str, str] | None = None, timeout: float = 600):
    return subprocess.run(
        [sys.executable, "-m", "mmflow.cli", *args],
        env=env or dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture()
def invoices(tmp_path: Path) -> list[Path]:
    return write_files(tmp_path / "in", numbered_invoices(3))


# ---------------------------------------------------------------- missing inputs


def test_a_missing_input_fails_the_run_and_has_its_manifest_line(
    prefect_server: str, invoices: list[Path], tmp_path: Path
) -> None:
    missing = tmp_path / "in" / "no-such-invoice.pdf"
    state = invoice_flow(
        inputs=[str(invoices[0]), str(missing)],
        out=str(tmp_path / "out"),
        run=RunSettings(cache=False),
        return_state=True,
    )
    assert state.type is StateType.FAILED
    assert "not_found" in str(state.message)
    manifest = _manifest(tmp_path / "out")
    assert manifest[missing.name]["status"] == "failed"
    assert manifest[missing.name]["error"]["code"] == "not_found"  # type: ignore[index]
    assert manifest[invoices[0].name]["status"] == "ok"


def test_the_cli_exits_non_zero_for_a_path_that_does_not_exist(
    prefect_server: str, tmp_path: Path
) -> None:
    env = os.environ | {"PREFECT_API_URL": prefect_server}
    done = _mmflow(
        "run", "invoice", str(tmp_path / "nope.pdf"), "--out", str(tmp_path / "o"), env=env
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "not found" in done.stderr
    assert _manifest(tmp_path / "o")["nope.pdf"]["error"]["code"] == "not_found"  # type: ignore[index]
    batch = _mmflow(
        "run", "batch", str(tmp_path / "no-such"), "--out", str(tmp_path / "b"), env=env
    )
    assert batch.returncode == 1, batch.stdout + batch.stderr


# ---------------------------------------------------------------- the nightly batch's source


@pytest.mark.parametrize("source", ["", "   ", "{{ $MMFLOW_BATCH_SOURCE }}", "."])
def test_a_batch_without_a_named_source_is_refused_and_fails(
    prefect_server: str, source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # what a worker's working directory would be
    (tmp_path / "project-file.txt").write_text("not an invoice")
    state = batch_flow(source=source, out=str(tmp_path / "out"), return_state=True)
    assert state.type is StateType.FAILED
    assert "batch source" in str(state.message)
    assert not (tmp_path / "out" / "manifest.jsonl").exists()


def test_two_batches_into_one_folder_are_refused(
    prefect_server: str, invoices: list[Path], tmp_path: Path
) -> None:
    from mmflow.tasks.persist import OutputLock

    out = tmp_path / "out"
    out.mkdir()
    with OutputLock(str(out), timeout_s=0, name=".mmflow-batch.lock"):  # another batch
        state = batch_flow(source=str(tmp_path / "in"), out=str(out), return_state=True)
    assert state.type is StateType.FAILED
    assert "locked by another mmflow run" in str(state.message)


# ---------------------------------------------------------------- output folders shared by runs


def test_line_items_hold_every_ok_input_of_the_folder_across_runs(
    prefect_server: str, tmp_path: Path
) -> None:
    """One run per upload into one folder (the webhook's way): the table follows the manifest."""
    paths = write_files(tmp_path / "in", numbered_invoices(5))
    out = tmp_path / "out"
    for path in paths:
        invoice_flow(inputs=[str(path)], out=str(out), run=RunSettings(cache=False))
    table = pd.read_parquet(out / "line_items.parquet")
    assert set(table["uri"]) == {str(p) for p in paths}
    assert len(_manifest(out)) == 5


def test_concurrent_runs_into_one_folder_lose_no_line_and_no_row(
    prefect_server: str, tmp_path: Path
) -> None:
    paths = write_files(tmp_path / "in", numbered_invoices(6))
    out = tmp_path / "out"
    errors: list[BaseException] = []

    def one(path: Path) -> None:
        try:
            invoice_flow(inputs=[str(path)], out=str(out), run=RunSettings(cache=False))
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=one, args=(p,)) for p in paths]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert set(_manifest(out)) == {p.name for p in paths}
    table = pd.read_parquet(out / "line_items.parquet")
    assert set(table["uri"]) == {str(p) for p in paths}


def test_a_deleted_line_items_table_is_rebuilt_from_the_results(
    prefect_server: str, tmp_path: Path
) -> None:
    paths = write_files(tmp_path / "in", numbered_invoices(2))
    out = tmp_path / "out"
    invoice_flow(inputs=[str(paths[0])], out=str(out), run=RunSettings(cache=False))
    (out / "line_items.parquet").unlink()
    invoice_flow(inputs=[str(paths[1])], out=str(out), run=RunSettings(cache=False))
    table = pd.read_parquet(out / "line_items.parquet")
    assert set(table["uri"]) == {str(p) for p in paths}


# ---------------------------------------------------------------- timeouts and strictness


def _context(pipeline: Any, out: Path, settings: RunSettings) -> RunContext:
    return RunContext(pipeline, str(out), None, "t", Manifest(str(out)), OutputNames(), settings)


class _Wrapping:
    """A pipeline that is another one, but for what a subclass changes."""

    def __init__(self, real: object) -> None:
        self.real = real

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)


class _Stuck(_Wrapping):
    """A pipeline whose first input never ends (a decoder stuck on a crafted file)."""

    name = "stuck"

    def process(self, uri: str, sha256: str, steps: object, run_id: str) -> object:
        if uri.endswith("-0.pdf") or "10000" in uri:
            time.sleep(30)
        return self.real.process(uri, sha256, steps, run_id)  # type: ignore[attr-defined]


def test_an_input_past_the_timeout_ends_failed_and_the_others_go_on(
    invoices: list[Path], tmp_path: Path
) -> None:
    from mmflow.flows.invoice import InvoicePipeline

    out = tmp_path / "out"
    out.mkdir()
    run = _context(_Stuck(InvoicePipeline()), out, RunSettings(input_timeout_s=2))
    started = time.monotonic()
    summaries = [run_input(str(p), InlineSteps(None, "t"), run) for p in invoices]
    assert time.monotonic() - started < 20
    assert summaries[0].status.value == "failed" and summaries[0].error is not None
    assert summaries[0].error.code == "timeout"
    assert [s.status.value for s in summaries[1:]] == ["ok", "ok"]


class _Where(_Wrapping):
    """A pipeline that notes which thread processed each input."""

    name = "where"

    def __init__(self, real: object) -> None:
        super().__init__(real)
        self.threads: list[threading.Thread] = []

    def process(self, uri: str, sha256: str, steps: object, run_id: str) -> object:
        self.threads.append(threading.current_thread())
        return self.real.process(uri, sha256, steps, run_id)  # type: ignore[attr-defined]


def test_without_a_timeout_an_input_runs_in_the_calling_thread(
    invoices: list[Path], tmp_path: Path
) -> None:
    """A thread per input only pays for itself when there is a timeout to enforce: in a batch
    of small inputs it cost ~5 ms each (docs/performance.md)."""
    from mmflow.flows.invoice import InvoicePipeline

    out = tmp_path / "out"
    out.mkdir()
    where = _Where(InvoicePipeline())
    run = _context(where, out, RunSettings())
    summary = run_input(str(invoices[0]), InlineSteps(None, "t"), run)
    assert summary.status.value == "ok"
    assert where.threads == [threading.current_thread()]


def _invoice_whose_total_does_not_add_up() -> bytes:
    """A text PDF whose printed total is 50.00 more than subtotal + tax."""
    import pymupdf

    lines = [
        "ACME Supplies Ltd",
        "1 Harbour Road, Bristol BS1 4AA",
        "INVOICE",
        "Invoice number: INV-2041",
        "Invoice date: 2026-03-02",
        "Bill to: Northwind Traders",
        "Description            Qty   Unit price   Amount",
        "Paper A4 box           2     50.00        100.00",
        "Subtotal: 100.00 EUR",
        "VAT 19%: 19.00 EUR",
        "Total: 169.00 EUR",
    ]
    with pymupdf.open() as pdf:
        page = pdf.new_page()
        for number, line in enumerate(lines):
            page.insert_text((60, 80 + 22 * number), line, fontsize=11)
        return pdf.tobytes()


def test_a_strict_run_fails_an_input_whose_checks_fail(prefect_server: str, tmp_path: Path) -> None:
    pdf = tmp_path / "wrong-total.pdf"
    pdf.write_bytes(_invoice_whose_total_does_not_add_up())
    relaxed = invoice_flow(inputs=[str(pdf)], out=str(tmp_path / "a"), run=RunSettings(cache=False))
    assert relaxed.inputs[0].status.value == "ok" and relaxed.inputs[0].details["review"]
    strict = invoice_flow(
        inputs=[str(pdf)],
        out=str(tmp_path / "b"),
        run=RunSettings(cache=False, strict=True),
        return_state=True,
    )
    assert strict.type is StateType.FAILED
    (summary,) = strict.result(raise_on_failure=False).report.inputs
    assert summary.status.value == "failed" and summary.error.code == "checks_failed"


# ---------------------------------------------------------------- stopping a run


def test_once_a_stop_is_asked_no_input_starts_and_each_ends_interrupted(
    invoices: list[Path], tmp_path: Path
) -> None:
    from mmflow.flows.invoice import InvoicePipeline

    out = tmp_path / "out"
    out.mkdir()
    stopping.request_stop()
    try:
        run = _context(InvoicePipeline(), out, RunSettings())
        summary = run_input(str(invoices[0]), InlineSteps(None, "t"), run)
    finally:
        stopping.reset()
    assert summary.status.value == "failed" and summary.error is not None
    assert summary.error.code == "interrupted"
    assert _manifest(out)[invoices[0].name]["error"]["code"] == "interrupted"  # type: ignore[index]


def test_the_first_ctrl_c_stops_gently_and_the_manifest_holds_every_input(
    prefect_server: str, tmp_path: Path
) -> None:
    paths = write_files(tmp_path / "in", numbered_invoices(60))
    out = tmp_path / "out"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mmflow.cli",
            "run",
            "invoice",
            str(tmp_path / "in"),
            "--out",
            str(out),
            "--no-cache",
            "--workers",
            "1",
        ],
        env=os.environ | {"PREFECT_API_URL": prefect_server, "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (
        (out / "manifest.jsonl").exists()
        and len((out / "manifest.jsonl").read_text().splitlines()) >= 3
    ):
        time.sleep(0.2)
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert time.monotonic() - sent < 40, "the first Ctrl-C must end the run within seconds"
    assert process.returncode == 130, stdout + stderr
    assert "Stopping" in stderr
    manifest = _manifest(out)
    assert set(manifest) == {p.name for p in paths}  # every input, exactly once
    codes = {line["error"]["code"] for line in manifest.values() if line["error"]}  # type: ignore[index]
    assert codes == {"interrupted"}
    assert sum(line["status"] == "ok" for line in manifest.values()) >= 3


# ---------------------------------------------------------------- names a person can find


def test_runs_and_task_runs_are_named_by_the_uploaded_file_name(
    prefect_server: str, invoices: list[Path], tmp_path: Path
) -> None:
    state = invoice_flow(
        inputs=[str(invoices[0])],
        out=str(tmp_path / "out"),
        names=["ACME March invoice.pdf"],
        run=RunSettings(cache=False),
        return_state=True,
    )
    from prefect import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    assert run.name == "invoice ACME March invoice.pdf"
    names = task_run_names(state.state_details.flow_run_id, 7)
    assert "validate ACME March invoice.pdf" in names


def test_display_names_fall_back_to_the_file_name() -> None:
    assert input_labels(["s3://b/in/abc123", "/x/y.pdf"], ["scan.pdf", ""]) == {
        "s3://b/in/abc123": "scan.pdf",
        "/x/y.pdf": "y.pdf",
    }


# ---------------------------------------------------------------- the command line


def test_out_naming_a_file_is_a_one_line_error(tmp_path: Path) -> None:
    taken = tmp_path / "results.txt"
    taken.write_text("x")
    done = _mmflow("run", "invoice", str(tmp_path), "--out", str(taken))
    assert done.returncode == 2
    assert "is a file" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_version_and_quiet(prefect_server: str, invoices: list[Path], tmp_path: Path) -> None:
    from importlib.metadata import version

    shown = _mmflow("--version")
    assert shown.returncode == 0 and version("mmflow") in shown.stdout
    env = os.environ | {"PREFECT_API_URL": prefect_server}
    quiet = _mmflow("-q", "run", "invoice", str(invoices[0]), "--out", str(tmp_path / "o"), env=env)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.strip().splitlines() == [
        f"1 ok, 0 rejected, 0 failed · manifest: {tmp_path / 'o'}/manifest.jsonl"
    ]


def test_audio_given_to_the_invoice_flow_points_to_the_meeting_flow(
    prefect_server: str, shared_data: Path, tmp_path: Path
) -> None:
    flac = shared_data / "audio" / "speech" / "jfk.flac"
    report = invoice_flow(inputs=[str(flac)], out=str(tmp_path / "o"), run=RunSettings(cache=False))
    (summary,) = report.inputs
    assert summary.status.value == "rejected" and summary.error is not None
    assert summary.error.code == "unsupported_format"
    assert "mmflow run meeting" in summary.error.message


# ---------------------------------------------------------------- the run form


def test_the_run_form_shows_what_a_user_changes_each_described() -> None:
    from mmflow.flows.registry import scenarios

    for scenario in scenarios():
        schema = scenario.load_flow().parameters.model_dump()
        properties = schema["properties"]
        for name in ("inputs", "out", "options", "run"):
            assert name in properties, (scenario.name, name)
        undescribed = [n for n, p in properties.items() if not p.get("description")]
        assert undescribed == [], (scenario.name, undescribed)
        definitions = schema.get("definitions", {})
        run = definitions["RunSettings"]["properties"]
        assert run["workers"]["minimum"] == 1
        options = definitions[properties["options"]["$ref"].rsplit("/", 1)[-1]]["properties"]
        internals = {"png_compress_level", "max_pixels", "tiers", "min_chars", "limits"}
        assert not internals & set(options), (scenario.name, set(options))  # under `advanced`
        if "max_usd" in properties:
            assert {"type": "number", "minimum": 0} in properties["max_usd"]["anyOf"]
        dpi_fields = [
            f"{model}.{field}"
            for model, definition in definitions.items()
            for field in definition.get("properties", {})
            if "dpi" in field
        ]
        assert len(dpi_fields) <= 1, (scenario.name, dpi_fields)  # one DPI in the form
