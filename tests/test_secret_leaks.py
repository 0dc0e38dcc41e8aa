"""The two leaks issue 15 found, each through the real SDK, flow and Prefect server:

- a provider whose error body echoes the key it was sent (OpenAI-compatible servers do on 401)
  put the whole key into the invoice, image and meeting outputs (fallback reasons);
- a provider block whose `base_url` carries credentials (`http://user:password@gateway/v1`)
  put the password into image outputs, `synthesis.json`, the `image-results` artifact and the
  event Prefect makes of it.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from mmflow.blocks.providers import Budget, OpenAIProvider
from mmflow.blocks.providers.anthropic_provider import AnthropicProvider
from mmflow.flows.image import image_flow
from mmflow.flows.invoice import invoice_flow
from mmflow.flows.runs import RunSettings
from mmflow.tasks.audio.models import Segment
from mmflow.tasks.caching import Stamped
from mmflow.tasks.image import ImageTask
from mmflow.tasks.invoice import InvoiceOptions
from mmflow.tasks.meeting_provider import MeetingProvider, run_provider_notes
from mmflow.tasks.models import LineageStep
from mmflow.tasks.samples import make_samples
from tests.fakeproviders import (
    ANTHROPIC_MESSAGES,
    OPENAI_CHAT,
    OPENAI_TRANSCRIBE,
    FakeServer,
    Recorded,
    Reply,
    anthropic_error,
    openai_chat,
    openai_error,
    saved,
)
from tests.imagesamples import chart_image, png


def canary(kind: str) -> str:
    """A distinctive random string no test data could contain by chance."""
    return f"canary{kind}{secrets.token_hex(12)}"


def credential(request: Recorded) -> str:
    """What the client authenticated with: a bearer key, the user:password of basic auth (a
    URL's userinfo), or Anthropic's x-api-key."""
    authorization = request.headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer":
        return value
    if scheme.lower() == "basic":
        return base64.b64decode(value).decode()
    return request.headers.get("x-api-key", "")


def echo_401_openai(request: Recorded) -> Reply:
    """What an OpenAI-compatible server answers a wrong key: the key, verbatim."""
    return openai_error(
        401,
        f"Incorrect API key provided: {credential(request)}. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        code="invalid_api_key",
    )


def echo_401_anthropic(request: Recorded) -> Reply:
    return anthropic_error(401, "authentication_error", f"invalid x-api-key {credential(request)}")


def echoing_server() -> FakeServer:
    """Answers every model call with a 401 that quotes the credential it got."""
    server = FakeServer()
    for route in (OPENAI_CHAT, OPENAI_TRANSCRIBE):
        server.on("POST", route, echo_401_openai)
    server.on("POST", ANTHROPIC_MESSAGES, echo_401_anthropic)
    return server


@pytest.fixture
def echo() -> Iterator[FakeServer]:
    with echoing_server() as server:
        yield server


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def charts(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    folder = tmp_path_factory.mktemp("charts")
    paths = [folder / "chart-a.png", folder / "chart-b.png"]
    for index, path in enumerate(paths):
        path.write_bytes(png(chart_image(index, engine="pillow")))
    return [str(p) for p in paths]


def _every_file(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())


# ---------------------------------------------------------------- a key echoed on 401


@pytest.mark.slow
def test_a_key_echoed_on_401_is_not_in_the_invoice_result_or_manifest(
    prefect_server: str, echo: FakeServer, cache_dir: str, tmp_path: Path
) -> None:
    key = canary("invoicekey")
    scan = next(p for p in make_samples(tmp_path / "samples") if p.name.endswith("-scan.pdf"))
    out = tmp_path / "out"
    report = invoice_flow(
        inputs=[str(scan)],
        out=str(out),
        options=InvoiceOptions(),
        provider=saved(OpenAIProvider(api_key=key, base_url=f"{echo.url}/v1", max_retries=0)),
        run=RunSettings(cache_dir=cache_dir),
    )
    (document,) = report.inputs
    assert len(echo.sent(OPENAI_CHAT)) == 1  # the page went to the provider, which refused
    result = json.loads(Path(str(document.output)).read_text())
    vision = next(c for c in result["checks"] if c["name"] == "vision")
    assert "Incorrect API key provided" in vision["detail"]  # the reason is kept, redacted
    assert key not in _every_file(out)


@pytest.mark.slow
def test_a_key_echoed_on_401_is_not_in_the_image_result(
    prefect_server: str, echo: FakeServer, charts: list[str], cache_dir: str, tmp_path: Path
) -> None:
    key = canary("imagekey")
    block = AnthropicProvider(api_key=key, base_url=echo.url, max_retries=0)
    report = image_flow(
        inputs=charts[:1],
        out=str(tmp_path),
        task=ImageTask.CHART,
        provider=saved(block),
        run=RunSettings(cache_dir=cache_dir),
    )
    result = json.loads(Path(str(report.inputs[0].output)).read_text())
    (failure,) = result["answer"]["failures"]
    assert "authentication_error" in failure["error"] and "invalid x-api-key" in failure["error"]
    assert key not in _every_file(tmp_path)


def test_a_key_echoed_on_401_is_not_in_the_meeting_notes_fallback(echo: FakeServer) -> None:
    key = canary("meetingkey")
    provider = OpenAIProvider(api_key=key, base_url=f"{echo.url}/v1", max_retries=0)
    segments = Stamped(
        key="align-x",
        value=[Segment(start=0.0, end=2.0, text="We ship on Monday.", speaker="SPEAKER_00")],
        lineage=LineageStep(name="align", version=""),
    )
    notes, attempt = run_provider_notes(segments, MeetingProvider(provider, Budget()), "run")
    assert notes is None and attempt.used is False
    assert "Incorrect API key provided" in (attempt.fallback or "")
    assert key not in json.dumps(attempt.model_dump(mode="json"))


# ---------------------------------------------------------------- a password in the base URL


def _answer(request: Recorded) -> Reply:
    schema = request.json()["response_format"]["json_schema"]["name"]
    if schema == "Synthesis":
        body = {"summary": "Two charts.", "common_points": [], "differences": []}
    else:
        body = {
            "chart_type": "bar",
            "title": "Sales",
            "x_label": None,
            "y_label": None,
            "series": [{"name": "sales", "labels": ["R1"], "values": [40.0]}],
        }
    return openai_chat(json.dumps(body))


def _artifacts_and_events(flow_run_id: Any) -> tuple[list[Any], list[dict[str, Any]]]:
    """The run's table artifacts, and the artifact-collection events the server made of them."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from tests.prefect_runs import read_until

    async def artifacts() -> list[Any]:
        async with get_client() as client:
            found: list[Any] = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
                )
            )
            return found

    async def events() -> list[dict[str, Any]]:
        async with get_client() as client:
            answer = await client._client.post(
                "/events/filter",
                json={
                    "filter": {
                        "event": {"prefix": ["prefect.artifact-collection."]},
                        "related": {"id": [f"prefect.flow-run.{flow_run_id}"]},
                    },
                    "limit": 50,
                },
            )
            answer.raise_for_status()
            return list(answer.json()["events"])

    return read_until(artifacts, 1, 60), read_until(events, 1, 60)


