"""Where a flow's task runs execute: threads here, worker processes forked on this machine
(flows/processes.py), or the processes of a Dask or Ray cluster.

A task run in another process costs ~0.1–0.35 s more than a thread (docs/facts.md;
benchmarks/runner_overhead.py), so distribution pays only when each task run holds seconds of
work that threads cannot share out: grouped batches (flows/runs.py) of pure-Python steps, or a
cluster that adds cores. On one machine OCR gains nothing: onnxruntime already spreads one page
over every core from a thread.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar, cast

from mmflow.tasks.errors import MissingDependency

if TYPE_CHECKING:  # Prefect is imported when a runner is built, so `mmflow --help` stays quick
    from prefect import Flow
    from prefect.futures import PrefectFuture
    from prefect.task_runners import TaskRunner

R = TypeVar("R")


class Runner(StrEnum):
    THREADS = "threads"
    PROCESSES = "processes"  # worker processes on this machine (flows/processes.py)
    DASK = "dask"
    RAY = "ray"


# Schemes each cluster's client accepts; a bare `host:port` is taken by both.
_SCHEMES = {Runner.DASK: ("tcp", "tls", "ws", "wss"), Runner.RAY: ("ray",)}


def _check_address(runner: Runner, address: str) -> None:
    """Refuse an address the chosen runner cannot connect to, before any flow run starts."""
    if runner in (Runner.THREADS, Runner.PROCESSES):
        raise ValueError(
            f"--address names a Dask or Ray cluster; the {runner.value} runner takes none"
        )
    if runner is Runner.RAY and address == "auto":
        return  # Ray's own spelling for "the cluster already running on this machine"
    scheme, sep, rest = address.partition("://")
    host_port = rest if sep else address
    if (sep and scheme not in _SCHEMES[runner]) or ":" not in host_port:
        examples = {Runner.DASK: "tcp://host:8786", Runner.RAY: "ray://host:10001"}
        raise ValueError(
            f"{address!r} is not a {runner.value} scheduler address; expected "
            f"{examples[runner]} (or host:port)"
        )


def task_runner_for(
    runner: Runner, workers: int, address: str | None = None
) -> TaskRunner[PrefectFuture[Any]]:
    """The Prefect task runner for `runner`: `workers` threads or local worker processes,
    or the existing cluster at `address` (whose own size then rules)."""
    from prefect.task_runners import ThreadPoolTaskRunner

    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    if address is not None:
        _check_address(runner, address)
    if runner is Runner.THREADS:
        built: TaskRunner[Any] = ThreadPoolTaskRunner(max_workers=workers)
    elif runner is Runner.PROCESSES:
        from mmflow.flows.processes import WarmProcessPoolTaskRunner

        built = WarmProcessPoolTaskRunner(max_workers=workers)
    elif runner is Runner.DASK:
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError as exc:
            raise MissingDependency(
                "The Dask task runner (prefect-dask)", "pip install 'mmflow[dask]'"
            ) from exc
        if address is not None:
            built = DaskTaskRunner(address=address)
        else:
            # One single-threaded process per worker: CPU-bound steps escape the GIL.
            # No dashboard: it needs bokeh and a free port, and nothing here reads it.
            local = {
                "n_workers": workers,
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": None,
            }
            built = DaskTaskRunner(cluster_kwargs=local)
    else:
        try:
            from prefect_ray import RayTaskRunner
        except ImportError as exc:
            raise MissingDependency(
                "The Ray task runner (prefect-ray)", "pip install 'mmflow[ray]'"
            ) from exc
        if address is not None:
            built = RayTaskRunner(address=address)
        else:
            built = RayTaskRunner(init_kwargs={"num_cpus": workers, "include_dashboard": False})
    # Prefect's TaskRunner generic is invariant in its future type; every runner fits a flow.
    return cast("TaskRunner[PrefectFuture[Any]]", built)


@contextmanager
def workers_report_here(runner: Runner, address: str | None = None) -> Iterator[str | None]:
    """Point worker processes at this process's Prefect API for the run; yields its URL.

    A worker process (forked here, Dask or Ray) with no `PREFECT_API_URL` in its environment
    starts a temporary Prefect server of its own (7+ s each, same SQLite file, and it times
    out on a busy machine). So the URL this process uses — a profile's, a test harness's, or the
    temporary server started here — goes into the environment local workers inherit. A cluster
    at `address` runs elsewhere and cannot reach a temporary server on this machine.
    """
    if runner is Runner.THREADS:
        yield None
        return
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if url is None:
        if address is not None:
            raise ValueError(
                f"the {runner.value} cluster at {address} cannot reach this machine's temporary "
                "Prefect server: set PREFECT_API_URL to a server both can reach "
                "(`prefect server start`), here and on the cluster's workers"
            )
        from prefect.server.api.server import SubprocessASGIServer

        server = SubprocessASGIServer()  # the same one this process's flow runs will use
        server.start()
        url = server.api_url
    before = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url
    try:
        yield url
    finally:
        if before is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = before


def run_on(
    flow_object: Flow[..., R],
    runner: Runner,
    workers: int,
    address: str | None = None,
    /,
    **parameters: Any,
) -> R:
    """Call a flow with its task runs on `runner`, its workers reporting to this process's API.

    Positional-only, so a flow's own `workers` parameter passes through in `parameters`."""
    task_runner = task_runner_for(runner, workers, address)
    with workers_report_here(runner, address):
        return flow_object.with_options(task_runner=task_runner)(**parameters)
