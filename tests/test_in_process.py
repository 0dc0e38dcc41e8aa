"""The in-process runner (deployments/in_process.py) against a real Prefect server: uploads to a
real webhook receiver end in completed runs with outputs, bursts lose and double nothing, two
runners never run one flow run twice, and a cancelled run is never started."""

from __future__ import annotations

import contextlib
import contextvars
import json
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from prefect import flow
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.objects import StateType
from prefect.context import get_run_context
from prefect.deployments.runner import RunnerDeployment
from prefect.exceptions import ObjectNotFound
from prefect.types.entrypoint import EntrypointType

from benchmarks.webhook_load import BENCHMARK_SECRET, serving
from mmflow.deployments.in_process import InProcessRunner, InProcessSettings
from mmflow.deployments.serve import build_deployments
from mmflow.deployments.webhook import WebhookSettings, create_app, signed_headers
from mmflow.tasks.samples import numbered_invoices

pytestmark = pytest.mark.slow

SERVED = ("invoice/invoice", "meeting/meeting", "image/image")
_ran: Counter[UUID] = Counter()  # flow run id → how many times the probe's body ran
_ran_lock = threading.Lock()


@flow(name="mmflow-in-process-probe")
def probe(pause_s: float = 0.05) -> None:
    """Counts its own runs by flow run id: a run executed twice shows as 2."""
    run = get_run_context().flow_run  # type: ignore[union-attr]
    assert run is not None
    with _ran_lock:
        _ran[run.id] += 1
    time.sleep(pause_s)


@pytest.fixture(scope="module")
def client(prefect_server: str) -> Iterator[SyncPrefectClient]:
    with get_client(sync_client=True) as prefect_client:
        yield prefect_client


def _probe_deployment(name: str) -> RunnerDeployment:
    deployment = probe.to_deployment(name, entrypoint_type=EntrypointType.MODULE_PATH)
    assert isinstance(deployment, RunnerDeployment)  # to_deployment is sync outside a loop
    return deployment


@contextlib.contextmanager
def running(*runners: InProcessRunner) -> Iterator[None]:
    """Each runner's `run()` in a thread (with this thread's Prefect settings), all started at
    once, until the block ends."""
    threads = [
        threading.Thread(target=contextvars.copy_context().run, args=(runner.run,))
        for runner in runners
    ]
    for thread in threads:
        thread.start()
    try:
        for runner in runners:
            assert runner.started.wait(120), "a runner did not register its deployments"
        yield
    finally:
        for runner in runners:
            runner.stop()
        for thread in threads:
            thread.join(timeout=120)
            assert not thread.is_alive()


