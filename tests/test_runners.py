"""Task runners: threads, Dask and Ray runners built from `--runner`/`--address`, and the invoice
flow's grouped path run in Dask worker processes giving the same results as threads."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

import pytest
from prefect import flow, task
from prefect.states import State
from prefect.task_runners import ThreadPoolTaskRunner

from mmflow.flows import stopping
from mmflow.flows.processes import WarmProcessPoolTaskRunner
from mmflow.flows.progress import listening
from mmflow.flows.runners import Runner, run_on, task_runner_for, workers_report_here
from mmflow.flows.runs import RunSettings, default_group_size
from mmflow.tasks.errors import MissingDependency
from mmflow.tasks.samples import SPECS, invoice_pdf, make_samples, numbered_invoices, write_files

prefect_dask = pytest.importorskip("prefect_dask")


def test_threads_runner_is_a_thread_pool_of_the_given_size() -> None:
    runner = task_runner_for(Runner.THREADS, 3, None)
    assert isinstance(runner, ThreadPoolTaskRunner)
    assert runner._max_workers == 3


def test_threads_runner_refuses_an_address() -> None:
    with pytest.raises(ValueError, match="threads runner takes none"):
        task_runner_for(Runner.THREADS, 2, "tcp://127.0.0.1:8786")


def test_processes_runner_is_a_warm_process_pool_of_the_given_size() -> None:
    runner = task_runner_for(Runner.PROCESSES, 3, None)
    assert isinstance(runner, WarmProcessPoolTaskRunner)
    assert runner._max_workers == 3
    with pytest.raises(ValueError, match="processes runner takes none"):
        task_runner_for(Runner.PROCESSES, 2, "tcp://127.0.0.1:8786")


@pytest.mark.parametrize(
    ("inputs", "workers", "in_processes", "size"),
    [
        (200, 2, False, 25),  # threads: two groups a worker, at most 25
        (40, 2, False, 10),
        (200, 2, True, 100),  # worker processes: a worker's share, at most 100
        (9, 2, True, 5),
        (1000, 2, True, 100),
        (1, 4, True, 1),
    ],
)
def test_groups_in_worker_processes_are_a_workers_share(
    inputs: int, workers: int, in_processes: bool, size: int
) -> None:
    assert default_group_size(inputs, workers, in_processes) == size


def test_dask_runner_without_address_starts_one_single_threaded_process_per_worker() -> None:
    runner = task_runner_for(Runner.DASK, 3, None)
    assert isinstance(runner, prefect_dask.DaskTaskRunner)
    assert runner.address is None
    assert runner.cluster_kwargs["n_workers"] == 3
    assert runner.cluster_kwargs["threads_per_worker"] == 1
    assert runner.cluster_kwargs["processes"] is True


def test_dask_runner_with_address_connects_to_that_scheduler() -> None:
    runner = task_runner_for(Runner.DASK, 2, "tcp://10.0.0.5:8786")
    assert isinstance(runner, prefect_dask.DaskTaskRunner)
    assert runner.address == "tcp://10.0.0.5:8786"
    assert runner.cluster_kwargs == {}


def test_dask_runner_refuses_a_ray_address() -> None:
    with pytest.raises(ValueError, match="not a dask scheduler address"):
        task_runner_for(Runner.DASK, 2, "ray://10.0.0.5:10001")


def test_an_address_without_a_port_is_refused() -> None:
    with pytest.raises(ValueError, match="expected tcp://host:8786"):
        task_runner_for(Runner.DASK, 2, "tcp://scheduler")


def test_zero_workers_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        task_runner_for(Runner.THREADS, 0, None)


def test_ray_runner_local_reserves_one_cpu_per_worker() -> None:
    prefect_ray = pytest.importorskip("prefect_ray")
    runner = task_runner_for(Runner.RAY, 2, None)
    assert isinstance(runner, prefect_ray.RayTaskRunner)
    assert runner.address is None
    assert runner.init_kwargs["num_cpus"] == 2


def test_ray_runner_with_address_connects_to_that_cluster() -> None:
    prefect_ray = pytest.importorskip("prefect_ray")
    runner = task_runner_for(Runner.RAY, 2, "ray://head:10001")
    assert isinstance(runner, prefect_ray.RayTaskRunner)
    assert runner.address == "ray://head:10001"


@pytest.mark.parametrize(("runner", "extra"), [(Runner.DASK, "dask"), (Runner.RAY, "ray")])
def test_a_missing_runner_package_names_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch, runner: Runner, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, f"prefect_{extra}", None)  # makes the import fail
    with pytest.raises(MissingDependency, match=rf"pip install 'mmflow\[{extra}\]'"):
        task_runner_for(runner, 2, None)


def test_runner_names_parse_as_the_cli_spells_them() -> None:
    assert [Runner(name) for name in ("threads", "processes", "dask", "ray")] == list(Runner)


def test_workers_get_this_process_api_url_for_the_run_only(prefect_server: str) -> None:
    before = os.environ.get("PREFECT_API_URL")
    with workers_report_here(Runner.DASK) as url:
        assert url == prefect_server
        assert os.environ["PREFECT_API_URL"] == prefect_server
    assert os.environ.get("PREFECT_API_URL") == before


def test_threads_leave_the_environment_alone(prefect_server: str) -> None:
    before = os.environ.get("PREFECT_API_URL")
    with workers_report_here(Runner.THREADS) as url:
        assert url is None
        assert os.environ.get("PREFECT_API_URL") == before


def test_a_remote_cluster_without_a_reachable_server_is_refused() -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings(restore_defaults={PREFECT_API_URL}),
        pytest.raises(ValueError, match="cannot reach this machine's temporary Prefect server"),
        workers_report_here(Runner.DASK, "tcp://10.0.0.5:8786"),
    ):
        pass


@task
def _worker_pid() -> int:
    return os.getpid()


@flow
def _pids(count: int) -> list[int]:
    return [future.result() for future in [_worker_pid.submit() for _ in range(count)]]


@pytest.mark.slow
def test_dask_runner_runs_tasks_on_the_cluster_at_the_address(prefect_server: str) -> None:
    from distributed import Client, LocalCluster

    # A cluster started on its own, its workers told where the Prefect API is, as a remote
    # cluster's would be.
    with LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        env={"PREFECT_API_URL": prefect_server},
    ) as cluster:
        pids = run_on(_pids, Runner.DASK, 1, str(cluster.scheduler_address), count=3)
        with Client(cluster) as client:
            worker_pids = set(client.run(os.getpid).values())
    assert set(pids) == worker_pids != {os.getpid()}


# ---------------------------------------------------------------- the invoice flow on Dask, Ray


def _write_inputs(folder: Path) -> list[Path]:
    """The five sample forms (text PDF, scan, photo, fax TIFF, rotated PNG), three more text
    PDFs and one empty file: 9 inputs, one of them rejected."""
    paths = make_samples(folder)
    for i in range(3):
        spec = dataclasses.replace(SPECS["northwind-invoice"], number=f"NW-RUN-{i}")
        path = folder / f"extra-{i}.pdf"
        path.write_bytes(invoice_pdf(spec))
        paths.append(path)
    empty = folder / "empty.pdf"
    empty.write_bytes(b"")
    return [*paths, empty]


def _run_invoice(runner: Runner, inputs: list[Path], out: Path, cache_dir: Path) -> Any:
    """The invoice flow's grouped path on `runner`; returns the flow run's id."""
    from mmflow.flows.invoice import invoice_flow

    any_flow: Any = invoice_flow  # called with return_state=True: a State, not the report
    state: State[Any] = run_on(
        any_flow,
        runner,
        2,
        None,
        inputs=[str(p) for p in inputs],
        out=str(out),
        return_state=True,
        run=RunSettings(
            cache=True, cache_dir=str(cache_dir), workers=2, stepwise_max=0, group_size=2
        ),
    )
    state.result()  # raises if the flow run failed
    return state.state_details.flow_run_id


def _completed_group_runs(flow_run_id: Any, expected: int, timeout_s: float = 30.0) -> int:
    """How many of the run's group task runs the server records as Completed, read until
    `expected` or `timeout_s`. A task run in a worker process reports its states as events,
    which the server records a little later than the flow run sees them: in one CI run a
    Ray group's Completed was not yet recorded when the flow returned."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
            groups = [r for r in runs if r.task_key.startswith("process_inputs")]
            completed = sum(r.state_name == "Completed" for r in groups)
            if completed >= expected or time.monotonic() > deadline:
                return completed
            time.sleep(0.2)


