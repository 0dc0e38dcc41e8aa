"""Invoice flow throughput and orchestration overhead, measured in one run on the same inputs.

Prints:
  (a) batch flow wall time ÷ the same step functions in a plain loop (target ≤ 1.10, 200 docs,
      2 workers): the plain loop and the flows (2 worker processes, `--runner processes`; 2
      threads; 1 thread) take turns `--reps` times, and the table gives the median of each and
      the median of the per-turn ratios, so a busy machine slows them alike
  (b) OCR-route pages/s in the flow ÷ bare RapidOCR pages/s on the same pages (target ≥ 0.9)
  (c) text-route documents per second through the flow
  (d) with `--complete N`: the batch flow over N text PDFs, and whether its manifest holds
      every one of them exactly once, ended `ok` (issue 13: 1,000 documents recorded completely)

    nice -n 10 .venv/bin/python benchmarks/invoice_throughput.py [--docs 200] [--scans 20] \
        [--workers 2] [--reps 3] [--no-ocr] [--complete 1000] [--settle 3]

The Prefect server is started (and a warm-up flow run made) before timing, and so is the fork
server that worker processes are forked from (flows/processes.py); each start-up is reported on
its own line: a long-lived server and process are how batches run in production, and a one-off
command pays each once.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

import numpy as np
import pymupdf
from prefect import flow
from rich.console import Console
from rich.table import Table

from mmflow.flows.batch import batch_flow
from mmflow.flows.invoice import InvoicePipeline, invoice_flow
from mmflow.flows.processes import fork_server_context
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


def run_flow(folder: Path, out: Path, workers: int, runner: Runner = Runner.THREADS) -> float:
    started = time.perf_counter()
    report = run_on(
        invoice_flow,
        runner,
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


def complete_batch(count: int, root: Path, workers: int) -> tuple[float, int, int]:
    """The batch flow over `count` text PDFs: seconds, manifest lines, distinct inputs ended ok."""
    paths = write_files(root / "many", numbered_invoices(count))
    out = root / "out-many"
    started = time.perf_counter()
    run_on(
        batch_flow,
        Runner.THREADS,
        workers,
        source=str(root / "many"),
        out=str(out),
        run=RunSettings(cache=False, workers=workers),
    )
    elapsed = time.perf_counter() - started
    lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    expected = {str(p) for p in paths}
    ended_ok = {line["uri"] for line in lines if line["status"] == "ok"} & expected
    return elapsed, len(lines), len(ended_ok)


@flow(name="warm-up")
def warm_up() -> None:
    """Starts the temporary server so its start-up is not counted against the flow."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument("--scans", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--reps", type=int, default=3, help="turns of plain loop and flows")
    parser.add_argument("--no-ocr", action="store_true", help="skip the OCR-route part")
    parser.add_argument("--complete", type=int, default=0, help="(d): documents, 0 to skip")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds between timed runs")
    args = parser.parse_args()
    console = Console()
    options = InvoiceOptions()
    times: dict[str, list[float]] = {"plain": [], "flow_p": [], "flow": [], "flow_1": []}
    cpu: dict[str, list[float]] = {name: [] for name in times}  # this process's CPU seconds
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        texts = write_files(root / "text", numbered_invoices(args.docs))
        scans = [] if args.no_ocr else write_files(root / "scans", scanned_invoices(args.scans))
        console.print(f"inputs: {len(texts)} text PDFs, {len(scans)} scanned PDFs")

        started = time.perf_counter()
        warm_up()
        server_start = time.perf_counter() - started
        started = time.perf_counter()
        first = fork_server_context().Process(target=os.getpid)  # waits for its imports
        first.start()
        first.join()
        fork_server_start = time.perf_counter() - started
        if scans:
            _rapidocr()  # load the OCR models once, outside every timed region

        def turn_of(name: str, call: Callable[[Path], float], out: Path) -> None:
            # The server records a run's events for a while after the run returns: a pause,
            # so that work is not timed against whatever runs next.
            time.sleep(args.settle)
            cpu_before = time.process_time()
            times[name].append(call(out))
            cpu[name].append(time.process_time() - cpu_before)

        texts_at, workers = root / "text", args.workers
        for turn in range(args.reps):
            turn_of("plain", lambda out: plain_loop(texts, options, out), root / f"p-{turn}")
            turn_of(
                "flow_p",
                lambda out: run_flow(texts_at, out, workers, Runner.PROCESSES),
                root / f"op-{turn}",
            )
            turn_of("flow", lambda out: run_flow(texts_at, out, workers), root / f"o-{turn}")
            turn_of("flow_1", lambda out: run_flow(root / "text", out, 1), root / f"o1-{turn}")
            console.print(
                f"turn {turn + 1}: plain {times['plain'][-1]:.2f} s, flow "
                f"{times['flow_p'][-1]:.2f} s ({args.workers} processes), "
                f"{times['flow'][-1]:.2f} s ({args.workers} threads), "
                f"{times['flow_1'][-1]:.2f} s (1 thread)"
            )
        if scans:
            ocr_bare = bare_rapidocr(scans, options.dpi)
            ocr_plain = plain_loop(scans, options, root / "plain-scans")
            ocr_flow = run_flow(root / "scans", root / "out-scans", args.workers)
        if args.complete:
            many_s, many_lines, many_ok = complete_batch(args.complete, root, args.workers)

    def ratio(name: str, of: dict[str, list[float]] = times) -> float:
        return statistics.median(f / p for f, p in zip(of[name], of["plain"], strict=True))

    table = Table(title=f"mmflow invoice throughput (medians of {args.reps} turns)")
    for column in ("measure", "value", "target"):
        table.add_column(column)
    table.add_row("Prefect server start + first run (s)", f"{server_start:.1f}", "")
    table.add_row("fork server start, once a process (s)", f"{fork_server_start:.1f}", "")
    if args.reps:
        text_plain = statistics.median(times["plain"])
        text_flow_p, text_flow, text_flow_1 = (
            statistics.median(times["flow_p"]),
            statistics.median(times["flow"]),
            statistics.median(times["flow_1"]),
        )
        docs, n = args.docs, args.workers
        table.add_row(f"text: plain loop, {docs} docs (s)", f"{text_plain:.2f}", "")
        table.add_row(f"text: batch flow, {n} worker processes (s)", f"{text_flow_p:.2f}", "")
        table.add_row(
            f"(a) flow ÷ plain loop, {n} worker processes", f"{ratio('flow_p'):.3f}", "≤ 1.10"
        )
        table.add_row(f"text: batch flow, {n} threads (s)", f"{text_flow:.2f}", "")
        table.add_row(f"(a) with {n} threads", f"{ratio('flow'):.3f}", "")
        table.add_row("text: batch flow, 1 thread (s)", f"{text_flow_1:.2f}", "")
        table.add_row("(a) with 1 thread", f"{ratio('flow_1'):.3f}", "")
        table.add_row(
            f"(a) in this process's CPU time: flow ÷ plain loop ({n} threads / 1)",
            f"{ratio('flow', cpu):.3f} / {ratio('flow_1', cpu):.3f}",
            "",
        )
        table.add_row(
            f"(c) text-route documents/s (flow, {n} processes / {n} threads)",
            f"{docs / text_flow_p:.1f} / {docs / text_flow:.1f}",
            "",
        )
    if scans:
        table.add_row(f"OCR: bare RapidOCR, {args.scans} pages (s)", f"{ocr_bare:.2f}", "")
        table.add_row(f"OCR: plain loop, {args.scans} pages (s)", f"{ocr_plain:.2f}", "")
        table.add_row(f"OCR: batch flow, {args.scans} pages (s)", f"{ocr_flow:.2f}", "")
        table.add_row(
            "OCR pages/s: bare / flow",
            f"{args.scans / ocr_bare:.2f} / {args.scans / ocr_flow:.2f}",
            "",
        )
        table.add_row(
            "(b) flow OCR pages/s ÷ bare RapidOCR pages/s", f"{ocr_bare / ocr_flow:.3f}", "≥ 0.9"
        )
    if args.complete:
        table.add_row(f"(d) batch flow, {args.complete} docs (s)", f"{many_s:.1f}", "")
        table.add_row(
            "(d) manifest lines / inputs ended ok",
            f"{many_lines} / {many_ok}",
            f"{args.complete} / {args.complete}",
        )
    console.print(table)
    if args.complete and not many_lines == many_ok == args.complete:
        raise SystemExit(f"the manifest does not hold all {args.complete} documents exactly once")


if __name__ == "__main__":
    main()