def _eventually(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        time.sleep(0.2)


def _all_final(client: SyncPrefectClient, run_ids: list[UUID]) -> bool:
    states = [client.read_flow_run(run_id).state for run_id in run_ids]
    return all(state is not None and state.is_final() for state in states)


# ---------------------------------------------------------------- claims and cancellation


def test_two_runners_on_one_server_run_each_flow_run_exactly_once(
    client: SyncPrefectClient,
) -> None:
    from prefect.states import Scheduled

    deployment_id = _probe_deployment("race").apply()
    settings = InProcessSettings(limit=3, poll_s=0.2, pause_on_shutdown=False)
    first = InProcessRunner([_probe_deployment("race")], settings)
    second = InProcessRunner([_probe_deployment("race")], settings)
    with running(first, second):
        # all due at the same instant, while both poll: both see them in the same 0.2 s
        due = Scheduled(scheduled_time=datetime.now(UTC) + timedelta(seconds=2))
        runs = [
            client.create_flow_run_from_deployment(deployment_id, state=due.model_copy()).id
            for _ in range(12)
        ]
        _eventually(lambda: _all_final(client, runs), 120, "every probe run ended")
    assert {run_id: _ran[run_id] for run_id in runs} == dict.fromkeys(runs, 1)
    # and no slot went to a run the other runner had won: each started only its own claims
    assert first.finished_runs + second.finished_runs == len(runs)
    for run_id in runs:
        run = client.read_flow_run(run_id)
        assert run.state is not None and run.state.type is StateType.COMPLETED
        assert run.run_count == 1


def test_a_cancelled_run_is_never_started_and_others_still_run(
    client: SyncPrefectClient,
) -> None:
    from prefect.states import Cancelling

    deployment_id = _probe_deployment("cancel").apply()
    cancelled = client.create_flow_run_from_deployment(deployment_id).id
    client.set_flow_run_state(cancelled, Cancelling(), force=True)
    later = client.create_flow_run_from_deployment(deployment_id).id
    settings = InProcessSettings(poll_s=0.2, pause_on_shutdown=False)
    with running(InProcessRunner([_probe_deployment("cancel")], settings)):
        _eventually(lambda: _all_final(client, [later]), 60, "the run after it ended")
    assert _ran[cancelled] == 0 and _ran[later] == 1
    state = client.read_flow_run(cancelled).state
    # the server's cancellation clean-up may have moved it on to Cancelled meanwhile
    assert state is not None and state.type in (StateType.CANCELLING, StateType.CANCELLED)


def test_a_run_cancelled_between_its_claim_and_its_start_does_not_run(
    client: SyncPrefectClient,
) -> None:
    """The window a poll cannot see: claimed (Pending), then cancelled, then started."""
    from prefect.states import Cancelling

    deployment = _probe_deployment("claimed")
    runner = InProcessRunner([deployment], InProcessSettings(pause_on_shutdown=False))
    flows = runner.register()
    (deployment_id,) = flows
    run = client.create_flow_run_from_deployment(deployment_id)
    assert runner._claim(client, run)
    client.set_flow_run_state(run.id, Cancelling(), force=True)
    runner._execute(flows[deployment_id], client.read_flow_run(run.id))
    assert _ran[run.id] == 0
    state = client.read_flow_run(run.id).state
    # the server's cancellation clean-up may have moved it on to Cancelled meanwhile
    assert state is not None and state.type in (StateType.CANCELLING, StateType.CANCELLED)
    assert runner.running() == []


def test_a_running_run_asked_to_cancel_runs_to_its_end_and_says_so(
    client: SyncPrefectClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A thread cannot be killed: the documented limit, logged rather than silent."""
    from prefect.states import Cancelling

    from mmflow.deployments import in_process

    monkeypatch.setattr(in_process, "CANCEL_CHECK_S", 0.0)
    deployment_id = _probe_deployment("running").apply()
    run = client.create_flow_run_from_deployment(deployment_id, parameters={"pause_s": 3.0}).id
    settings = InProcessSettings(poll_s=0.2, pause_on_shutdown=False)
    runner = InProcessRunner([_probe_deployment("running")], settings)
    with running(runner):
        _eventually(lambda: _ran[run] == 1, 30, "the run started")
        client.set_flow_run_state(run, Cancelling(), force=True)
        _eventually(lambda: "cannot be stopped" in caplog.text, 30, "the warning")
        _eventually(lambda: runner.running() == [], 30, "the run's thread ended")
    assert _ran[run] == 1
    # its Completed is refused: it stays Cancelling until the server's clean-up cancels it
    state = client.read_flow_run(run).state
    assert state is not None and state.type in (StateType.CANCELLING, StateType.CANCELLED)


# ---------------------------------------------------------------- the command


def test_mmflow_serve_in_process_runs_a_deployment_and_stops_on_ctrl_c(
    prefect_server: str, client: SyncPrefectClient, tmp_path: Path
) -> None:
    """The command: a run of a served deployment completes in the serving process, /metrics
    counts it, and Ctrl-C ends the process at once when nothing runs."""
    from tests.test_deployments import BIN, _environment, free_port

    for name in SERVED:
        with contextlib.suppress(ObjectNotFound):
            client.delete_deployment(client.read_deployment_by_name(name).id)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name, data in numbered_invoices(1, start=900):
        (inbox / name).write_bytes(data)
    metrics_port = free_port()
    command = [str(BIN / "mmflow"), "serve", "--in-process", "--outputs", str(tmp_path / "out")]
    with (tmp_path / "serve.log").open("w") as log:
        process = subprocess.Popen(
            [*command, "--metrics-port", str(metrics_port)],
            cwd=tmp_path,
            env=_environment(prefect_server, tmp_path / "home"),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deployment = None
        deadline = time.monotonic() + 120
        while deployment is None or deployment.paused:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            with contextlib.suppress(ObjectNotFound):
                deployment = client.read_deployment_by_name("invoice/invoice")
            time.sleep(0.5)
        run = client.create_flow_run_from_deployment(
            deployment.id, parameters={"inputs": [str(inbox)], "run": {"tenant": "acme"}}
        )
        _eventually(lambda: _all_final(client, [run.id]), 120, "the run ended")
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0, (tmp_path / "serve.log").read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=15)
    state = client.read_flow_run(run.id).state
    assert state is not None and state.type is StateType.COMPLETED
    ok = 'mmflow_inputs_total{feature="",scenario="invoice",status="ok",tenant="acme"} 1.0'
    assert ok in scraped, scraped[-3000:]


# ---------------------------------------------------------------- the webhook, end to end


@pytest.fixture(scope="module")
def webhook(
    client: SyncPrefectClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, WebhookSettings]]:
    """A real receiver delivering to the test server, and the served scenario deployments
    (upload triggers included) run by an in-process runner."""
    for name in SERVED:  # another test's `prefect deploy` must not pass for served ones
        with contextlib.suppress(ObjectNotFound):
            client.delete_deployment(client.read_deployment_by_name(name).id)
    settings = WebhookSettings(
        storage=str(tmp_path_factory.mktemp("hook")), secret=BENCHMARK_SECRET
    )
    runner = InProcessRunner(
        build_deployments(settings.outputs_root()), InProcessSettings(limit=4, poll_s=0.2)
    )
    with running(runner), serving(create_app(settings)) as url:
        yield url, settings
    for name in SERVED:  # later tests of this process must not find them served
        with contextlib.suppress(ObjectNotFound):
            client.delete_deployment(client.read_deployment_by_name(name).id)


def _post(url: str, body: bytes) -> dict[str, Any]:
    path = "/v1/ingest/invoice"
    headers = signed_headers(BENCHMARK_SECRET, "POST", path, body, content_type="application/pdf")
    response = httpx.post(url + path, content=body, headers=headers, timeout=60)
    assert response.status_code == 202, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _status(url: str, sha256: str) -> dict[str, Any]:
    path = f"/v1/status/{sha256}"
    headers = signed_headers(BENCHMARK_SECRET, "GET", path, b"")
    status: dict[str, Any] = httpx.get(url + path, headers=headers, timeout=30).json()
    return status["scenarios"]["invoice"] if "scenarios" in status else status


def _runs_by_input(client: SyncPrefectClient, uris: set[str]) -> Counter[str]:
    deployment = client.read_deployment_by_name("invoice/invoice")
    query = DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
    runs = client.read_flow_runs(deployment_filter=query, limit=200)
    return Counter(
        run.parameters["inputs"][0]
        for run in runs
        if run.parameters.get("inputs", [None])[0] in uris
        and run.state is not None
        and run.state.type is StateType.COMPLETED
    )


def test_a_signed_upload_ends_in_a_completed_run_with_outputs(
    webhook: tuple[str, WebhookSettings], client: SyncPrefectClient
) -> None:
    url, settings = webhook
    ((_, body),) = numbered_invoices(1, start=700)
    answer = _post(url, body)
    _eventually(lambda: _status(url, answer["sha256"])["status"] == "ok", 60, "status ok")
    status = _status(url, answer["sha256"])
    assert status["outputs"] == [f"{settings.outputs_root()}/invoice/{answer['sha256']}.json"]
    assert Path(status["outputs"][0]).is_file()
    _eventually(
        lambda: _runs_by_input(client, {answer["uri"]})[answer["uri"]] == 1, 30, "completed"
    )


def test_a_burst_of_uploads_loses_none_and_doubles_none(
    webhook: tuple[str, WebhookSettings], client: SyncPrefectClient
) -> None:
    url, settings = webhook
    invoices = list(numbered_invoices(6, start=800))
    answers = [_post(url, body) for _, body in invoices]
    uris = {answer["uri"] for answer in answers}
    assert len(uris) == 6
    _eventually(
        lambda: all(_status(url, a["sha256"])["status"] == "ok" for a in answers), 120, "all ok"
    )
    _eventually(lambda: set(_runs_by_input(client, uris)) == uris, 30, "every run completed")
    time.sleep(1)  # a second run of any upload would have been claimed by now
    assert _runs_by_input(client, uris) == dict.fromkeys(uris, 1)
    out = Path(settings.outputs_root()) / "invoice"
    manifest = (out / "manifest.jsonl").read_text().splitlines()
    shas = Counter(json.loads(line)["sha256"] for line in manifest)
    assert {a["sha256"]: shas[a["sha256"]] for a in answers} == {a["sha256"]: 1 for a in answers}
    assert all((out / f"{a['sha256']}.json").is_file() for a in answers)