def _manifest(out: Path) -> list[dict[str, Any]]:
    lines = (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _comparable(entry: dict[str, Any]) -> dict[str, Any]:
    """A manifest line and its result file, less what differs between any two runs."""
    result = None
    if entry["output"]:
        result = json.loads(Path(entry["output"]).read_text(encoding="utf-8"))
        result.pop("lineage")  # run ids, durations, cache flags
    output = Path(entry["output"]).name if entry["output"] else None
    outputs = [Path(path).name for path in entry.get("outputs") or []]
    # Which files were written; their sizes differ with the output folder named in lineage.
    written = sorted(Path(path).name for path in entry.get("output_bytes") or {})
    return {
        **{k: v for k, v in entry.items() if k != "trace"},  # trace and run ids, latency
        "output": output,
        "outputs": outputs,
        "output_bytes": written,
        "result": result,
    }


@dataclasses.dataclass(frozen=True)
class Runs:
    inputs: list[Path]
    dask_out: Path
    dask_run: Any
    threads_out: Path


@pytest.fixture(scope="module")
def runs(prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    root = tmp_path_factory.mktemp("runners")
    inputs = _write_inputs(root / "in")
    dask_run = _run_invoice(Runner.DASK, inputs, root / "dask", root / "cache-dask")
    _run_invoice(Runner.THREADS, inputs, root / "threads", root / "cache-threads")
    return Runs(inputs, root / "dask", dask_run, root / "threads")


@pytest.mark.slow
def test_dask_run_puts_every_input_in_the_manifest_exactly_once(runs: Runs) -> None:
    entries = _manifest(runs.dask_out)
    assert sorted(e["uri"] for e in entries) == sorted(str(p) for p in runs.inputs)
    statuses = {Path(e["uri"]).name: e["status"] for e in entries}
    assert statuses.pop("empty.pdf") == "rejected"
    assert set(statuses.values()) == {"ok"}


@pytest.mark.slow
def test_dask_run_writes_a_result_file_for_every_processed_input(runs: Runs) -> None:
    for entry in _manifest(runs.dask_out):
        if entry["status"] == "ok":
            result = json.loads(Path(entry["output"]).read_text(encoding="utf-8"))
            assert Path(entry["output"]).parent == runs.dask_out
            assert result["source"]["uri"] == entry["uri"]
        else:
            assert entry["output"] is None


@pytest.mark.slow
def test_dask_run_gives_the_same_results_as_threads(runs: Runs) -> None:
    dask = [_comparable(e) for e in _manifest(runs.dask_out)]
    threads = [_comparable(e) for e in _manifest(runs.threads_out)]
    assert dask == threads


@pytest.mark.slow
def test_dask_workers_record_their_task_runs_on_the_flow_runs_server(runs: Runs) -> None:
    assert _completed_group_runs(runs.dask_run, 5) == 5  # 9 inputs in groups of 2


@pytest.mark.slow
def test_ray_run_gives_the_same_results_as_threads(runs: Runs, tmp_path: Path) -> None:
    pytest.importorskip("prefect_ray")
    flow_run = _run_invoice(Runner.RAY, runs.inputs, tmp_path / "ray", tmp_path / "cache")
    ray = [_comparable(e) for e in _manifest(tmp_path / "ray")]
    threads = [_comparable(e) for e in _manifest(runs.threads_out)]
    assert ray == threads
    assert _completed_group_runs(flow_run, 5) == 5


@pytest.mark.slow
def test_processes_run_gives_the_same_results_as_threads(runs: Runs, tmp_path: Path) -> None:
    flow_run = _run_invoice(Runner.PROCESSES, runs.inputs, tmp_path / "p", tmp_path / "cache")
    processes = [_comparable(e) for e in _manifest(tmp_path / "p")]
    threads = [_comparable(e) for e in _manifest(runs.threads_out)]
    assert processes == threads
    assert _completed_group_runs(flow_run, 5) == 5  # recorded through the flow's process


@pytest.mark.slow
def test_processes_runner_runs_task_runs_in_forked_workers(prefect_server: str) -> None:
    pids = run_on(_pids, Runner.PROCESSES, 2, count=6)
    assert os.getpid() not in pids
    assert 1 <= len(set(pids)) <= 2


@pytest.mark.slow
def test_a_stop_asked_in_the_flows_process_reaches_its_worker_processes(
    prefect_server: str, tmp_path: Path
) -> None:
    """Groups of one input in one worker; the stop is asked when the first group ends, so
    the inputs of the last groups, started in the worker afterwards, end `interrupted`."""
    from mmflow.flows.invoice import invoice_flow

    inputs = write_files(tmp_path / "in", numbered_invoices(12))
    state: Any = None
    try:
        with listening(lambda event: stopping.request_stop()):
            state = run_on(
                cast(Any, invoice_flow),
                Runner.PROCESSES,
                1,
                None,
                inputs=[str(p) for p in inputs],
                out=str(tmp_path / "out"),
                return_state=True,
                run=RunSettings(cache=False, workers=1, stepwise_max=0, group_size=1),
            )
    finally:
        stopping.reset()
    assert state is not None and state.is_cancelled()
    entries = {Path(e["uri"]).name: e for e in _manifest(tmp_path / "out")}
    assert sorted(entries) == [p.name for p in inputs]  # every input, once
    assert entries[inputs[0].name]["status"] == "ok"
    for name in [p.name for p in inputs[-6:]]:
        assert entries[name]["status"] == "failed"
        assert entries[name]["error"]["code"] == "interrupted"


@pytest.mark.slow
def test_inputs_sharing_a_stem_in_different_worker_processes_get_distinct_outputs(
    prefect_server: str, tmp_path: Path
) -> None:
    """Each worker process holds its own copy of the run's output names, so stems must be
    settled where every copy agrees, or one input's result overwrites the other's."""
    inputs = []
    for folder in ("a", "b"):
        spec = dataclasses.replace(SPECS["northwind-invoice"], number=f"NW-{ord(folder)}")
        path = tmp_path / folder / "invoice.pdf"
        path.parent.mkdir()
        path.write_bytes(invoice_pdf(spec))
        inputs.append(path)
    from mmflow.flows.invoice import invoice_flow

    run_on(
        invoice_flow,
        Runner.DASK,
        2,
        None,
        inputs=[str(p) for p in inputs],
        out=str(tmp_path / "out"),
        run=RunSettings(cache=False, workers=2, stepwise_max=0, group_size=1),
    )
    outputs = [e["output"] for e in _manifest(tmp_path / "out")]
    assert len(set(outputs)) == 2
    numbers = {
        json.loads(Path(o).read_text(encoding="utf-8"))["fields"]["invoice_number"]["value"]
        for o in outputs
    }
    assert numbers == {"NW-97", "NW-98"}


def _mmflow(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mmflow.cli", *args],
        env=env or dict(os.environ),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.slow
def test_the_cli_runs_a_batch_in_worker_processes(prefect_server: str, tmp_path: Path) -> None:
    # more than stepwise_max: grouped, so the groups go to the workers
    write_files(tmp_path / "in", numbered_invoices(6))
    out = tmp_path / "out"
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    args = ["run", "invoice", str(tmp_path / "in"), "--out", str(out), "--no-cache"]
    done = _mmflow(*args, "--runner", "processes", "--workers", "2", env=env)
    assert done.returncode == 0, done.stderr
    entries = _manifest(out)
    assert len(entries) == 6 and {e["status"] for e in entries} == {"ok"}
    fields = [json.loads(Path(e["output"]).read_text(encoding="utf-8"))["fields"] for e in entries]
    assert {f["invoice_number"]["value"] for f in fields} == {f"NW-{10000 + i}" for i in range(6)}


def test_the_cli_refuses_a_provider_budget_spread_over_worker_processes(tmp_path: Path) -> None:
    done = _mmflow("run", "invoice", str(tmp_path), "--runner", "dask", "--provider-block", "x")
    assert done.returncode == 2
    assert "--runner threads" in " ".join(done.stderr.split())


def test_the_cli_refuses_an_address_for_threads(tmp_path: Path) -> None:
    done = _mmflow("run", "batch", str(tmp_path), "--address", "tcp://127.0.0.1:8786")
    assert done.returncode == 2
    assert "threads runner takes none" in " ".join(done.stderr.split())


@pytest.mark.slow
def test_mmflow_run_batch_on_a_local_dask_cluster_ends_every_input_once(
    prefect_server: str, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    inputs = [Path(shutil.copy(p, inbox)) for p in _write_inputs(tmp_path / "made")]
    out = tmp_path / "out"
    done = _mmflow(
        *("run", "batch", str(tmp_path / "inbox"), "--out", str(out)),
        *("--runner", "dask", "--workers", "2", "--group-size", "3", "--no-cache"),
        env=os.environ | {"PREFECT_API_URL": prefect_server},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    entries = _manifest(out)
    assert sorted(e["uri"] for e in entries) == sorted(str(p) for p in inputs)
    assert sum(e["status"] == "ok" for e in entries) == len(inputs) - 1
