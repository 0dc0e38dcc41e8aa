"""Prefect's server on SQLite vs PostgreSQL under one batch: task runs recorded and missing.

For each database this starts a fresh `prefect server start` (own PREFECT_HOME and port;
PostgreSQL through deployments/postgres.sh in a fresh cluster), writes N distinct born-digital
invoices, runs the batch with one document per task run, then polls the server's API until the
count of task runs stops growing. Prints, per database: task runs expected; recorded with their
COMPLETED state when the batch command exited and after settling; missing; task runs the flow
made per second (÷ time from flow start to the last task run's end) against task runs the
server recorded per second (÷ time from flow start to the last task-run row it wrote), and
the same for only what it wrote while tasks were still running (on a machine the batch
saturates, the server competes with it for CPU); the lag from a task run's end to its final
state being written (median, max); the flow's wall time; then the PostgreSQL ÷ SQLite ratios.
`--repeat` interleaves rounds and the ratios use medians.

"Expected" is derived from what ran, not assumed: the manifest says how many inputs the flow
processed (duplicates excluded), and flows/runs.py (`run_groups`, which the batch flow and the
invoice flow beyond four inputs use) makes one `process-inputs` task run per group of
`--group-size` inputs, the steps running inline inside it. The batch command defaults to
`mmflow run batch --scenario invoice … --no-cache` with a fresh cache folder, so nothing is
skipped as already done.

    .venv/bin/python benchmarks/database_load.py [--documents 1000] [--workers 8]
        [--databases sqlite,postgresql] [--repeat 1] [--command '…{source} {out} …']

Needs Debian's `postgresql` for the PostgreSQL half (deployments/postgres.sh installs it as
root). The figures depend on the machine's load: the batch, the server and the database share
its cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from statistics import median
from typing import Any

import httpx

PROJECT = Path(__file__).resolve().parents[1]
POSTGRES_SCRIPT = PROJECT / "deployments" / "postgres.sh"
VENV_BIN = Path(sys.executable).parent
STEPWISE_MAX = 4  # flows/runs.py: batches this small run every step as its own task run
PAGE = 200  # the API's largest page of task runs
GROUPING = ("--group-size", "{group_size}", "--workers", "{workers}")


class Database(StrEnum):
    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def postgres_installed() -> bool:
    """Whether Debian's PostgreSQL server binaries (or any initdb on PATH) are present."""
    return any(Path("/usr/lib/postgresql").glob("*/bin/initdb")) or bool(shutil.which("initdb"))


