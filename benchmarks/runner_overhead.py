"""When does distributing task runs pay? Threads vs a Dask LocalCluster (vs local Ray).

Prints:
  (a) start-up: the temporary Prefect server, a Dask LocalCluster, a local Ray runtime
  (b) wall time of one flow that submits N tasks of a given per-item cost, per runner: CPU work
      (pure Python, holds the GIL) and sleep (releases it); the ratio to threads; the per-task
      overhead seen at zero cost; and the break-even per-item CPU cost where the worker
      processes beat threads, from a straight-line fit of wall time against per-item cost
  (c) the real invoice flow (grouped path, no cache) over generated documents, per runner

    .venv/bin/python benchmarks/runner_overhead.py [--items 20] [--workers 2]
        [--cpu-ms 0,10,50,200,1000] [--sleep-ms 50,200] [--text-docs 80] [--scan-docs 20]
        [--runners threads,dask,ray]

Clusters are started once and reused, as a long-lived cluster is how scale-out runs; their
start-up is reported on its own line. Every runner reports to the same Prefect server.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local runtime for one benchmark

from prefect import flow, task
from rich.console import Console
from rich.table import Table

from mmflow.flows.invoice import invoice_flow
from mmflow.flows.runners import Runner, task_runner_for, workers_report_here
from mmflow.flows.runs import RunSettings
from mmflow.tasks.samples import numbered_invoices, scanned_invoices, write_files

console = Console()


# ---------------------------------------------------------------- synthetic work


def _spin(iterations: int) -> int:
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return total


def calibrate_spin() -> float:
    """Iterations of `_spin` per millisecond on one core, alone (fixed work, not a deadline,
    so threads sharing the GIL take longer instead of finishing early)."""
    _spin(200_000)
    started = time.perf_counter()
    _spin(2_000_000)
    return 2_000_000 / ((time.perf_counter() - started) * 1000)


@task(name="cpu-item")
def cpu_item(iterations: int) -> int:
    return _spin(iterations)


@task(name="sleep-item")
def sleep_item(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@flow(name="runner-overhead")
def fan_out(kind: str, amount: float, items: int) -> tuple[int, float]:
    """Submits `items` tasks; returns how many returned and the seconds from the first submit
    to the last result (a flow run's own start and end, ~1 s on a 1 s heartbeat tick, are the
    same for every runner and would hide sub-second differences)."""
    started = time.perf_counter()
    if kind == "cpu":
        futures = [cpu_item.submit(int(amount)) for _ in range(items)]
    else:
        futures = [sleep_item.submit(amount) for _ in range(items)]
    returned = len([f.result() for f in futures])
    return returned, time.perf_counter() - started


@flow(name="warm-up")
def warm_up() -> None:
    """Starts the temporary server before anything is timed."""


# ---------------------------------------------------------------- clusters, started once


@contextmanager
def dask_cluster(workers: int) -> Iterator[str]:
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        yield str(cluster.scheduler_address)


@contextmanager
def ray_runtime(workers: int) -> Iterator[str]:
    import ray

    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        yield "auto"
    finally:
        ray.shutdown()


def timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


# ---------------------------------------------------------------- documents


def write_documents(folder: Path, text_docs: int, scan_docs: int) -> list[Path]:
    """Distinct born-digital invoices (text route) and image-only scans (OCR route)."""
    texts = numbered_invoices(text_docs, start=20000)
    return write_files(folder, [*texts, *scanned_invoices(scan_docs, start=900)])


def run_invoice(
    runner: Runner, address: str | None, workers: int, paths: list[Path], out: Path
) -> float:
    flow_object = invoice_flow.with_options(task_runner=task_runner_for(runner, workers, address))

    def call() -> None:
        report = flow_object(
            inputs=[str(p) for p in paths],
            out=str(out),
            run=RunSettings(cache=False, workers=workers),
        )
        bad = [d for d in report.inputs if d.status.value != "ok"]
        if bad:
            raise SystemExit(f"{runner.value}: {len(bad)} documents did not end ok: {bad[0]}")

    return timed(call)


# ---------------------------------------------------------------- reporting


def break_even_ms(costs: list[float], threads: list[float], other: list[float]) -> float | None:
    """Per-item cost where the two straight lines (wall = a + b × cost) cross, if they do."""
    fit_t, fit_o = (
        statistics.linear_regression(costs, threads),
        statistics.linear_regression(costs, other),
    )
    if fit_t.slope <= fit_o.slope:
        return None  # the other runner never catches up
    return max(0.0, (fit_o.intercept - fit_t.intercept) / (fit_t.slope - fit_o.slope))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cpu-ms", default="0,10,50,200,1000")
    parser.add_argument("--sleep-ms", default="50,200")
    parser.add_argument("--text-docs", type=int, default=80)
    parser.add_argument("--scan-docs", type=int, default=20)
    parser.add_argument("--runners", default="threads,dask,ray")
    args = parser.parse_args()
    runners = [Runner(name) for name in args.runners.split(",")]
    cpu_ms = [float(c) for c in args.cpu_ms.split(",") if c]
    sleep_ms = [float(c) for c in args.sleep_ms.split(",") if c]
    rate = calibrate_spin()
    console.print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
        f"{args.items} items per flow, {args.workers} workers; "
        f"pure-Python work: {rate:,.0f} iterations/ms"
    )

    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        # The server first, so every worker process inherits its address.
        server_s = timed(lambda: stack.enter_context(workers_report_here(Runner.DASK)))
        server_s += timed(warm_up)
        startup = [("temporary Prefect server + first flow run", server_s)]
        addresses: dict[Runner, str | None] = {Runner.THREADS: None}
        for runner, start in ((Runner.DASK, dask_cluster), (Runner.RAY, ray_runtime)):
            if runner in runners:
                started = time.perf_counter()
                addresses[runner] = stack.enter_context(start(args.workers))
                startup.append((f"{runner.value} cluster, {args.workers} workers", 0.0))
                startup[-1] = (startup[-1][0], time.perf_counter() - started)
                # The first flow on fresh workers imports Prefect in each of them.
                first = timed(lambda r=runner: _fan(r, addresses[r], args.workers, "cpu", 0, 4))
                startup.append((f"{runner.value}: first flow run (4 empty tasks)", first))
        table = Table(title="start-up (not counted below)")
        table.add_column("what")
        table.add_column("s", justify="right")
        for what, seconds in startup:
            table.add_row(what, f"{seconds:.2f}")
        console.print(table)

        # A flow run with no task runs: its fixed cost (~1.1 s heartbeat join, docs/facts.md).
        empty = {
            r: timed(lambda r=r: _fan(r, addresses[r], args.workers, "cpu", 0, 0)) for r in runners
        }
        console.print(
            "a flow run with no task runs: "
            + ", ".join(f"{r.value} {empty[r]:.2f} s" for r in runners)
            + " (not counted below)"
        )
        walls: dict[tuple[str, float, Runner], float] = {}
        for kind, costs in (("cpu", cpu_ms), ("sleep", sleep_ms)):
            for cost in costs:
                amount = cost * rate if kind == "cpu" else cost / 1000
                for runner in runners:
                    walls[kind, cost, runner] = _fan(
                        runner, addresses[runner], args.workers, kind, amount, args.items
                    )
        table = Table(
            title=f"{args.items} tasks in one flow run, first submit to last result (s); "
            "ratio to threads"
        )
        table.add_column("work")
        table.add_column("ms/item", justify="right")
        table.add_column("serial work s", justify="right")
        for runner in runners:
            table.add_column(f"{runner.value} s", justify="right")
        for runner in runners[1:]:
            table.add_column(f"{runner.value}/threads", justify="right")
        for kind, cost, _ in sorted({(k, c, None) for k, c, _ in walls}, key=lambda x: x[:2]):
            row = [kind, f"{cost:g}", f"{cost * args.items / 1000:.2f}"]
            row += [f"{walls[kind, cost, r]:.2f}" for r in runners]
            row += [
                f"{walls[kind, cost, r] / walls[kind, cost, runners[0]]:.2f}" for r in runners[1:]
            ]
            table.add_row(*row)
        console.print(table)

        if 0.0 in cpu_ms:
            for runner in runners:
                per_task = walls["cpu", 0.0, runner] / args.items * 1000
                console.print(
                    f"{runner.value}: {per_task:.0f} ms per empty task at {args.workers} at a "
                    f"time, so ~{per_task * args.workers:.0f} ms added to each task run"
                )
        if Runner.THREADS in runners and len(cpu_ms) >= 2:
            threads = [walls["cpu", c, Runner.THREADS] for c in cpu_ms]
            for runner in runners:
                if runner is Runner.THREADS:
                    continue
                crossing = break_even_ms(cpu_ms, threads, [walls["cpu", c, runner] for c in cpu_ms])
                first_win = next(
                    (
                        c
                        for c in cpu_ms
                        if walls["cpu", c, runner] < walls["cpu", c, Runner.THREADS]
                    ),
                    None,
                )
                fit = (
                    f"from ~{crossing:.0f} ms of CPU work per item"
                    if crossing is not None
                    else "never: its line never crosses threads'"
                )
                won = f"{first_win:g} ms" if first_win is not None else "none measured"
                console.print(
                    f"break-even, {runner.value} vs threads (straight-line fit): {fit}; "
                    f"first cost where it won: {won}"
                )

        if args.text_docs + args.scan_docs:
            folder = Path(tmp) / "docs"
            text = write_documents(folder / "text", args.text_docs, 0)
            scans = write_documents(folder / "scans", 0, args.scan_docs)
            warm = write_documents(folder / "warm", 2, 1)
            table = Table(title="invoice flow, grouped path, no cache: wall time (s)")
            table.add_column("documents")
            for runner in runners:
                table.add_column(f"{runner.value} s", justify="right")
            for runner in runners[1:]:
                table.add_column(f"{runner.value}/threads", justify="right")
            for runner in runners:  # workers import the invoice stack (OCR models) once
                run_invoice(
                    runner, addresses[runner], args.workers, warm, Path(tmp) / f"w-{runner}"
                )
            for label, paths in (
                (f"{len(text)} text PDFs", text),
                (f"{len(scans)} scans (OCR)", scans),
            ):
                if not paths:
                    continue
                seconds = {
                    r: run_invoice(r, addresses[r], args.workers, paths, Path(tmp) / f"{label}-{r}")
                    for r in runners
                }
                row = [label, *(f"{seconds[r]:.2f}" for r in runners)]
                row += [f"{seconds[r] / seconds[runners[0]]:.2f}" for r in runners[1:]]
                table.add_row(*row)
            console.print(table)
    console.print(f"load average at the end {os.getloadavg()[0]:.2f}")


def _fan(
    runner: Runner, address: str | None, workers: int, kind: str, amount: float, items: int
) -> float:
    """Seconds the tasks took inside one flow run of `fan_out`."""
    flow_object = fan_out.with_options(task_runner=task_runner_for(runner, workers, address))
    returned, seconds = flow_object(kind, amount, items)
    if returned != items:
        raise SystemExit(f"{runner.value}: not every task returned")
    return seconds


if __name__ == "__main__":  # worker processes re-import this module: start nothing then
    main()
