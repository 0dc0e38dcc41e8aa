"""The batch flow: de-duplication, resuming after a real kill -9, manifests on S3, artifacts."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from prefect.states import State

from mmflow.flows.batch import BatchReport, batch_flow, plan_batch
from mmflow.flows.runs import RunSettings
from mmflow.tasks.models import ErrorInfo, ManifestEntry, Status
from mmflow.tasks.persist import Manifest, OutputNames
from mmflow.tasks.samples import numbered_invoices
from tests.inboxes import batch_inbox


def _entry(uri: str, sha: str | None, status: Status, output: str | None = None) -> ManifestEntry:
    error = None if status is Status.OK else ErrorInfo(code="corrupt", message="x")
    return ManifestEntry(uri=uri, sha256=sha, status=status, error=error, output=output)


def _manifest_lines(out: Path) -> list[dict[str, Any]]:
    lines = (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


# ---------------------------------------------------------------- planning (pure)


def test_the_second_name_for_the_same_bytes_is_a_duplicate_of_the_first() -> None:
    plan = plan_batch(["a.pdf", "b.pdf", "c.pdf"], {"a.pdf": "1", "b.pdf": "2", "c.pdf": "1"}, {})
    assert plan.todo == ["a.pdf", "b.pdf"]
    [duplicate] = plan.duplicates
    assert duplicate.uri == "c.pdf"
    assert duplicate.status is Status.REJECTED
    assert duplicate.error is not None and duplicate.error.code == "duplicate"
    assert "a.pdf" in duplicate.error.message


def test_inputs_already_ended_with_the_same_bytes_are_resumed_not_redone() -> None:
    before = {
        "ok.pdf": _entry("ok.pdf", "1", Status.OK, "out/ok.json"),
        "bad.pdf": _entry("bad.pdf", "2", Status.REJECTED),
        "failed.pdf": _entry("failed.pdf", "3", Status.FAILED),
        "changed.pdf": _entry("changed.pdf", "old", Status.OK, "out/changed.json"),
    }
    hashes: dict[str, str | None] = {
        "ok.pdf": "1",
        "bad.pdf": "2",
        "failed.pdf": "3",
        "changed.pdf": "new",
        "new.pdf": "5",
    }
    plan = plan_batch(list(hashes), hashes, before)
    assert [e.uri for e in plan.resumed] == ["ok.pdf", "bad.pdf"]
    assert plan.todo == ["failed.pdf", "changed.pdf", "new.pdf"]


def test_unreadable_and_empty_inputs_are_never_taken_for_duplicates() -> None:
    empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    hashes: dict[str, str | None] = {"a": None, "b": None, "c": empty, "d": empty}
    plan = plan_batch(list(hashes), hashes, {})
    assert plan.todo == ["a", "b", "c", "d"]
    assert plan.duplicates == []


# ---------------------------------------------------------------- manifest and names


def test_a_resumed_run_never_gives_an_earlier_inputs_name_to_another() -> None:
    names = OutputNames()
    names.remember("first/invoice.pdf", "out/invoice.json")
    assert names.stem_for("second/invoice.pdf", "ab" * 32) == "invoice-abababab"
    assert names.stem_for("first/invoice.pdf", "cd" * 32) == "invoice"


def test_manifest_and_names_survive_pickling_for_worker_processes(tmp_path: Path) -> None:
    manifest, names = Manifest(str(tmp_path)), OutputNames()
    names.stem_for("a/x.pdf", "1" * 64)
    manifest_copy, names_copy = pickle.loads(pickle.dumps((manifest, names)))
    manifest_copy.append(_entry("a/x.pdf", "1", Status.OK, "x.json"))
    assert [e.uri for e in manifest.read()] == ["a/x.pdf"]
    assert names_copy.stem_for("b/x.pdf", "2" * 64) == "x-22222222"


@pytest.mark.slow
def test_manifest_lines_on_s3_are_separate_objects_until_compaction(moto_endpoint: str) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=moto_endpoint)
    fs.mkdir("manifest-parts")
    manifest = Manifest("s3://manifest-parts/out")
    for i in range(5):
        manifest.append(_entry(f"doc-{i}.pdf", str(i), Status.OK, f"doc-{i}.json"))
    manifest.append(_entry("doc-0.pdf", "0", Status.REJECTED))
    fs.invalidate_cache()
    assert len(fs.find("manifest-parts/out/.manifest.d")) == 6  # one small object per line
    assert len(manifest.read()) == 6
    entries = manifest.compact(order=[f"doc-{i}.pdf" for i in range(5)])
    assert [e.status for e in entries] == [Status.REJECTED] + [Status.OK] * 4
    fs.invalidate_cache()
    assert not fs.find("manifest-parts/out/.manifest.d")
    assert len(fs.cat_file("manifest-parts/out/manifest.jsonl").splitlines()) == 5


# ---------------------------------------------------------------- the flow


@pytest.fixture(scope="module")
def batch_state(prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> State[Any]:
    root = tmp_path_factory.mktemp("batch")
    source = batch_inbox(root / "inbox", 8)
    return batch_flow(
        source=str(source), out=str(root / "out"), return_state=True, run=RunSettings(group_size=3)
    )


@pytest.fixture(scope="module")
def batch_run(batch_state: State[Any]) -> BatchReport:
    report: BatchReport = batch_state.result()
    return report


@pytest.mark.slow
def test_every_listed_input_ends_in_the_manifest_exactly_once(batch_run: BatchReport) -> None:
    lines = _manifest_lines(Path(batch_run.out))
    assert len(lines) == batch_run.listed == 11
    assert len({line["uri"] for line in lines}) == 11
    codes = {Path(line["uri"]).name: (line["error"] or {}).get("code") for line in lines}
    assert codes["zz-copy.pdf"] == "duplicate"
    assert codes["notes.txt"] == "unsupported_format"
    assert codes["empty.pdf"] == "empty"
    assert sum(line["status"] == "ok" for line in lines) == 8


@pytest.mark.slow
def test_the_report_counts_what_the_batch_did(batch_run: BatchReport) -> None:
    assert (batch_run.processed, batch_run.resumed, batch_run.duplicates) == (10, 0, 1)
    assert batch_run.count(Status.OK) == 8
    assert batch_run.failed == 0


@pytest.mark.slow
def test_a_second_run_recomputes_nothing(batch_run: BatchReport) -> None:
    out = Path(batch_run.out)
    written = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}
    again = batch_flow(source=batch_run.source, out=batch_run.out, run=RunSettings(group_size=3))
    assert (again.processed, again.resumed, again.duplicates) == (0, 10, 1)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")} == written
    assert len(_manifest_lines(out)) == 11
    assert again.count(Status.OK) == 8  # line items of resumed inputs are read back
    assert (out / "line_items.parquet").exists()


@pytest.mark.slow
def test_the_batch_leaves_a_progress_and_a_report_artifact(batch_state: State[Any]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    run_id = batch_state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    by_type = {a.type: a for a in artifacts}
    assert by_type["progress"].data == 100.0
    assert "| duplicates (same bytes) | 1 |" in str(by_type["markdown"].data)


@pytest.mark.slow
def test_a_batch_killed_mid_run_completes_when_run_again(
    prefect_server: str, tmp_path: Path
) -> None:
    """kill -9 the whole process group mid-batch, run the same command, check exactly-once."""
    source = batch_inbox(tmp_path / "inbox", 120)
    out = tmp_path / "out"
    command = [
        *(sys.executable, "-m", "mmflow.cli", "run", "batch", str(source)),
        *("--out", str(out), "--group-size", "4", "--cache-dir", str(tmp_path / "cache")),
    ]
    env = os.environ | {"PREFECT_API_URL": prefect_server}
    first = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    manifest = out / "manifest.jsonl"
    deadline = time.monotonic() + 300
    while not (manifest.exists() and len(manifest.read_text().splitlines()) >= 12):
        assert first.poll() is None, "the batch ended before it could be killed"
        assert time.monotonic() < deadline, "the batch wrote no manifest lines in 5 minutes"
        time.sleep(0.02)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL

    ended = {
        line["uri"]: line for line in _manifest_lines(out) if line["status"] in ("ok", "rejected")
    }
    assert 12 <= len(ended) < 123, "the kill did not land mid-batch"
    outputs = {uri: Path(line["output"]) for uri, line in ended.items() if line["output"]}
    stamps = {uri: path.stat().st_mtime_ns for uri, path in outputs.items()}

    second = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert second.returncode == 0, second.stdout + second.stderr

    lines = _manifest_lines(out)
    uris = [line["uri"] for line in lines]
    assert len(uris) == len(set(uris)) == 123  # 120 invoices, a copy, two bad files: all, once
    assert {uri: path.stat().st_mtime_ns for uri, path in outputs.items()} == stamps
    assert sum(line["status"] == "ok" for line in lines) == 120
    assert all(json.loads(p.read_text())["source"]["sha256"] for p in out.glob("invoice-*.json"))


@pytest.mark.slow
def test_a_batch_over_an_s3_prefix_writes_one_manifest_and_resumes(
    prefect_server: str, moto_endpoint: str
) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=moto_endpoint)
    fs.mkdir("batch-s3")
    documents = dict(numbered_invoices(4))
    for name, data in documents.items():
        fs.pipe_file(f"batch-s3/inbox/{name}", data)
    fs.pipe_file("batch-s3/inbox/copy.pdf", documents["invoice-10001.pdf"])
    common: dict[str, Any] = {
        "source": "s3://batch-s3/inbox/",
        "out": "s3://batch-s3/out",
        "run": RunSettings(cache_dir="s3://batch-s3/cache", group_size=2),
    }
    first = batch_flow(**common)
    fs.invalidate_cache()
    lines = [json.loads(line) for line in fs.cat_file("batch-s3/out/manifest.jsonl").splitlines()]
    assert len({line["uri"] for line in lines}) == len(lines) == 5
    assert not fs.exists("batch-s3/out/.manifest.d") or not fs.find("batch-s3/out/.manifest.d")
    assert (first.processed, first.duplicates) == (4, 1)
    again = batch_flow(**common)
    assert (again.processed, again.resumed) == (0, 4)
