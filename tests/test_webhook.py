"""The webhook receiver: every bad request refused with the right status, every good one stored
under its hash and announced exactly once."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect import flow
from prefect.deployments.runner import RunnerDeployment
from starlette.testclient import TestClient
from typer.testing import CliRunner

from benchmarks.webhook_load import CountingEmitter, distinct_bodies, run_load, serving
from mmflow.deployments.webhook import (
    EVENT_NAME,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Scenario,
    Upload,
    WebhookSettings,
    create_app,
    sign,
    signed_headers,
    upload_trigger,
)
from mmflow.tasks.samples import SPECS, invoice_pdf

SECRET = b"test-webhook-secret"
LIMIT = 200_000


@pytest.fixture(scope="module")
def pdf() -> bytes:
    return invoice_pdf(SPECS["northwind-invoice"])


@pytest.fixture
def settings(tmp_path: Path) -> WebhookSettings:
    return WebhookSettings(storage=str(tmp_path / "hook"), secret=SECRET, max_bytes=LIMIT)


@pytest.fixture
def emitted() -> CountingEmitter:
    return CountingEmitter()


@pytest.fixture
def client(settings: WebhookSettings, emitted: CountingEmitter) -> Iterator[TestClient]:
    with TestClient(create_app(settings, emit=emitted)) as test_client:
        yield test_client


def _post(
    client: TestClient, body: bytes, headers: dict[str, str], scenario: str = "invoice"
) -> Any:  # an httpx2 (or httpx) Response, whichever starlette's TestClient uses
    return client.post(f"/v1/ingest/{scenario}", content=body, headers=headers)


def _uploads(settings: WebhookSettings) -> list[Path]:
    folder = Path(settings.storage) / "uploads"
    return sorted(p for p in folder.iterdir() if "." not in p.name) if folder.exists() else []


def test_a_signed_upload_is_stored_under_its_sha256_and_announced_once(
    client: TestClient, settings: WebhookSettings, emitted: CountingEmitter, pdf: bytes
) -> None:
    response = _post(client, pdf, signed_headers(SECRET, pdf, "application/pdf"))
    sha256 = hashlib.sha256(pdf).hexdigest()
    assert response.status_code == 202
    assert response.json()["sha256"] == sha256
    assert response.json()["status_url"] == f"/v1/status/{sha256}"
    stored = Path(response.json()["uri"])
    assert stored == Path(settings.storage) / "uploads" / sha256
    assert stored.read_bytes() == pdf
    assert [(u.sha256, u.scenario.value, u.uri) for u in emitted.uploads] == [
        (sha256, "invoice", str(stored))
    ]


def test_an_unsigned_request_is_refused_with_401_and_nothing_stored(
    client: TestClient, settings: WebhookSettings, emitted: CountingEmitter, pdf: bytes
) -> None:
    response = _post(client, pdf, {"Content-Type": "application/pdf"})
    assert (response.status_code, response.json()["error"]) == (401, "missing_signature")
    assert _uploads(settings) == [] and emitted.uploads == []


def test_a_signature_made_with_another_secret_is_refused_with_401(
    client: TestClient, settings: WebhookSettings, emitted: CountingEmitter, pdf: bytes
) -> None:
    response = _post(client, pdf, signed_headers(b"not-the-secret", pdf, "application/pdf"))
    assert (response.status_code, response.json()["error"]) == (401, "bad_signature")
    assert _uploads(settings) == [] and emitted.uploads == []


def test_a_body_changed_after_signing_is_refused_with_401(client: TestClient, pdf: bytes) -> None:
    headers = signed_headers(SECRET, pdf, "application/pdf")
    response = _post(client, pdf + b"tampered", headers)
    assert (response.status_code, response.json()["error"]) == (401, "bad_signature")


def test_a_malformed_signature_header_is_refused_with_401(client: TestClient, pdf: bytes) -> None:
    headers = signed_headers(SECRET, pdf, "application/pdf") | {SIGNATURE_HEADER: "md5=abc"}
    assert _post(client, pdf, headers).status_code == 401


def test_a_signature_older_than_the_window_is_refused_with_401(
    client: TestClient, pdf: bytes
) -> None:
    headers = signed_headers(SECRET, pdf, "application/pdf", timestamp=time.time() - 301)
    response = _post(client, pdf, headers)
    assert (response.status_code, response.json()["error"]) == (401, "stale_timestamp")


def test_a_signature_from_the_future_beyond_the_window_is_refused_with_401(
    client: TestClient, pdf: bytes
) -> None:
    headers = signed_headers(SECRET, pdf, "application/pdf", timestamp=time.time() + 301)
    assert _post(client, pdf, headers).status_code == 401


def test_the_same_signed_request_sent_again_is_a_replay_refused_with_409(
    client: TestClient, emitted: CountingEmitter, pdf: bytes
) -> None:
    headers = signed_headers(SECRET, pdf, "application/pdf")
    assert _post(client, pdf, headers).status_code == 202
    response = _post(client, pdf, headers)
    assert (response.status_code, response.json()["error"]) == (409, "replayed")
    assert len(emitted.uploads) == 1


def test_a_declared_length_over_the_limit_is_refused_with_413(
    client: TestClient, settings: WebhookSettings
) -> None:
    body = b"%PDF" + b"0" * LIMIT
    response = _post(client, body, signed_headers(SECRET, body, "application/pdf"))
    assert (response.status_code, response.json()["error"]) == (413, "too_large")
    assert _uploads(settings) == []


def test_an_undeclared_oversized_stream_is_cut_off_at_the_limit(
    settings: WebhookSettings, emitted: CountingEmitter
) -> None:
    """Chunked upload without Content-Length: reading stops at the first chunk past the limit."""
    chunk, chunks = b"x" * 64_000, 100  # 6.4 MB offered against a 200 kB limit
    headers = signed_headers(SECRET, chunk * chunks, "application/pdf")
    consumed: list[int] = []
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        consumed.append(len(chunk))
        return {"type": "http.request", "body": chunk, "more_body": len(consumed) < chunks}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/ingest/invoice",
        "raw_path": b"/v1/ingest/invoice",
        "query_string": b"",
        "root_path": "",
        "scheme": "http",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 5000),
        "http_version": "1.1",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    asyncio.run(create_app(settings, emit=emitted)(scope, receive, send))
    assert sent[0]["status"] == 413
    assert sum(consumed) <= LIMIT + len(chunk)
    assert _uploads(settings) == [] and emitted.uploads == []


def test_a_content_type_the_scenario_cannot_take_is_refused_with_415(
    client: TestClient, emitted: CountingEmitter
) -> None:
    body = b"just some text"
    response = _post(client, body, signed_headers(SECRET, body, "text/plain"))
    assert (response.status_code, response.json()["error"]) == (415, "unsupported_media_type")
    audio_to_invoice = _post(client, body, signed_headers(SECRET, body, "audio/wav"))
    assert audio_to_invoice.status_code == 415
    assert emitted.uploads == []


def test_a_json_body_without_a_uri_is_refused_with_400(client: TestClient) -> None:
    for body in (b"{not json", b'{"url": "s3://b/k"}', b"[1, 2]"):
        response = _post(client, body, signed_headers(SECRET, body, "application/json"))
        assert (response.status_code, response.json()["error"]) == (400, "malformed"), body


def test_an_empty_body_is_refused_with_400(client: TestClient) -> None:
    response = _post(client, b"", signed_headers(SECRET, b"", "application/pdf"))
    assert (response.status_code, response.json()["error"]) == (400, "empty")


def test_an_unknown_scenario_is_refused_with_404(client: TestClient, pdf: bytes) -> None:
    headers = signed_headers(SECRET, pdf, "application/pdf")
    assert _post(client, pdf, headers, scenario="payroll").status_code == 404


def test_the_same_bytes_twice_give_the_same_hash_one_object_and_one_event(
    client: TestClient, settings: WebhookSettings, emitted: CountingEmitter, pdf: bytes
) -> None:
    first = _post(client, pdf, signed_headers(SECRET, pdf, "application/pdf"))
    second = _post(
        client, pdf, signed_headers(SECRET, pdf, "application/pdf", timestamp=time.time() + 1)
    )
    assert (first.status_code, second.status_code) == (202, 200)
    assert first.json()["sha256"] == second.json()["sha256"]
    assert first.json()["uri"] == second.json()["uri"]
    assert second.json()["status"]["scenarios"]["invoice"]["status"] == "received"
    assert len(_uploads(settings)) == 1 and len(emitted.uploads) == 1


def test_the_same_bytes_for_another_scenario_are_announced_for_that_scenario(
    client: TestClient, emitted: CountingEmitter, pdf: bytes
) -> None:
    assert _post(client, pdf, signed_headers(SECRET, pdf, "application/pdf")).status_code == 202
    headers = signed_headers(SECRET, pdf, "application/pdf", timestamp=time.time() + 1)
    assert _post(client, pdf, headers, scenario="image").status_code == 202
    assert [u.scenario.value for u in emitted.uploads] == ["invoice", "image"]


def test_a_uri_body_is_fetched_and_stored_by_the_hash_of_its_bytes(
    tmp_path: Path, emitted: CountingEmitter, pdf: bytes
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.pdf").write_bytes(pdf)
    settings = WebhookSettings(
        storage=str(tmp_path / "hook"), secret=SECRET, allowed_uri_prefixes=(str(inbox),)
    )
    body = json.dumps({"uri": str(inbox / "a.pdf")}).encode()
    with TestClient(create_app(settings, emit=emitted)) as client:
        response = _post(client, body, signed_headers(SECRET, body, "application/json"))
    assert response.status_code == 202
    assert response.json()["sha256"] == hashlib.sha256(pdf).hexdigest()
    assert Path(response.json()["uri"]).read_bytes() == pdf
    assert emitted.uploads[0].source == str(inbox / "a.pdf")


def test_a_uri_outside_the_allowed_prefixes_is_refused_with_403(
    client: TestClient, emitted: CountingEmitter
) -> None:
    body = json.dumps({"uri": "/etc/passwd"}).encode()
    response = _post(client, body, signed_headers(SECRET, body, "application/json"))
    assert (response.status_code, response.json()["error"]) == (403, "uri_not_allowed")
    assert emitted.uploads == []


def test_a_uri_that_does_not_exist_is_refused_with_400(tmp_path: Path) -> None:
    settings = WebhookSettings(
        storage=str(tmp_path / "hook"), secret=SECRET, allowed_uri_prefixes=(str(tmp_path),)
    )
    body = json.dumps({"uri": str(tmp_path / "missing.pdf")}).encode()
    with TestClient(create_app(settings, emit=CountingEmitter())) as client:
        response = _post(client, body, signed_headers(SECRET, body, "application/json"))
    assert (response.status_code, response.json()["error"]) == (400, "not_found")


def test_status_shows_received_then_the_outputs_the_flow_wrote(
    client: TestClient, settings: WebhookSettings, pdf: bytes
) -> None:
    accepted = _post(client, pdf, signed_headers(SECRET, pdf, "application/pdf")).json()
    sha256 = accepted["sha256"]
    before = client.get(accepted["status_url"]).json()
    assert before["scenarios"]["invoice"] | {"event_id": None} == {
        "event_id": None,
        "status": "received",
        "error": None,
        "outputs": [],
    }
    out = Path(settings.outputs_root()) / "invoice"
    out.mkdir(parents=True)
    (out / f"{sha256}.json").write_text("{}")
    line = {"uri": accepted["uri"], "sha256": sha256, "status": "ok", "error": None}
    (out / "manifest.jsonl").write_text(json.dumps(line) + "\n")
    after = client.get(accepted["status_url"]).json()["scenarios"]["invoice"]
    assert after["status"] == "ok"
    assert after["outputs"] == [str(out / f"{sha256}.json")]


def test_status_of_an_unknown_or_malformed_hash_is_refused(client: TestClient) -> None:
    assert client.get(f"/v1/status/{'0' * 64}").status_code == 404
    assert client.get("/v1/status/not-a-hash").status_code == 400


def test_healthz_answers_ok_when_storage_is_reachable(client: TestClient) -> None:
    response = client.get("/healthz")
    assert (response.status_code, response.json()["status"]) == (200, "ok")


def test_the_webhook_command_refuses_to_start_without_a_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from mmflow.cli.app import app

    monkeypatch.delenv("MMFLOW_WEBHOOK_SECRET", raising=False)
    result = CliRunner().invoke(app, ["webhook", "--storage", str(tmp_path)])
    assert result.exit_code == 2
    assert "MMFLOW_WEBHOOK_SECRET" in result.output


def test_an_emitter_that_fails_gives_503_and_a_retry_announces_it(
    settings: WebhookSettings, pdf: bytes
) -> None:
    calls: list[str] = []

    def flaky(upload: Upload) -> str:
        calls.append(upload.sha256)
        if len(calls) == 1:
            raise RuntimeError("Prefect API unreachable")
        return "event-2"

    with TestClient(create_app(settings, emit=flaky)) as client:
        first = _post(client, pdf, signed_headers(SECRET, pdf, "application/pdf"))
        headers = signed_headers(SECRET, pdf, "application/pdf", timestamp=time.time() + 1)
        retry = _post(client, pdf, headers)
    assert (first.status_code, retry.status_code) == (503, 202)
    assert retry.json()["event_id"] == "event-2" and len(calls) == 2


def test_two_hundred_concurrent_uploads_are_each_stored_and_announced_once(
    settings: WebhookSettings, emitted: CountingEmitter
) -> None:
    bodies = distinct_bodies(200, 20_000)
    with serving(create_app(settings, emit=emitted)) as url:
        result = run_load(url, SECRET, bodies, threads=16)
    expected = {hashlib.sha256(b).hexdigest() for b in bodies}
    print(  # the figures the issue asks for; not asserted (no timing assertions in tests)
        f"\n200 uploads: p50 {result.percentile(50) * 1000:.1f} ms, "
        f"p95 {result.percentile(95) * 1000:.1f} ms to 202"
    )
    assert dict(result.statuses) == {202: 200}
    assert {p.name for p in _uploads(settings)} == expected
    assert sorted(u.sha256 for u in emitted.uploads) == sorted(expected)


def test_the_same_bytes_sent_concurrently_are_announced_exactly_once(
    settings: WebhookSettings, emitted: CountingEmitter, pdf: bytes
) -> None:
    statuses: list[int] = []
    with serving(create_app(settings, emit=emitted)) as url, httpx.Client(base_url=url) as http:

        def send(offset: int) -> None:
            headers = signed_headers(SECRET, pdf, "application/pdf", time.time() + offset)
            statuses.append(
                http.post("/v1/ingest/invoice", content=pdf, headers=headers).status_code
            )

        with ThreadPoolExecutor(max_workers=10) as pool:
            list(pool.map(send, range(20)))  # 20 distinct signatures over the same bytes
    assert sorted(statuses) == [200] * 19 + [202]
    assert len(emitted.uploads) == 1 and len(_uploads(settings)) == 1


def test_a_timestamp_that_is_not_whole_seconds_is_refused_with_401(
    client: TestClient, pdf: bytes
) -> None:
    stamp = f"{time.time():.3f}"
    headers = {
        "Content-Type": "application/pdf",
        TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: sign(SECRET, stamp, pdf),
    }
    assert _post(client, pdf, headers).status_code == 401


@pytest.mark.slow
def test_a_real_upload_event_reaches_the_prefect_server(
    prefect_server: str, settings: WebhookSettings, pdf: bytes
) -> None:
    from prefect import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    with TestClient(create_app(settings)) as client:
        response = _post(client, pdf, signed_headers(SECRET, pdf, "application/pdf"))
    assert response.status_code == 202
    sha256 = response.json()["sha256"]

    async def read() -> list[Any]:
        query = EventFilter(
            event=EventNameFilter(name=[EVENT_NAME]),
            resource=EventResourceFilter(id=[f"mmflow.upload.{sha256}"]),
        )
        async with get_client() as prefect:
            for _ in range(120):  # the server persists events in batches
                page = await prefect.read_events(filter=query, limit=10)
                if page.events:
                    return list(page.events)
                await asyncio.sleep(0.5)
        return []

    events = asyncio.run(read())
    assert len(events) == 1
    assert events[0].resource["mmflow.scenario"] == "invoice"
    assert events[0].resource["mmflow.uri"] == response.json()["uri"]
    assert events[0].payload["sha256"] == sha256


@flow(name="mmflow-webhook-probe")
def webhook_probe(inputs: list[str], out: str) -> None:
    """Stands in for a scenario's flow: only its triggered run's parameters are checked."""


@pytest.mark.slow
def test_an_upload_creates_one_flow_run_of_the_triggered_deployment_with_its_uri(
    prefect_server: str, settings: WebhookSettings, pdf: bytes
) -> None:
    from prefect import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    deployment = webhook_probe.to_deployment(
        name="probe", triggers=[upload_trigger(Scenario.MEETING)]
    )
    assert isinstance(deployment, RunnerDeployment)  # to_deployment is sync outside a loop
    deployment_id = deployment.apply()
    body = pdf + b"probe"  # bytes no other test uploads
    with TestClient(create_app(settings)) as client:
        response = _post(
            client, body, signed_headers(SECRET, body, "audio/wav"), scenario="meeting"
        )
    assert response.status_code == 202

    async def runs() -> list[Any]:
        query = DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        async with get_client() as prefect:
            for _ in range(240):  # the automation fires after the server has the event
                found = await prefect.read_flow_runs(deployment_filter=query)
                if found:
                    await asyncio.sleep(2)  # a second run, if any, would show by now
                    return list(await prefect.read_flow_runs(deployment_filter=query))
                await asyncio.sleep(0.5)
        return []

    created = asyncio.run(runs())
    assert [r.parameters for r in created] == [
        {"inputs": [response.json()["uri"]], "out": f"{settings.outputs_root()}/meeting"}
    ]
