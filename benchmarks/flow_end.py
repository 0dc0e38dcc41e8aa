"""What a flow run costs when its body returns at once: Prefect's sync engine, mmflow's, async.

Prints, in one process and one run, the median wall time of an empty flow run
  (a) sync, as Prefect 3.9.1 ends it (joining its heartbeat thread),
  (b) sync, as mmflow ends it (flows/engine_exit.py: the thread is stopped, not waited for),
  (c) async (`asyncio.run(f())`), which Prefect's async engine never joins,
the three taken in turn in every repetition, so a busy machine slows them alike; and (b) ÷ (a),
(b) ÷ (c).

    PREFECT_API_URL=http://127.0.0.1:4200/api nice -n 10 \
        .venv/bin/python benchmarks/flow_end.py [--reps 9]

Without `PREFECT_API_URL` Prefect starts a temporary server first (not timed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")

from prefect import flow, flow_engine
from rich.console import Console
from rich.table import Table

from mmflow.flows import engine_exit


@flow(name="empty-sync")
def empty_sync() -> int:
    return 1


@flow(name="empty-async")
async def empty_async() -> int:
    return 1


def _timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=9)
    args = parser.parse_args()
    prefect_way = engine_exit._prefect_heartbeats
    mmflow_way = engine_exit.heartbeats_without_join

    def sync_as(way: Callable[..., object]) -> float:
        flow_engine._send_heartbeats = way  # type: ignore[assignment]
        return _timed(empty_sync)

    empty_sync()  # the first run creates the flow and (maybe) starts a temporary server
    asyncio.run(empty_async())
    times: dict[str, list[float]] = {"prefect": [], "mmflow": [], "async": []}
    for _ in range(args.reps):
        times["prefect"].append(sync_as(prefect_way))
        times["mmflow"].append(sync_as(mmflow_way))
        times["async"].append(_timed(lambda: asyncio.run(empty_async())))
    median = {name: statistics.median(values) for name, values in times.items()}

    table = Table(title=f"an empty flow run, median of {args.reps} (min–max)")
    for column in ("measure", "seconds"):
        table.add_column(column)
    labels = {
        "prefect": "(a) sync, Prefect joins the heartbeat thread",
        "mmflow": "(b) sync, as mmflow runs it (no join)",
        "async": "(c) async",
    }
    for name, label in labels.items():
        low, high = min(times[name]), max(times[name])
        table.add_row(label, f"{median[name]:.2f} ({low:.2f}–{high:.2f})")
    table.add_row("(b) ÷ (a)", f"{median['mmflow'] / median['prefect']:.2f}")
    table.add_row("(b) ÷ (c)", f"{median['mmflow'] / median['async']:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
