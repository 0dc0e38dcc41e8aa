"""Text-route documents/s through the invoice flow: this checkout against an older one.

Issue 12's "no slowdown" target compares the whole flow, not only the extractor
(benchmarks/extract_speed.py): each checkout runs its own `invoice_flow` (cache off, 2 worker
threads, as benchmarks/invoice_throughput.py's `run_flow` does) over the same text PDFs, made
once by this checkout's generator, against one Prefect server. The two take turns, each turn a
fresh process (a warm-up run, then `--runs` timed runs), so a busy machine slows them alike;
the table gives each turn's median and the ratio of the medians of all turns.

    .venv/bin/python benchmarks/flow_speed.py --tree /tmp/old-checkout [--docs 200] [--turns 2]

An older checkout from before the mmflow namespace (packages `flows`, `tasks` at the top
level) is run with its folder on PYTHONPATH; a newer one is imported as `mmflow` from this
venv only if it is this checkout, so pass older trees only.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from mmflow.tasks.samples import numbered_invoices, write_files

HERE = Path(__file__).resolve().parents[1]

CHILD = """
import json, os, statistics, sys, tempfile
from pathlib import Path
sys.path.insert(0, os.getcwd())
from benchmarks.invoice_throughput import run_flow
folder, warm, runs = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
with tempfile.TemporaryDirectory() as scratch:
    run_flow(warm, Path(scratch) / "warm", 2)
    times = [run_flow(folder, Path(scratch) / f"out-{i}", 2) for i in range(runs)]
print(json.dumps(times))
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A Prefect server on a free loopback port with its own database; (process, API URL)."""
    port = _free_port()
    env = os.environ | {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    command = ["prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(
        [sys.executable, "-m", *command],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("prefect server start exited before answering")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                return server, f"http://127.0.0.1:{port}/api"
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.terminate()
    raise RuntimeError("the Prefect server did not answer within 180 s")


def turn(tree: Path | None, folder: Path, warm: Path, runs: int, api_url: str) -> list[float]:
    """Seconds of each timed flow run of one checkout, in a fresh process."""
    env = os.environ | {
        "PREFECT_API_URL": api_url,
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
    }
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(folder), str(warm), str(runs)],
        cwd=tree or HERE,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the flow of {tree or HERE} failed:\n{done.stderr[-3000:]}")
    return [float(t) for t in json.loads(done.stdout.strip().splitlines()[-1])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, required=True, help="the older checkout")
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument("--turns", type=int, default=2, help="turns of each checkout")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per turn")
    args = parser.parse_args()

    console = Console(width=110)
    with tempfile.TemporaryDirectory(prefix="mmflow-flow-speed-") as scratch:
        root = Path(scratch)
        write_files(root / "in", numbered_invoices(args.docs))
        write_files(root / "warm", numbered_invoices(3))
        server, api_url = start_server(root / "prefect-home")
        medians: dict[str, list[float]] = {"this": [], "older": []}
        try:
            for number in range(1, args.turns + 1):
                for name, tree in (("older", args.tree), ("this", None)):
                    times = turn(tree, root / "in", root / "warm", args.runs, api_url)
                    medians[name].append(statistics.median(times))
                    rounded = ", ".join(f"{t:.2f}" for t in times)
                    console.print(f"turn {number}, {name}: {rounded} s")
        finally:
            server.terminate()
            server.wait(timeout=30)

    table = Table(title=f"invoice flow, {args.docs} text PDFs, 2 workers (medians per turn)")
    table.add_column("checkout")
    table.add_column("seconds per run")
    table.add_column("documents/s")
    for name, label in (("older", str(args.tree)), ("this", str(HERE))):
        seconds = statistics.median(medians[name])
        table.add_row(label, f"{seconds:.2f}", f"{args.docs / seconds:.1f}")
    ratio = statistics.median(medians["older"]) / statistics.median(medians["this"])
    table.add_row("this ÷ older, documents/s", "", f"{ratio:.2f} (target ≥ 0.90)")
    console.print(table)
    console.print(f"load average {os.getloadavg()[0]:.1f} {os.getloadavg()[1]:.1f}, 2 CPUs")


if __name__ == "__main__":
    main()
