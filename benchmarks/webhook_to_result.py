"""Webhook to result: a signed upload POSTed to the receiver, until its run's outputs are there
(issue 13's targets: one upload at a time p50 ≤ 3 s; a burst of 20 p95 ≤ 20 s, none lost, none
doubled).

Everything is real and on this machine: `prefect server start` (SQLite in a scratch folder),
`mmflow serve` as its own process in each mode compared, and the receiver (`create_app` under
uvicorn, as `mmflow webhook` serves it) delivering events to that server. The upload's run
starts from the upload trigger of the served invoice deployment. Modes:

- `prefect.serve`: `mmflow serve`, Prefect's runner (polls every 10 s, one new process per run);
- `prefect.serve --poll 0.5`: the same runner polling as often as the fast path, to show how much
  of the time is the poll and how much the new process;
- `--in-process`: `mmflow serve --in-process` (threads of the serving process, at most 4 at once,
  polled every 0.5 s; deployments/in_process.py).

Per mode, one warm-up upload is waited for first (a service runs warm; the first run of a
process loads the flow's code), then `--reps` uploads one at a time, then a burst of 20 sent at
once. Each upload's time is from the start of its POST to the first signed
`GET /v1/status/{sha256}` that answers `ok` with the output listed (polled every 0.1 s one at a
time, every 0.5 s in the burst). Afterwards: uploads never `ok` are lost; an upload with more
than one flow run of the deployment, or more than one manifest line, is doubled.

    nice -n 5 .venv/bin/python -m benchmarks.webhook_to_result [--reps 5] [--burst 20]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from benchmarks.database_load import Database, prefect_server, server_database
from benchmarks.webhook_load import BENCHMARK_SECRET, serving
from benchmarks.webhook_outage import prefect_client
from mmflow.deployments.delivery import PrefectEventSink
from mmflow.deployments.webhook import WebhookSettings, create_app, signed_headers
from mmflow.tasks.samples import numbered_invoices

console = Console(width=130)
MMFLOW = str(Path(sys.executable).with_name("mmflow"))
SINGLE_P50_TARGET_S = 3.0
BURST_P95_TARGET_S = 20.0
INGEST = "/v1/ingest/invoice"


@dataclass(frozen=True)
class Mode:
    label: str
    serve_options: tuple[str, ...]


MODES = (
    Mode("prefect.serve (subprocess per run, poll 10 s)", ()),
    Mode("prefect.serve --poll 0.5", ("--poll", "0.5")),
    Mode("--in-process (threads, limit 4, poll 0.5 s)", ("--in-process",)),
)


@dataclass
class ModeFigures:
    single_s: list[float] = field(default_factory=list)
    created_s: list[float] = field(default_factory=list)  # POST → flow run created (single)
    burst_s: list[float] = field(default_factory=list)
    uploads: int = 0
    lost: int = 0
    doubled: int = 0


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


@contextmanager
def mmflow_serve(api_url: str, workdir: Path, options: Sequence[str]) -> Iterator[None]:
    """`mmflow serve` with `options` against `api_url`, stopped as Ctrl-C would stop it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {
        "PREFECT_API_URL": api_url,
        "PREFECT_HOME": str(workdir / "serve-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    log = (workdir / "serve.log").open("ab")
    process = subprocess.Popen(
        [MMFLOW, "serve", "--outputs", str(workdir / "served"), *options],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_until_polled(api_url, started=datetime.now(UTC), log=workdir / "serve.log")
        yield
    finally:
        for sent in (signal.SIGINT, signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            if process.poll() is not None:
                break
            os.killpg(process.pid, sent)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                continue
        log.close()


def _wait_until_polled(api_url: str, started: datetime, log: Path, timeout_s: float = 300) -> None:
    """Until the served invoice deployment is registered, unpaused and polled since `started`:
    an upload sent earlier would find no trigger (or only a paused deployment's)."""
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + timeout_s
    with prefect_client(api_url) as prefect:
        while time.monotonic() < deadline:
            try:
                deployment = prefect.read_deployment_by_name("invoice/invoice")
            except ObjectNotFound:
                deployment = None
            polled = deployment.last_polled if deployment else None
            if deployment and not deployment.paused and polled and polled > started:
                return
            time.sleep(0.5)
    tail = log.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"mmflow serve did not start polling in {timeout_s} s:\n{tail}")


def _post(client: httpx.Client, body: bytes) -> tuple[float, datetime, str]:
    """POST one signed upload; its start (monotonic and wall clock) and sha256."""
    headers = signed_headers(BENCHMARK_SECRET, "POST", INGEST, body, content_type="application/pdf")
    started, wall = time.perf_counter(), datetime.now(UTC)
    response = client.post(INGEST, content=body, headers=headers)
    if response.status_code != 202:
        raise RuntimeError(f"upload refused: {response.status_code} {response.text}")
    return started, wall, str(response.json()["sha256"])


class Results:
    """Which uploads have a Completed flow run (Prefect API) and outputs (signed status)."""

    def __init__(self, client: httpx.Client, prefect: Any) -> None:
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

        self.client, self.prefect = client, prefect
        deployment = prefect.read_deployment_by_name("invoice/invoice")
        self.query = DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
        self.created: dict[str, datetime] = {}  # sha256 → when its flow run was created
        self.done: set[str] = set()

    def _outputs_listed(self, sha256: str) -> bool:
        path = f"/v1/status/{sha256}"
        headers = signed_headers(BENCHMARK_SECRET, "GET", path, b"")
        answer: dict[str, Any] = self.client.get(path, headers=headers).json()
        invoice: dict[str, Any] = answer.get("scenarios", {}).get("invoice", {})
        return invoice.get("status") == "ok" and bool(invoice.get("outputs"))

    def finished(self, waiting: set[str]) -> set[str]:
        """Of `waiting`, the uploads whose run is Completed and whose outputs are listed."""
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterState,
            FlowRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType

        completed = FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.COMPLETED]))
        )
        runs = self.prefect.read_flow_runs(
            deployment_filter=self.query, flow_run_filter=completed, limit=200
        )
        for run in runs:
            sha256 = Path(run.parameters["inputs"][0]).name
            self.created.setdefault(sha256, run.created)
            if sha256 in waiting and sha256 not in self.done and self._outputs_listed(sha256):
                self.done.add(sha256)
        return waiting & self.done

    def wait(self, started: dict[str, float], timeout_s: float, every_s: float) -> dict[str, float]:
        """Seconds from each upload's POST to its completed run with outputs (lost ones left
        out), looked at every `every_s`."""
        seconds: dict[str, float] = {}
        deadline = time.monotonic() + timeout_s
        while len(seconds) < len(started) and time.monotonic() < deadline:
            for sha256 in self.finished(set(started) - set(seconds)):
                seconds[sha256] = time.perf_counter() - started[sha256]
            time.sleep(every_s)
        return seconds