@contextmanager
def postgres_cluster(data_dir: Path, port: int) -> Iterator[str]:
    """A private PostgreSQL cluster via deployments/postgres.sh; yields Prefect's database URL.

    The cluster is stopped on the way out, whatever happened inside.
    """
    env = os.environ | {"MMFLOW_PG_DIR": str(data_dir), "MMFLOW_PG_PORT": str(port)}
    try:
        started = subprocess.run(
            [str(POSTGRES_SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=600
        )
        if started.returncode != 0:
            raise RuntimeError(f"postgres.sh start failed:\n{started.stderr}")
        prefix = "PREFECT_API_DATABASE_CONNECTION_URL="
        url = next(line for line in started.stdout.splitlines() if line.startswith(prefix))
        yield url.removeprefix(prefix)
    finally:
        subprocess.run(
            [str(POSTGRES_SCRIPT), "stop"], env=env, capture_output=True, text=True, timeout=300
        )


def postgres_psql(data_dir: Path, sql: str) -> str:
    """Run one statement through `postgres.sh psql` (as the prefect role); unaligned output."""
    env = os.environ | {"MMFLOW_PG_DIR": str(data_dir)}
    done = subprocess.run(
        [str(POSTGRES_SCRIPT), "psql", "-v", "ON_ERROR_STOP=1", "-qtA", "-c", sql],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.strip()


def _clean_prefect_env(home: Path) -> dict[str, str]:
    """This environment without any Prefect target or profile, and with its own PREFECT_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return env | {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


@contextmanager
def prefect_server(
    home: Path,
    database_url: str | None = None,
    startup_timeout_s: float = 300,
    port: int | None = None,
) -> Iterator[str]:
    """`prefect server start` in its own process group; yields its API URL, stops it at exit.

    Without `database_url` the server keeps SQLite in `home/prefect.db`; without `port` it
    listens on a free one (give the same home and port to start the same server again).
    """
    home.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    env = _clean_prefect_env(home) | {
        "PREFECT_API_DATABASE_CONNECTION_URL": database_url
        or f"sqlite+aiosqlite:///{home / 'prefect.db'}"
    }
    log_path = home / "server.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [str(VENV_BIN / "prefect"), "server", "start", "--no-ui", *_listen_on(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stopping it stops whatever it spawned
        )
    api_url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + startup_timeout_s
        while not _healthy(api_url):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"prefect server did not start on port {port}:\n{tail}")
            time.sleep(0.5)
        yield api_url
    finally:
        _stop_group(process)


def _listen_on(port: int) -> list[str]:
    return ["--host", "127.0.0.1", "--port", str(port)]


def _healthy(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


# ---------------------------------------------------------------- the documents


def write_invoices(folder: Path, count: int) -> list[Path]:
    """`count` small born-digital invoices, each different (number, buyer, a line) so hashes are."""
    from mmflow.tasks.samples import SPECS, LineSpec, Party, invoice_pdf

    folder.mkdir(parents=True, exist_ok=True)
    base = SPECS["northwind-invoice"]
    paths = []
    for i in range(count):
        spec = dataclasses.replace(
            base,
            number=f"DB-2026-{i:05d}",
            buyer=Party(f"Customer {i:05d} Ltd", base.buyer.address),
            items=(*base.items[:2], LineSpec("Batch item", Decimal(i % 9 + 1), Decimal(3 + i))),
        )
        path = folder / f"invoice-{i:05d}.pdf"
        path.write_bytes(invoice_pdf(spec))
        paths.append(path)
    return paths


# ---------------------------------------------------------------- what the server recorded


def count_task_runs(api_url: str, state_types: list[str] | None = None) -> int:
    """Task runs on the server (optionally only those whose latest state has one of these types)."""
    body: dict[str, Any] = {}
    if state_types:
        body = {"task_runs": {"state": {"type": {"any_": state_types}}}}
    response = httpx.post(f"{api_url}/task_runs/count", json=body, timeout=60)
    response.raise_for_status()
    count: int = response.json()
    return count


def read_all(api_url: str, kind: str) -> list[dict[str, Any]]:
    """Every flow run or task run on the server (`kind`: flow_runs | task_runs), page by page."""
    rows: list[dict[str, Any]] = []
    while True:
        response = httpx.post(
            f"{api_url}/{kind}/filter", json={"offset": len(rows), "limit": PAGE}, timeout=120
        )
        response.raise_for_status()
        page = response.json()
        rows += page
        if len(page) < PAGE:
            return rows


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


@dataclasses.dataclass(frozen=True)
class Settled:
    recorded: int
    completed: int
    waited_s: float


def settle(api_url: str, quiet_s: float, max_wait_s: float, poll_s: float = 2.0) -> Settled:
    """Poll until neither the task-run count nor the completed count has moved for `quiet_s`."""
    start = last_change = time.monotonic()
    last = (count_task_runs(api_url), count_task_runs(api_url, ["COMPLETED"]))
    while time.monotonic() - last_change < quiet_s and time.monotonic() - start < max_wait_s:
        time.sleep(poll_s)
        now = (count_task_runs(api_url), count_task_runs(api_url, ["COMPLETED"]))
        if now != last:
            last, last_change = now, time.monotonic()
    return Settled(recorded=last[0], completed=last[1], waited_s=time.monotonic() - start)


# ---------------------------------------------------------------- one database, one batch


def batch_command(template: str | None) -> list[str]:
    """The command that runs the batch: `template` if given, else `mmflow run batch`."""
    if template:
        return shlex.split(template)
    batch = [str(VENV_BIN / "mmflow"), "run", "batch", "--scenario", "invoice", "{source}"]
    return [*batch, "--out", "{out}", "--no-cache", *GROUPING]


def expected_task_runs(documents: int, group_size: int) -> int:
    """flows/runs.py: one task run per group of inputs; tiny batches run one per step instead."""
    if documents <= STEPWISE_MAX:
        raise ValueError(f"use more than {STEPWISE_MAX} documents: smaller batches run stepwise")
    return math.ceil(documents / group_size)


@dataclasses.dataclass(frozen=True)
class LoadRow:
    database: Database
    documents: int  # inputs in the manifest
    documents_ok: int
    exit_code: int
    expected: int
    completed_at_exit: int  # task runs whose COMPLETED state was in the database at exit
    recorded: int  # task runs in the database after settling, in any state
    completed: int  # … and in the COMPLETED state
    made_per_s: float  # task runs the flow ran ÷ time from flow start to the last task's end
    records_per_s: float  # completed ÷ time from flow start to the server's last task-run write
    records_while_running_per_s: float  # written by the last task's end ÷ flow start → that end
    lag_p50_s: float  # a task run's end → its final state written by the server
    lag_max_s: float
    flow_s: float
    settle_s: float

    @property
    def missing(self) -> int:
        return self.expected - self.completed


def run_batch(
    database: Database,
    workdir: Path,
    source: Path,
    command: list[str],
    group_size: int,
    workers: int,
    quiet_s: float,
    max_wait_s: float,
) -> LoadRow:
    """One fresh server on `database`, one batch over `source`, then what it recorded."""
    rundir = Path(tempfile.mkdtemp(prefix=f"{database.value}-", dir=workdir))  # fresh each time
    rundir.chmod(0o755)  # the PostgreSQL server runs as its own user and must reach its folder
    with (
        server_database(database, rundir) as database_url,
        prefect_server(rundir / "server", database_url) as api,
    ):
        out = rundir / "out"
        values = {"source": source, "out": out, "group_size": group_size, "workers": workers}
        argv = [part.format(**values) for part in command]
        env = _clean_prefect_env(rundir / "client") | {
            "PREFECT_API_URL": api,
            "MMFLOW_CACHE_DIR": str(rundir / "cache"),  # fresh: nothing can be skipped as done
        }
        print(f"[{database.value}] server {api}; running: {shlex.join(argv)}", flush=True)
        started = time.monotonic()
        with (rundir / "batch.log").open("wb") as log:
            done = subprocess.run(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        command_s = time.monotonic() - started
        at_exit = count_task_runs(api, ["COMPLETED"])
        print(
            f"[{database.value}] batch exited {done.returncode} after {command_s:.1f} s; "
            f"{at_exit} task runs recorded COMPLETED so far; settling…",
            flush=True,
        )
        settled = settle(api, quiet_s, max_wait_s)
        flows = [f for f in read_all(api, "flow_runs") if f["parent_task_run_id"] is None]
        if len(flows) != 1:
            raise RuntimeError(f"expected one top-level flow run, the server has {len(flows)}")
        flow = flows[0]
        task_runs = read_all(api, "task_runs")
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    # A duplicate (same bytes under another name) is recorded without a task run of its own.
    processed = [e for e in manifest if (e["error"] or {}).get("code") != "duplicate"]
    flow_start = _time(flow["start_time"])
    done_runs = [t for t in task_runs if t["state_type"] == "COMPLETED"]
    # `updated` is stamped by the server's task-run recorder each time it writes the row.
    write_s = (max(_time(t["updated"]) for t in task_runs) - flow_start).total_seconds()
    last_end = max(_time(t["end_time"]) for t in done_runs)
    made_s = (last_end - flow_start).total_seconds()
    # On a machine the flow saturates, the server may record slower while tasks still run.
    written_while_running = sum(_time(t["updated"]) <= last_end for t in done_runs)
    lags = sorted((_time(t["updated"]) - _time(t["end_time"])).total_seconds() for t in done_runs)
    expected = expected_task_runs(len(processed), group_size)
    return LoadRow(
        database=database,
        documents=len(manifest),
        documents_ok=sum(entry["status"] == "ok" for entry in manifest),
        exit_code=done.returncode,
        expected=expected,
        completed_at_exit=at_exit,
        recorded=settled.recorded,
        completed=settled.completed,
        made_per_s=expected / made_s,
        records_per_s=settled.completed / write_s,
        records_while_running_per_s=written_while_running / made_s,
        lag_p50_s=lags[len(lags) // 2],
        lag_max_s=lags[-1],
        flow_s=(_time(flow["end_time"]) - flow_start).total_seconds()
        if flow["end_time"]
        else float("nan"),
        settle_s=settled.waited_s,
    )


@contextmanager
def server_database(database: Database, workdir: Path) -> Iterator[str | None]:
    """The database URL a Prefect server is given: None (its SQLite) or a private cluster's."""
    if database is Database.SQLITE:
        yield None
        return
    with postgres_cluster(workdir / "postgres", free_port()) as url:
        yield url


# ---------------------------------------------------------------- report


def print_table(rows: list[LoadRow], group_size: int, workers: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"Prefect server database load (group size {group_size}, {workers} workers)"
    )
    headers = (
        "database",
        "documents (ok)",
        "task runs expected",
        "completed at flow end",
        "recorded after settling (completed)",
        "missing",
        "task runs made / s",
        "recorded / s",
        "recorded / s while tasks ran",
        "record lag p50 / max s",
        "flow wall s",
        "settled after s",
    )
    for header in headers:
        table.add_column(header, justify="right")
    for row in rows:
        table.add_row(
            row.database.value,
            f"{row.documents} ({row.documents_ok})",
            str(row.expected),
            str(row.completed_at_exit),
            f"{row.recorded} ({row.completed})",
            str(row.missing),
            f"{row.made_per_s:.1f}",
            f"{row.records_per_s:.1f}",
            f"{row.records_while_running_per_s:.1f}",
            f"{row.lag_p50_s:.1f} / {row.lag_max_s:.1f}",
            f"{row.flow_s:.1f}",
            f"{row.settle_s:.0f}",
        )
    console = Console(width=max(180, shutil.get_terminal_size().columns))
    console.print(table)
    pg = [row for row in rows if row.database is Database.POSTGRESQL]
    lite = [row for row in rows if row.database is Database.SQLITE]
    if pg and lite:

        def ratio(metric: Callable[[LoadRow], float]) -> str:
            return _ratio(median(map(metric, pg)), median(map(metric, lite)))

        console.print(
            f"PostgreSQL ÷ SQLite{' (medians)' if len(rows) > 2 else ''}: "
            f"recorded/s {ratio(lambda r: r.records_per_s)}, "
            f"recorded/s while tasks ran {ratio(lambda r: r.records_while_running_per_s)}, "
            f"record lag p50 {ratio(lambda r: r.lag_p50_s)}, "
            f"flow wall time {ratio(lambda r: r.flow_s)}; "
            f"missing {sum(r.missing for r in pg)} vs {sum(r.missing for r in lite)}"
        )
    for row in rows:
        if row.exit_code != 0:
            console.print(f"[red]{row.database.value}: the batch command exited {row.exit_code}")


def _ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}×" if denominator else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--repeat", type=int, default=1, help="rounds, databases interleaved")
    parser.add_argument("--group-size", type=int, default=1)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--command", help="batch command; {source} {out} {group_size} {workers}")
    parser.add_argument("--quiet-seconds", type=float, default=30, help="no change for this long")
    parser.add_argument("--max-wait-seconds", type=float, default=1800)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, outputs)")
    args = parser.parse_args()

    databases = [Database(name) for name in args.databases.split(",")]
    if Database.POSTGRESQL in databases and not postgres_installed() and os.getuid() != 0:
        sys.exit("PostgreSQL is not installed: sudo apt-get install postgresql")
    command = batch_command(args.command)
    workdir = Path(tempfile.mkdtemp(prefix="mmflow-dbload-"))
    os.chmod(workdir, 0o755)  # the PostgreSQL server runs as its own user and must reach it
    try:
        source = workdir / "invoices"
        started = time.monotonic()
        write_invoices(source, args.documents)
        print(f"wrote {args.documents} invoices in {time.monotonic() - started:.1f} s", flush=True)
        rows = [
            run_batch(
                database,
                workdir,
                source,
                command,
                args.group_size,
                args.workers,
                args.quiet_seconds,
                args.max_wait_seconds,
            )
            for _ in range(args.repeat)
            for database in databases
        ]
        print_table(rows, args.group_size, args.workers)
    finally:
        if args.keep:
            print(f"work folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