@pytest.mark.slow
def test_a_password_in_the_base_url_is_not_in_image_results_synthesis_artifact_or_event(
    prefect_server: str, charts: list[str], cache_dir: str, tmp_path: Path
) -> None:
    password = canary("gatewaypassword")
    with FakeServer() as gateway:
        gateway.on("POST", OPENAI_CHAT, _answer)
        host = gateway.url.removeprefix("http://")
        block = OpenAIProvider(
            api_key=canary("gatewaykey"), base_url=f"http://gw-user:{password}@{host}/v1"
        )
        state = image_flow(
            inputs=charts,
            out=str(tmp_path),
            task=ImageTask.CHART,
            provider=saved(block),
            max_usd=Decimal("1"),
            run=RunSettings(cache_dir=cache_dir),
            return_state=True,
        )
        sent = gateway.sent(OPENAI_CHAT)
    report = state.result()
    assert len(sent) == 3  # two images and the synthesis, through the gateway's credentials
    assert credential(sent[0]) == f"gw-user:{password}"
    for item in report.inputs:
        result = json.loads(Path(str(item.output)).read_text())
        assert result["answer"]["source"].startswith("openai:gpt-4o@http://")
    synthesis = json.loads((tmp_path / "synthesis.json").read_text())
    assert synthesis["value"]["summary"] == "Two charts."
    assert password not in _every_file(tmp_path)
    artifacts, events = _artifacts_and_events(state.state_details.flow_run_id)
    table = next(a for a in artifacts if a.key == "image-results")
    assert "answer_source" in json.dumps(table.data)
    assert password not in json.dumps(table.data)
    assert events and all(password not in json.dumps(e) for e in events)
    assert any("answer_source" in json.dumps(e) for e in events)