def _doubled(prefect: Any, results: Results, storage: Path, shas: set[str]) -> int:
    """Uploads with more than one flow run of the invoice deployment or manifest line."""
    runs = prefect.read_flow_runs(deployment_filter=results.query, limit=200)
    per_upload = Counter(Path(run.parameters["inputs"][0]).name for run in runs)
    manifest = storage / "outputs" / "invoice" / "manifest.jsonl"
    lines = Counter(json.loads(line)["sha256"] for line in manifest.read_text().splitlines())
    return sum(1 for sha in shas if per_upload[sha] > 1 or lines[sha] > 1)


def measure(
    api_url: str, workdir: Path, mode: Mode, reps: int, burst: int, first: int
) -> ModeFigures:
    """One mode: serve, warm up, `reps` uploads one at a time, then `burst` at once."""
    figures = ModeFigures()
    storage = workdir / "hook"
    settings = WebhookSettings(storage=str(storage), secret=BENCHMARK_SECRET)
    invoices = [body for _, body in numbered_invoices(1 + reps + burst, start=first)]
    sent: set[str] = set()
    with (
        mmflow_serve(api_url, workdir, mode.serve_options),
        serving(create_app(settings, sink=PrefectEventSink(api_url))) as url,
        httpx.Client(base_url=url, timeout=60) as client,
        prefect_client(api_url) as prefect,
    ):
        results = Results(client, prefect)
        posted, _, warm = _post(client, invoices[0])
        sent.add(warm)
        if not results.wait({warm: posted}, timeout_s=120, every_s=0.1):
            tail = (workdir / "serve.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the warm-up upload did not complete; mmflow serve said:\n{tail}")
        for body in invoices[1 : 1 + reps]:
            posted, wall, sha256 = _post(client, body)
            sent.add(sha256)
            took = results.wait({sha256: posted}, timeout_s=120, every_s=0.1)
            if not took:
                figures.lost += 1
                continue
            figures.single_s.append(took[sha256])
            figures.created_s.append((results.created[sha256] - wall).total_seconds())
        burst_bodies = invoices[1 + reps :]
        started: dict[str, float] = {}
        lock = threading.Lock()

        def send(body: bytes) -> None:
            posted, _, sha256 = _post(client, body)
            with lock:
                started[sha256] = posted

        with ThreadPoolExecutor(max_workers=len(burst_bodies) or 1) as pool:
            list(pool.map(send, burst_bodies))
        sent.update(started)
        finished = results.wait(started, timeout_s=300, every_s=0.5)
        figures.burst_s = list(finished.values())
        figures.lost += len(started) - len(finished)
        time.sleep(2)  # a second run of any upload would have started by now
        figures.uploads = len(sent)
        figures.doubled = _doubled(prefect, results, storage, sent)
    return figures


