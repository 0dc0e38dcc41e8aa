"""The deployments: prefect.yaml through `prefect deploy`, `mmflow serve`, and schema checks."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.responses import DeploymentResponse
from prefect.exceptions import ObjectNotFound

from mmflow.deployments.webhook import Upload, emit_upload_event

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NAMES = ("invoice/invoice", "meeting/meeting", "image/image", "batch/invoice-batch")
EVAL_TIERS = ("core", "domain", "stress")


def _environment(api_url: str, home: Path, **extra: str) -> dict[str, str]:
    """The test server's URL and a scratch PREFECT_HOME: nothing of the user's profile leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_API_URL=api_url,
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        **extra,
    )
    return env


@pytest.fixture(scope="module")
def client(prefect_server: str) -> Iterator[SyncPrefectClient]:
    with get_client(sync_client=True) as prefect_client:
        yield prefect_client


@pytest.fixture(scope="module")
def batch_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("batch-source")


@pytest.fixture(scope="module")
def deployed(
    prefect_server: str, client: SyncPrefectClient, batch_source: Path
) -> dict[str, DeploymentResponse]:
    """`prefect deploy --all` of deployments/prefect.yaml, as a user runs it from the root."""
    batch = batch_source
    env = _environment(
        prefect_server,
        batch_source.parent / "prefect-home",
        PWD=str(ROOT),
        MMFLOW_BATCH_SOURCE=str(batch),
    )
    prefect = [str(BIN / "prefect"), "--no-prompt"]
    subprocess.run(
        [*prefect, "work-pool", "create", "mmflow-process", "--type", "process", "--overwrite"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    done = subprocess.run(
        [*prefect, "deploy", "--all", "--prefect-file", "deployments/prefect.yaml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return {name: client.read_deployment_by_name(name) for name in NAMES}


def test_deploy_all_registers_four_deployments_on_the_process_pool(
    deployed: dict[str, DeploymentResponse],
) -> None:
    pools = {name: deployed[name].work_pool_name for name in NAMES}
    assert pools == dict.fromkeys(NAMES, "mmflow-process")
    assert all(deployed[name].enforce_parameter_schema for name in NAMES)
    # Module entrypoints: a worker imports the installed mmflow from any working directory.
    assert all(str(deployed[name].entrypoint).startswith("mmflow.flows.") for name in NAMES)


def test_batch_deployment_runs_nightly_over_the_configured_source(
    deployed: dict[str, DeploymentResponse], batch_source: Path
) -> None:
    batch = deployed["batch/invoice-batch"]
    schedules = [s.schedule.model_dump() for s in batch.schedules]
    assert [(s.get("cron"), s.get("timezone")) for s in schedules] == [("0 2 * * *", "UTC")]
    assert batch.parameters["source"] == str(batch_source)
    assert batch.parameters["out"] == f"{ROOT}/out/invoice-batch"  # absolute, not the worker's
    assert not deployed["invoice/invoice"].schedules


def test_the_evaluation_tiers_are_deployed_the_domain_tier_nightly(
    client: SyncPrefectClient, deployed: dict[str, DeploymentResponse]
) -> None:
    tiers = {tier: client.read_deployment_by_name(f"eval/eval-{tier}") for tier in EVAL_TIERS}
    assert {tier: d.parameters["tier"] for tier, d in tiers.items()} == {t: t for t in EVAL_TIERS}
    assert all(str(d.entrypoint) == "mmflow.flows.evaluation.eval_flow" for d in tiers.values())
    assert all(d.work_pool_name == "mmflow-process" for d in tiers.values())
    nightly = [s.schedule.model_dump().get("cron") for s in tiers["domain"].schedules]
    assert nightly == ["0 3 * * *"]
    assert not tiers["core"].schedules and not tiers["stress"].schedules


def test_parameter_schemas_carry_the_option_models_for_the_ui_form(
    deployed: dict[str, DeploymentResponse],
) -> None:
    expected = {
        "invoice/invoice": "InvoiceOptions",
        "meeting/meeting": "MeetingOptions",
        "image/image": "ImageOptions",
    }
    for name, model in expected.items():
        schema = deployed[name].parameter_openapi_schema or {}
        assert {"inputs", "out", "options", "run"} <= set(schema["properties"]), name
        assert model in schema.get("definitions", {}), name
        assert schema["definitions"]["RunSettings"]["properties"]["workers"]["minimum"] == 1
    schema = deployed["invoice/invoice"].parameter_openapi_schema or {}
    options = schema["definitions"]["InvoiceOptions"]["properties"]
    assert options["dpi"]["minimum"] == 72 and "description" in options["dpi"]


def test_scenario_deployments_are_triggered_by_their_uploads(
    deployed: dict[str, DeploymentResponse], client: SyncPrefectClient
) -> None:
    for scenario in ("invoice", "meeting", "image"):
        deployment = deployed[f"{scenario}/{scenario}"]
        automations = client.read_resource_related_automations(
            f"prefect.deployment.{deployment.id}"
        )
        assert len(automations) == 1, scenario
        trigger = automations[0].trigger.model_dump()
        assert trigger["expect"] == {"mmflow.upload.received"}
        assert trigger["match"]["mmflow.scenario"] == scenario
        action = automations[0].actions[0].model_dump()
        assert action["parameters"]["inputs"] == ["{{ event.resource['mmflow.uri'] }}"]
    batch = deployed["batch/invoice-batch"]
    assert not client.read_resource_related_automations(f"prefect.deployment.{batch.id}")


def test_deployment_refuses_a_run_with_an_invalid_option(
    deployed: dict[str, DeploymentResponse], client: SyncPrefectClient
) -> None:
    for bad, field in (
        ({"inputs": ["a.pdf"], "options": {"dpi": 0}}, "dpi"),
        ({"inputs": ["a.pdf"], "run": {"workers": 0}}, "workers"),
    ):
        with pytest.raises(httpx.HTTPStatusError) as refused:
            client.create_flow_run_from_deployment(deployed["invoice/invoice"].id, parameters=bad)
        assert refused.value.response.status_code == 409
        assert field in refused.value.response.text


def test_an_upload_event_starts_a_run_of_the_deployed_scenario_with_its_uri(
    deployed: dict[str, DeploymentResponse], client: SyncPrefectClient, tmp_path: Path
) -> None:
    sha256 = hashlib.sha256(str(tmp_path).encode()).hexdigest()  # unique to this test run
    upload = Upload(
        sha256=sha256,
        scenario="image",
        uri=f"s3://mmflow-test/uploads/{sha256}",
        size=1,
        media_type="image/png",
        source="body",
        out="s3://mmflow-test/outputs/image",
        tenant="acme",
    )
    emit_upload_event(upload)
    query = DeploymentFilter(id=DeploymentFilterId(any_=[deployed["image/image"].id]))
    runs: list[Any] = []
    for _ in range(240):  # the automation fires once the server has the event
        runs = [
            r
            for r in client.read_flow_runs(deployment_filter=query)
            if r.parameters.get("inputs") == [upload.uri]
        ]
        if runs:
            break
        time.sleep(0.5)
    try:
        assert len(runs) == 1
        assert runs[0].parameters["out"] == upload.out
        assert "names" in runs[0].parameters  # the uploaded file's name names the run
        # the caller's labels reach the run's settings ("" is none: RunSettings reads it as None)
        assert runs[0].parameters["run"] == {"tenant": "acme", "feature": ""}
    finally:  # no worker here; the worker tests below must not pick it up (it would write
        for run in runs:  # to the S3 endpoint other tests of this process use)
            client.delete_flow_run(run.id)


def test_an_error_rate_alert_starts_the_core_evaluation(
    deployed: dict[str, DeploymentResponse], client: SyncPrefectClient, tmp_path: Path
) -> None:
    """The example automation in prefect.yaml: a run's `mmflow.alert.firing` event for the
    error rate (flows/observe.py emits it when a run ends) schedules the core evaluation."""
    from prefect.events import emit_event

    core = client.read_deployment_by_name("eval/eval-core")
    query = DeploymentFilter(id=DeploymentFilterId(any_=[core.id]))
    before = {r.id for r in client.read_flow_runs(deployment_filter=query)}
    emit_event(
        event="mmflow.alert.firing",
        resource={
            "prefect.resource.id": "mmflow.alert.error_rate",
            "prefect.resource.name": "MmflowErrorRateHigh",
        },
        payload={"rule": "error_rate", "value": 0.5, "threshold": 0.02, "run_id": str(tmp_path)},
    )
    runs: list[Any] = []
    for _ in range(240):  # the automation fires once the server has the event
        runs = [r for r in client.read_flow_runs(deployment_filter=query) if r.id not in before]
        if runs:
            break
        time.sleep(0.5)
    try:
        assert len(runs) == 1
        assert runs[0].parameters["tier"] == "core"
        assert runs[0].parameters["out"] == f"{ROOT}/out/eval"
    finally:  # no worker here; the worker tests below must not pick it up
        for run in runs:
            client.delete_flow_run(run.id)


def _stop(process: subprocess.Popen[str]) -> None:
    """Ctrl-C, then again (the runner waits out its first), then kill; every wait bounded."""
    for sent in (signal.SIGINT, signal.SIGINT, signal.SIGTERM):
        if process.poll() is not None:
            return
        process.send_signal(sent)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            continue
    process.kill()
    process.wait(timeout=15)


def test_a_process_worker_runs_the_batch_deployment_to_completion(
    prefect_server: str,
    client: SyncPrefectClient,
    deployed: dict[str, DeploymentResponse],
    tmp_path: Path,
) -> None:
    """What `prefect worker start --pool mmflow-process` does with a scheduled batch run."""
    from prefect.client.schemas.objects import StateType

    from mmflow.tasks.samples import numbered_invoices

    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    for name, data in numbered_invoices(3):
        (inbox / name).write_bytes(data)
    # by name, not by the fixture's id: the serve test below replaces these deployments
    deployment = client.read_deployment_by_name("batch/invoice-batch")
    assert deployment.id == deployed["batch/invoice-batch"].id
    run = client.create_flow_run_from_deployment(
        deployment.id,
        parameters={"source": str(inbox), "out": str(out), "run": {"cache": False}},
    )
    state, log = _worker_runs(client, run.id, prefect_server, tmp_path)
    assert state.type is StateType.COMPLETED, log
    lines = (out / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 3 and all('"status":"ok"' in line for line in lines)


def _worker_runs(
    client: SyncPrefectClient, run_id: Any, prefect_server: str, tmp_path: Path
) -> tuple[Any, str]:
    """Start `prefect worker start --pool mmflow-process` until the flow run ends; its final
    state and the worker's log."""
    log = tmp_path / "worker.log"
    with log.open("w") as output:
        worker = subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", "mmflow-process"],
            cwd=ROOT,
            env=_environment(prefect_server, tmp_path / "home"),
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        deadline = time.monotonic() + 300
        state = client.read_flow_run(run_id).state
        while state is None or not state.is_final():
            assert worker.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"still {state} after 5 minutes"
            time.sleep(1)
            state = client.read_flow_run(run_id).state
    finally:
        _stop(worker)
    return state, log.read_text()


def test_a_process_worker_runs_the_core_evaluation_into_history_and_a_trend_chart(
    prefect_server: str,
    client: SyncPrefectClient,
    deployed: dict[str, DeploymentResponse],
    tmp_path: Path,
) -> None:
    """The eval-core deployment, one of its datasets (the generated PDFs: the quickest), with
    the gate off (the tests' history has no accepted run)."""
    from prefect.client.schemas.objects import StateType

    from mmflow.tasks.eval.history import HistoryStore

    history = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    deployment = client.read_deployment_by_name("eval/eval-core")
    parameters = {
        "out": str(tmp_path / "eval"),
        "datasets": ["sample-set"],
        "history": history,
        "gate": False,
    }
    run = client.create_flow_run_from_deployment(deployment.id, parameters=parameters)
    state, log = _worker_runs(client, run.id, prefect_server, tmp_path)
    assert state.type is StateType.COMPLETED, log
    store = HistoryStore(history)
    rows = store.rows("core")
    store.close()
    figures = {r.metric: r.value for r in rows if r.dataset == "sample-set"}
    assert {r.run_id for r in rows} == {str(run.id)} and len(figures) == len(rows)
    assert figures["inputs_ok"] == 1.0 and figures["field_accuracy"] > 0.9
    assert (tmp_path / "eval" / "core" / "trend.png").read_bytes().startswith(b"\x89PNG")


def test_mmflow_serve_registers_the_deployments(
    prefect_server: str, client: SyncPrefectClient, tmp_path: Path
) -> None:
    served = ("invoice/invoice", "meeting/meeting", "image/image", "batch/invoice-batch")
    for name in served:  # what `prefect deploy` registered must not pass for served ones
        with contextlib.suppress(ObjectNotFound):
            client.delete_deployment(client.read_deployment_by_name(name).id)
    env = _environment(prefect_server, tmp_path / "home", MMFLOW_BATCH_SOURCE=str(tmp_path))
    log = tmp_path / "serve.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(BIN / "mmflow"), "serve", "--outputs", str(tmp_path / "out")],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
    found: dict[str, DeploymentResponse] = {}
    try:
        deadline = time.monotonic() + 180
        while len(found) < len(served) and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            for name in served:
                with contextlib.suppress(ObjectNotFound):  # not registered yet
                    found[name] = client.read_deployment_by_name(name)
            time.sleep(1)
    finally:
        _stop(process)
    assert sorted(found) == sorted(served)
    assert all(d.work_pool_name is None for d in found.values())
    batch = found["batch/invoice-batch"]
    assert batch.parameters["source"] == str(tmp_path)
    assert [s.schedule.model_dump().get("cron") for s in batch.schedules] == ["0 2 * * *"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_mmflow_serve_runs_a_flow_of_its_deployments(
    prefect_server: str, client: SyncPrefectClient, tmp_path: Path
) -> None:
    """Served deployments run here: a flow run created from one completes."""
    from prefect.client.schemas.objects import StateType

    from mmflow.tasks.samples import numbered_invoices

    for name in NAMES:
        with contextlib.suppress(ObjectNotFound):
            client.delete_deployment(client.read_deployment_by_name(name).id)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name, data in numbered_invoices(1):
        (inbox / name).write_bytes(data)
    env = _environment(prefect_server, tmp_path / "home")
    log = tmp_path / "serve.log"
    metrics_port = free_port()
    with log.open("w") as output:
        process = subprocess.Popen(
            [
                str(BIN / "mmflow"),
                "serve",
                "--outputs",
                str(tmp_path / "out"),
                "--metrics-port",
                str(metrics_port),
            ],
            cwd=tmp_path,  # any folder: entrypoints are module paths
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        deadline = time.monotonic() + 180
        deployment = None
        while deployment is None and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            with contextlib.suppress(ObjectNotFound):
                deployment = client.read_deployment_by_name("invoice/invoice")
            time.sleep(1)
        assert deployment is not None, log.read_text()
        run = client.create_flow_run_from_deployment(
            deployment.id,
            parameters={"inputs": [str(inbox)], "run": {"cache": False, "tenant": "acme"}},
        )
        state = client.read_flow_run(run.id).state
        while state is None or not state.is_final():
            assert time.monotonic() < deadline + 120, f"still {state}: {log.read_text()}"
            time.sleep(1)
            state = client.read_flow_run(run.id).state
        # the flow ran in a subprocess: /metrics of `serve` still counts its input
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
    finally:
        _stop(process)
    ok = 'mmflow_inputs_total{feature="",scenario="invoice",status="ok",tenant="acme"} 1.0'
    assert ok in scraped, scraped[-3000:]
    assert state.type is StateType.COMPLETED, log.read_text()
    assert len((tmp_path / "out" / "invoice" / "manifest.jsonl").read_text().splitlines()) == 1


def test_mmflow_serve_refuses_deployments_a_work_pool_runs(
    prefect_server: str, client: SyncPrefectClient, tmp_path: Path
) -> None:
    """After `prefect deploy`, serve says what to do instead of rewriting the deployments."""
    from prefect.client.schemas.actions import WorkPoolCreate

    from mmflow.flows.invoice import invoice_flow

    with contextlib.suppress(Exception):
        client.create_work_pool(WorkPoolCreate(name="mmflow-process", type="process"))
    for name in NAMES:
        with contextlib.suppress(ObjectNotFound):
            client.delete_deployment(client.read_deployment_by_name(name).id)
    deployment = invoice_flow.to_deployment("invoice", work_pool_name="mmflow-process")
    deployment.apply()
    done = subprocess.run(
        [str(BIN / "mmflow"), "serve", "--outputs", str(tmp_path / "out")],
        cwd=ROOT,
        env=_environment(prefect_server, tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "invoice/invoice (work pool mmflow-process)" in done.stderr
    assert "Traceback" not in done.stderr
    unchanged = client.read_deployment_by_name("invoice/invoice")
    assert unchanged.work_pool_name == "mmflow-process"
