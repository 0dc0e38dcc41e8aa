"""A batch of small documents on S3 (moto_server) vs local disk, and a kill -9 in the middle.

Targets (issue 5): the S3 batch completes after a kill -9 with 0 inputs lost and 0 recorded
twice, recomputing none that had ended; its throughput is within 20% of the same batch on disk.

    .venv/bin/python -m benchmarks.batch_s3 --docs 1000

Every run gets fresh output and cache locations, so each computes everything. The same batch
runs with its step cache (seven records written per document) on disk and on S3. moto_server
is a Python process on the same two cores, so each S3 request costs this machine CPU that a real
S3 endpoint would not. The Prefect server
(a real one, prefect_test_harness) and moto_server start before any timing. The killed run is a
separate `mmflow run batch` process group killed with SIGKILL once about half the inputs are in
its manifest; the same command then finishes the batch.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mmflow.flows.runs import RunSettings

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from rich.console import Console
from rich.table import Table

from mmflow.flows.batch import BatchReport, batch_flow
from mmflow.flows.runners import Runner, run_on
from mmflow.tasks.models import Status
from mmflow.tasks.samples import numbered_invoices
from tests.motoserver import moto_server

BUCKET = "mmflow-bench"


def timed_batch(source: str, out: str, cache_dir: str, workers: int) -> tuple[float, BatchReport]:
    started = time.perf_counter()
    report: BatchReport = run_on(
        batch_flow,
        Runner.THREADS,
        workers,
        source=source,
        out=out,
        run=RunSettings(cache_dir=cache_dir, workers=workers),
    )
    return time.perf_counter() - started, report


def manifest_lines(fs: Any, prefix: str) -> list[dict[str, Any]]:
    """Lines of `manifest.jsonl` and of not yet compacted parts, as a reader sees them."""
    fs.invalidate_cache()
    texts = []
    if fs.exists(f"{prefix}/manifest.jsonl"):
        texts.append(fs.cat_file(f"{prefix}/manifest.jsonl").decode())
    if fs.exists(f"{prefix}/.manifest.d"):
        texts += [b.decode() for b in fs.cat(fs.find(f"{prefix}/.manifest.d")).values()]
    return [json.loads(line) for text in texts for line in text.splitlines() if line.strip()]


def killed_then_resumed(fs: Any, docs: int, workers: int, api_url: str) -> dict[str, Any]:
    """Start the batch as its own process group, SIGKILL it mid-way, run it again."""
    source, out = f"s3://{BUCKET}/inbox", f"s3://{BUCKET}/killed-out"
    command = [
        *(sys.executable, "-m", "mmflow.cli", "run", "batch", source, "--out", out),
        *("--cache-dir", f"s3://{BUCKET}/killed-cache", "--workers", str(workers)),
    ]
    process = subprocess.Popen(
        command,
        env=os.environ | {"PREFECT_API_URL": api_url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    while len(manifest_lines(fs, f"{BUCKET}/killed-out")) < docs // 2:
        if process.poll() is not None:
            raise SystemExit("the batch finished before it could be killed: use more --docs")
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    lines = manifest_lines(fs, f"{BUCKET}/killed-out")
    ended_before = {line["uri"] for line in lines if line["status"] != "failed"}
    _, report = timed_batch(source, out, f"s3://{BUCKET}/killed-cache", workers)
    final = manifest_lines(fs, f"{BUCKET}/killed-out")
    uris = [line["uri"] for line in final]
    return {
        "ended before the kill": len(ended_before),
        "listed": report.listed,
        "lines in the manifest": len(final),
        "lost": report.listed - len(set(uris)),
        "recorded twice": len(uris) - len(set(uris)),
        "recomputed after having ended": len(ended_before & set(report.processed_inputs)),
        "processed by the second run": report.processed,
        "resumed by the second run": report.resumed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    console = Console()
    with tempfile.TemporaryDirectory() as tmp, moto_server() as endpoint:
        import s3fs

        local = Path(tmp) / "inbox"
        local.mkdir()
        fs = s3fs.S3FileSystem(endpoint_url=endpoint)
        fs.mkdir(BUCKET)
        for name, data in numbered_invoices(args.docs):
            (local / name).write_bytes(data)
        fs.put(f"{local}/", f"{BUCKET}/inbox/", recursive=True)

        with prefect_test_harness(server_startup_timeout=120):
            api_url = str(PREFECT_API_URL.value())
            timed_batch(str(local), f"{tmp}/warm-out", f"{tmp}/warm-cache", args.workers)
            local_s, local_report = timed_batch(
                str(local), f"{tmp}/out", f"{tmp}/cache", args.workers
            )
            s3_s, s3_report = timed_batch(
                f"s3://{BUCKET}/inbox", f"s3://{BUCKET}/out", f"{tmp}/s3-run-cache", args.workers
            )
            s3_cache_s, s3_cache_report = timed_batch(
                f"s3://{BUCKET}/inbox",
                f"s3://{BUCKET}/out-2",
                f"s3://{BUCKET}/cache",
                args.workers,
            )
            killed = killed_then_resumed(fs, args.docs, args.workers, api_url)

    table = Table(title=f"batch of {args.docs} text-PDF invoices, {args.workers} workers")
    table.add_column("storage")
    table.add_column("seconds", justify="right")
    table.add_column("docs/s", justify="right")
    table.add_column("ok", justify="right")
    table.add_column("throughput ÷ local", justify="right")
    runs = (
        ("inputs, outputs, step cache on local disk", local_s, local_report),
        ("inputs, outputs on S3; step cache on disk", s3_s, s3_report),
        ("inputs, outputs and step cache on S3", s3_cache_s, s3_cache_report),
    )
    for label, seconds, report in runs:
        ok = report.count(Status.OK)
        ratio = f"{local_s / seconds:.2f}"
        table.add_row(label, f"{seconds:.1f}", f"{report.listed / seconds:.1f}", str(ok), ratio)
    console.print(table)
    console.print("target: S3 throughput ≥ 0.80 of the same batch on local disk")
    kill_table = Table(title="S3 batch killed with SIGKILL mid-way, then run again")
    kill_table.add_column("measure")
    kill_table.add_column("value", justify="right")
    for key, value in killed.items():
        kill_table.add_row(key, str(value))
    console.print(kill_table)


if __name__ == "__main__":
    main()