def _seconds(value: float) -> str:
    return f"{value:.2f} s"


def _ratio(baseline: Sequence[float], value: float, q: float) -> str:
    """How many times faster than the baseline's same percentile ("" without a baseline)."""
    if not baseline or not value:
        return ""
    return f" (÷{percentile(baseline, q) / value:.1f} vs serve)"


def render(results: dict[Mode, ModeFigures], reps: int, burst: int, database: str) -> Table:
    baseline = results.get(MODES[0])  # the ratios are against it, when it was measured
    table = Table(
        title=f"webhook upload → completed run with outputs ({reps} one at a time, "
        f"a burst of {burst}; text-PDF invoices; Prefect server on {database})"
    )
    for column in (
        "mode",
        "single p50",
        "single p95",
        "run created p50",
        "burst p50",
        "burst p95",
        "burst max",
        "lost",
        "doubled",
    ):
        table.add_column(column, overflow="fold")
    for mode, figures in results.items():
        single50, burst95 = percentile(figures.single_s, 50), percentile(figures.burst_s, 95)
        table.add_row(
            mode.label,
            _seconds(single50) + _ratio(baseline.single_s if baseline else [], single50, 50),
            _seconds(percentile(figures.single_s, 95)),
            _seconds(percentile(figures.created_s, 50)),
            _seconds(percentile(figures.burst_s, 50)),
            _seconds(burst95) + _ratio(baseline.burst_s if baseline else [], burst95, 95),
            _seconds(max(figures.burst_s, default=float("nan"))),
            f"{figures.lost}/{figures.uploads}",
            f"{figures.doubled}/{figures.uploads}",
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="uploads one at a time, per mode")
    parser.add_argument("--burst", type=int, default=20, help="uploads sent at once, per mode")
    parser.add_argument(
        "--modes",
        default="0,1,2",
        help="which modes, by position (0 serve, 1 serve --poll, 2 in-process)",
    )
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="the Prefect server's database (postgresql: a private cluster by "
        "deployments/postgres.sh)",
    )
    args = parser.parse_args()
    chosen = [MODES[int(i)] for i in args.modes.split(",")]
    results: dict[Mode, ModeFigures] = {}
    with tempfile.TemporaryDirectory(prefix="mmflow-webhook-to-result-") as scratch:
        root = Path(scratch)
        root.chmod(0o755)  # a PostgreSQL server runs as its own user and must reach its folder
        with (
            server_database(Database(args.database), root) as database_url,
            prefect_server(root / "prefect", database_url) as api_url,
        ):
            for index, mode in enumerate(chosen):
                console.print(f"measuring: {mode.label}")
                first = 20_000 + index * 1_000  # distinct invoices, so distinct uploads
                workdir = root / f"mode-{index}"
                workdir.mkdir()
                results[mode] = measure(api_url, workdir, mode, args.reps, args.burst, first)
    console.print(render(results, args.reps, args.burst, args.database))
    fast = results[chosen[-1]]
    single50, burst95 = percentile(fast.single_s, 50), percentile(fast.burst_s, 95)
    for name, value, target in (
        ("single upload p50", single50, SINGLE_P50_TARGET_S),
        ("burst p95", burst95, BURST_P95_TARGET_S),
    ):
        verdict = "met" if value <= target else "NOT met"
        console.print(
            f"{chosen[-1].label}: {name} {_seconds(value)}, target ≤ {target:g} s "
            f"({value / target:.2f}× the target): {verdict}"
        )
    console.print(
        f"{chosen[-1].label}: lost {fast.lost}, doubled {fast.doubled} of {fast.uploads} "
        f"(target: none): {'met' if fast.lost == fast.doubled == 0 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
