"""S3 storage through s3fs against a real S3-compatible server (moto_server) the tests start.

Inputs are listed from a prefix and read from the bucket, outputs and the manifest are written
to it, and Prefect's step results persist there through a `RemoteFileSystem` block.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from prefect.filesystems import LocalFileSystem, RemoteFileSystem

from mmflow.blocks.storage import storage_for
from mmflow.flows.invoice import InvoiceRunReport, invoice_flow
from mmflow.flows.runs import result_storage
from mmflow.tasks.errors import MissingDependency
from mmflow.tasks.filesystems import require_filesystem
from mmflow.tasks.samples import SPECS, invoice_pdf

BUCKET = "mmflow-test"
INVOICES = ("northwind-invoice", "brenner-rechnung-rotated")


@pytest.fixture(scope="session")
def bucket(moto_endpoint: str) -> str:
    """A bucket holding two generated invoices and one damaged PDF under `inbox/`."""
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=moto_endpoint)
    fs.mkdir(BUCKET)
    for name in INVOICES:
        fs.pipe_file(f"{BUCKET}/inbox/{name}.pdf", invoice_pdf(SPECS[name]))
    fs.pipe_file(f"{BUCKET}/inbox/broken.pdf", b"%PDF-1.7\n1 0 obj << /Type /Catalog")
    return BUCKET


def _fs() -> Any:
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    fs.invalidate_cache()
    return fs


@pytest.fixture(scope="module")
def two_runs(prefect_server: str, bucket: str) -> tuple[InvoiceRunReport, InvoiceRunReport]:
    """The same prefix twice into two output prefixes, sharing one S3 result cache.

    The first run has a task run per step, the second groups documents into batch task runs:
    both read and write the same cache records.
    """
    common: dict[str, Any] = {
        "inputs": [f"s3://{bucket}/inbox/"],
        "cache_dir": f"s3://{bucket}/cache",
    }
    first = invoice_flow(out=f"s3://{bucket}/out-first", **common)
    second = invoice_flow(out=f"s3://{bucket}/out-second", stepwise_max=0, **common)
    return first, second


def _manifest(prefix: str) -> list[dict[str, Any]]:
    text = _fs().cat_file(f"{prefix}/manifest.jsonl").decode()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.slow
def test_every_object_under_the_prefix_ends_in_the_manifest_on_s3(
    two_runs: tuple[InvoiceRunReport, InvoiceRunReport], bucket: str
) -> None:
    lines = _manifest(f"{bucket}/out-first")
    assert sorted(line["uri"] for line in lines) == sorted(
        f"s3://{bucket}/inbox/{name}.pdf" for name in ("broken", *INVOICES)
    )


@pytest.mark.slow
def test_a_damaged_object_is_rejected_with_its_code(
    two_runs: tuple[InvoiceRunReport, InvoiceRunReport], bucket: str
) -> None:
    by_name = {Path(line["uri"]).name: line for line in _manifest(f"{bucket}/out-first")}
    assert by_name["broken.pdf"]["status"] == "rejected"
    assert by_name["broken.pdf"]["error"]["code"] == "corrupt"
    assert all(by_name[f"{name}.pdf"]["status"] == "ok" for name in INVOICES)


@pytest.mark.slow
def test_result_json_and_line_items_parquet_are_written_to_the_bucket(
    two_runs: tuple[InvoiceRunReport, InvoiceRunReport], bucket: str
) -> None:
    fs = _fs()
    spec = SPECS["northwind-invoice"]
    result = json.loads(fs.cat_file(f"{bucket}/out-first/northwind-invoice.json"))
    assert result["fields"]["total"]["value"] == str(spec.total)
    frame = pd.read_parquet(io.BytesIO(fs.cat_file(f"{bucket}/out-first/line_items.parquet")))
    expected_items = sum(len(SPECS[name].items) for name in INVOICES)
    assert len(frame) == expected_items


@pytest.mark.slow
def test_step_results_persist_under_the_s3_cache_prefix(
    two_runs: tuple[InvoiceRunReport, InvoiceRunReport], bucket: str
) -> None:
    keys = [Path(k).name for k in _fs().find(f"{bucket}/cache")]
    assert {k.split("-", 1)[0] for k in keys} >= {"validate", "extract", "sanity"}


@pytest.mark.slow
def test_second_run_is_served_from_the_s3_result_cache(
    two_runs: tuple[InvoiceRunReport, InvoiceRunReport], bucket: str
) -> None:
    fs = _fs()
    _, second = two_runs
    for name in INVOICES:
        result = json.loads(fs.cat_file(f"{bucket}/out-second/{name}.json"))
        assert all(step["cached"] for step in result["lineage"]["steps"]), name
    assert [d.details for d in two_runs[0].documents] == [d.details for d in second.documents]


@pytest.mark.slow
def test_mmflow_run_invoice_reads_and_writes_s3_from_the_command_line(
    prefect_server: str, bucket: str, moto_endpoint: str
) -> None:
    env = os.environ | {"PREFECT_API_URL": prefect_server}
    out = f"s3://{bucket}/cli-out"
    completed = subprocess.run(
        [
            *(sys.executable, "-m", "mmflow.cli", "run", "invoice", f"s3://{bucket}/inbox/"),
            *("--out", out, "--cache-dir", f"s3://{bucket}/cli-cache"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    statuses = sorted(line["status"] for line in _manifest(f"{bucket}/cli-out"))
    assert statuses == ["ok", "ok", "rejected"]
    assert _fs().exists(f"{bucket}/cli-out/line_items.parquet")


def test_an_s3_cache_dir_becomes_a_remote_filesystem_block_with_the_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("s3fs")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    storage = result_storage(True, "s3://bucket/cache/")
    assert isinstance(storage, RemoteFileSystem)
    assert storage.basepath == "s3://bucket/cache"
    assert storage.settings == {"endpoint_url": "http://127.0.0.1:9"}
    assert "secret" not in storage.model_dump_json().lower()


def test_a_local_cache_dir_stays_a_local_filesystem(tmp_path: Path) -> None:
    storage = storage_for(str(tmp_path))
    assert isinstance(storage, LocalFileSystem)
    assert storage.basepath == str(tmp_path)


def test_s3_without_s3fs_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "s3fs", None)  # makes `import s3fs` fail
    with pytest.raises(MissingDependency, match=r"pip install 'mmflow\[s3\]'"):
        storage_for("s3://bucket/cache")
    with pytest.raises(MissingDependency):
        require_filesystem("s3://bucket/inbox/")


@pytest.mark.slow
def test_the_webhook_stores_uploads_by_hash_in_the_bucket_and_dedupes_them(
    bucket: str, moto_endpoint: str
) -> None:
    import hashlib

    from starlette.testclient import TestClient

    from benchmarks.webhook_load import CountingEmitter
    from mmflow.deployments.webhook import WebhookSettings, create_app, signed_headers

    secret, pdf = b"s3-hook-secret", invoice_pdf(SPECS["northwind-invoice"])
    settings = WebhookSettings(storage=f"s3://{bucket}/hook", secret=secret)
    emitted = CountingEmitter()
    with TestClient(create_app(settings, emit=emitted)) as client:
        first = client.post(
            "/v1/ingest/invoice",
            content=pdf,
            headers=signed_headers(secret, pdf, "application/pdf"),
        )
        second = client.post(
            "/v1/ingest/invoice",
            content=pdf,
            headers=signed_headers(secret, pdf, "application/pdf", timestamp=time.time() + 1),
        )
        status = client.get(first.json()["status_url"]).json()
    sha256 = hashlib.sha256(pdf).hexdigest()
    assert (first.status_code, second.status_code) == (202, 200)
    assert first.json()["uri"] == f"s3://{bucket}/hook/uploads/{sha256}"
    assert _fs().cat_file(f"{bucket}/hook/uploads/{sha256}") == pdf
    assert status["scenarios"]["invoice"]["status"] == "received"
    assert len(emitted.uploads) == 1
