"""Invoice flow throughput and orchestration overhead, measured in one run on the same inputs.

Prints:
  (a) batch flow wall time ÷ the same step functions in a plain loop (target ≤ 1.15, 200 docs)
  (b) OCR-route pages/s in the flow ÷ bare RapidOCR pages/s on the same pages (target ≥ 0.9)
  (c) text-route documents per second through the flow

    .venv/bin/python benchmarks/invoice_throughput.py [--docs 200] [--scans 20] [--workers 2]

The Prefect server is started (and a warm-up flow run made) before timing, and its start-up is
reported on its own line: a long-lived server is how batches run in production.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

import numpy as np
import pymupdf
from prefect import flow
from rich.console import Console
from rich.table import Table

from mmflow.flows.invoice import InvoicePipeline, invoice_flow
from mmflow.flows.runners import Runner, run_on
from mmflow.flows.runs import RunContext, RunSettings, run_input
from mmflow.flows.steps import InlineSteps
from mmflow.tasks.invoice import InvoiceOptions
from mmflow.tasks.normalise import render_page
from mmflow.tasks.ocr import _rapidocr
from mmflow.tasks.persist import Manifest, OutputNames
from mmflow.tasks.samples import numbered_invoices, scanned_invoices, write_files


def plain_loop(paths: list[Path], options: InvoiceOptions, out: Path) -> float:
    """The same work without Prefect or cache: every step, every output file, one by one."""
    started = time.perf_counter()
    out.mkdir()
    steps, pipeline = InlineSteps(None, "plain"), InvoicePipeline(options)
    manifest = Manifest(str(out))
    run = RunContext(pipeline, str(out), None, "plain", manifest, OutputNames(), RunSettings())
    summaries = []
    for path in paths:
        summary = run_input(str(path), steps, run)
        if summary.status.value != "ok":
            raise SystemExit(f"{path} did not end ok: {summary.error}")
        summaries.append(summary)
    manifest.compact(order=[str(p) for p in paths])
    pipeline.finish(str(out), summaries)
    return time.perf_counter() - started


def bare_rapidocr(paths: list[Path], dpi: int) -> float:
    engine = _rapidocr()
    images = []
    for path in paths:
        with pymupdf.open(path) as doc:
            images.append(np.asarray(render_page(doc, 0, dpi).convert("RGB"))[:, :, ::-1])
    started = time.perf_counter()
    for image in images:
        engine(image)
    return time.perf_counter() - started


def run_flow(folder: Path, out: Path, workers: int) -> float:
    started = time.perf_counter()
    report = run_on(
        invoice_flow,
        Runner.THREADS,
        workers,
        inputs=[str(folder)],
        out=str(out),
        run=RunSettings(cache=False, workers=workers),
    )
    elapsed = time.perf_counter() - started
    bad = [d for d in report.inputs if d.status.value != "ok"]
    if bad:
        raise SystemExit(f"{len(bad)} documents did not end ok: {bad[0]}")
    return elapsed


@flow(name="warm-up")
def warm_up() -> None:
    """Starts the temporary server so its start-up is not counted against the flow."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument("--scans", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    console = Console()
    options = InvoiceOptions()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        texts = write_files(root / "text", numbered_invoices(args.docs))
        scans = write_files(root / "scans", scanned_invoices(args.scans))
        console.print(f"inputs: {len(texts)} text PDFs, {len(scans)} scanned PDFs")

        started = time.perf_counter()
        warm_up()
        server_start = time.perf_counter() - started
        _rapidocr()  # load the OCR models once, outside every timed region

        text_plain = plain_loop(texts, options, root / "plain-text")
        text_flow = run_flow(root / "text", root / "out-text", args.workers)
        text_flow_1 = run_flow(root / "text", root / "out-text-1", 1)
        ocr_bare = bare_rapidocr(scans, options.dpi)
        ocr_plain = plain_loop(scans, options, root / "plain-scans")
        ocr_flow = run_flow(root / "scans", root / "out-scans", args.workers)

    table = Table(title="mmflow invoice throughput")
    for column in ("measure", "value", "target"):
        table.add_column(column)
    table.add_row("Prefect temporary server start + first run (s)", f"{server_start:.1f}", "")
    table.add_row(f"text: plain loop, {args.docs} docs (s)", f"{text_plain:.2f}", "")
    table.add_row(
        f"text: batch flow, {args.docs} docs, {args.workers} workers (s)", f"{text_flow:.2f}", ""
    )
    table.add_row("(a) flow ÷ plain loop", f"{text_flow / text_plain:.3f}", "≤ 1.15")
    table.add_row("text: batch flow, 1 worker (s)", f"{text_flow_1:.2f}", "")
    table.add_row("(a) with 1 worker", f"{text_flow_1 / text_plain:.3f}", "≤ 1.15")
    table.add_row("(c) text-route documents/s (flow)", f"{args.docs / text_flow:.1f}", "")
    table.add_row(f"OCR: bare RapidOCR, {args.scans} pages (s)", f"{ocr_bare:.2f}", "")
    table.add_row(f"OCR: plain loop, {args.scans} pages (s)", f"{ocr_plain:.2f}", "")
    table.add_row(f"OCR: batch flow, {args.scans} pages (s)", f"{ocr_flow:.2f}", "")
    table.add_row(
        "OCR pages/s: bare / flow", f"{args.scans / ocr_bare:.2f} / {args.scans / ocr_flow:.2f}", ""
    )
    table.add_row(
        "(b) flow OCR pages/s ÷ bare RapidOCR pages/s", f"{ocr_bare / ocr_flow:.3f}", "≥ 0.9"
    )
    console.print(table)


if __name__ == "__main__":
    main()
