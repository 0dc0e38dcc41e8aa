"""Per-input traces on the manifest line: the keys issue 14 lists, the run's tenant and feature,
the model call's tokens, and nothing of the input's content. Real Prefect runs of the image
flow, the OpenAI SDK driven against the local wire-format server (tests/fakeproviders.py)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from mmflow.blocks.providers import OpenAIProvider
from mmflow.flows.image import image_flow
from mmflow.flows.runs import RunSettings
from mmflow.tasks.image import ImageTask
from tests.fakeproviders import OPENAI_CHAT, FakeServer, Recorded, Reply, openai_chat, saved
from tests.imagesamples import chart_image, png

pytestmark = pytest.mark.slow

TRACE_KEYS = {
    "trace_id",
    "tenant",
    "feature",
    "scenario",
    "route",
    "run_id",
    "model",
    "image_count",
    "image_hashes",
    "image_tokens",
    "prompt_tokens",
    "output_tokens",
    "latency_ms",
    "cache_hit",
    "fallback_triggered",
    "error_type",
}
DESCRIPTION = "A bar chart of regional sales, secret-marker-7731."


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    (folder / "chart-a.png").write_bytes(png(chart_image(0, engine="pillow")))
    (folder / "empty.png").write_bytes(b"")
    return folder


@pytest.fixture
def server() -> Iterator[FakeServer]:
    def answer(req: Recorded) -> Reply:
        schema = req.json()["response_format"]["json_schema"]["name"]
        assert schema == "Description"
        return openai_chat(
            json.dumps({"description": DESCRIPTION, "objects": ["bars"]}),
            prompt_tokens=321,
            completion_tokens=45,
        )

    with FakeServer() as fake:
        fake.on("POST", OPENAI_CHAT, answer)
        yield fake


@pytest.fixture(autouse=True)
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    monkeypatch.setenv("MMFLOW_LEDGER_URL", url)
    return url


def manifest(out: Path) -> dict[str, dict[str, object]]:
    lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    return {Path(str(line["uri"])).name: line for line in lines}


def sent_image_hash(call: Recorded) -> str:
    """sha256 of the image bytes inside the request's data URL."""
    import base64

    for message in call.json()["messages"]:
        for part in message["content"] if isinstance(message["content"], list) else []:
            if part.get("type") == "image_url":
                data = part["image_url"]["url"].split(",", 1)[1]
                return hashlib.sha256(base64.b64decode(data)).hexdigest()
    raise AssertionError("no image in the request")


def test_every_manifest_line_carries_a_trace_with_the_tenant_and_the_model_call(
    prefect_server: str,
    inputs: Path,
    tmp_path: Path,
    server: FakeServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "out"
    monkeypatch.setenv("MMFLOW_METRICS_FILE", str(tmp_path / "metrics" / "mmflow.prom"))
    image_flow(
        inputs=[str(inputs)],
        out=str(out),
        task=ImageTask.DESCRIBE,
        provider=saved(OpenAIProvider(api_key="sk-test", base_url=f"{server.url}/v1")),
        max_usd=Decimal("1"),
        run=RunSettings(cache=False, tenant="acme", feature="alt-text"),
    )
    lines = manifest(out)
    chart, empty = lines["chart-a.png"]["trace"], lines["empty.png"]["trace"]
    assert isinstance(chart, dict) and isinstance(empty, dict)
    assert set(chart) == TRACE_KEYS and set(empty) == TRACE_KEYS
    (call,) = server.sent(OPENAI_CHAT)
    assert chart["tenant"] == "acme" and chart["feature"] == "alt-text"
    assert chart["scenario"] == "image" and chart["route"] == "vision"
    assert chart["model"] == "gpt-4o"
    assert chart["image_count"] == 1 and chart["image_hashes"] == [sent_image_hash(call)]
    assert chart["image_tokens"] == 85  # one low-detail tile, as the plan estimated
    assert (chart["prompt_tokens"], chart["output_tokens"]) == (321, 45)
    assert chart["cache_hit"] is False and chart["fallback_triggered"] is False
    assert chart["error_type"] is None and chart["latency_ms"] > 0
    assert len(str(chart["trace_id"])) == 32 and chart["trace_id"] != empty["trace_id"]
    assert chart["run_id"] == empty["run_id"]
    # a rejected input: its labels and ending, no model fields
    assert empty["tenant"] == "acme" and empty["error_type"] == "empty"
    for key in ("model", "image_count", "image_hashes", "image_tokens", "prompt_tokens"):
        assert empty[key] is None, key
    # never the content: not the model's answer, not the image
    text = (out / "manifest.jsonl").read_text()
    assert "secret-marker-7731" not in text and "base64" not in text
    # the run's metrics, written as a textfile when it ended
    written = (tmp_path / "metrics" / "mmflow.prom").read_text()
    assert 'mmflow_model_tokens_total{feature="alt-text",kind="output",model="gpt-4o"' in written
    # each alert condition judged over the run, as a Prefect event
    events = alert_events(prefect_server, str(chart["run_id"]))
    assert events["cache_hit_rate"] == "mmflow.alert.firing"  # nothing came from cache
    assert events["error_rate"] == "mmflow.alert.ok"  # a rejection is not an error


def alert_events(api: str, run_id: str) -> dict[str, str]:
    """The run's `mmflow.alert.*` events by rule, read back from the Prefect server."""
    import time

    import httpx

    found: dict[str, str] = {}
    for _ in range(60):  # events reach the server through a background worker
        answer = httpx.post(
            f"{api}/events/filter",
            json={"filter": {"event": {"prefix": ["mmflow.alert."]}}, "limit": 50},
        )
        answer.raise_for_status()
        for event in answer.json()["events"]:
            if event["payload"].get("run_id") == run_id:
                found[event["payload"]["rule"]] = event["event"]
        if {"cache_hit_rate", "error_rate"} <= set(found):
            return found
        time.sleep(0.5)
    return found


def test_a_refused_call_shows_as_a_fallback_with_its_error_type(
    prefect_server: str, inputs: Path, tmp_path: Path, server: FakeServer
) -> None:
    out = tmp_path / "out"
    image_flow(
        inputs=[str(inputs / "chart-a.png")],
        out=str(out),
        task=ImageTask.DESCRIBE,
        provider=saved(OpenAIProvider(api_key="sk-test", base_url=f"{server.url}/v1")),
        max_usd_per_request=Decimal("0.000001"),
        run=RunSettings(cache=False),
    )
    assert server.sent(OPENAI_CHAT) == []
    trace = manifest(out)["chart-a.png"]["trace"]
    assert isinstance(trace, dict)
    assert trace["tenant"] is None and trace["route"] == "ocr"
    assert trace["fallback_triggered"] is True and trace["error_type"] == "budget_exceeded"
    assert trace["prompt_tokens"] == 0 and trace["output_tokens"] == 0


def test_cli_labels_the_run_with_tenant_and_feature(
    prefect_server: str, inputs: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from mmflow.cli.app import app

    args = ["run", "image", str(inputs / "empty.png"), "--out", str(tmp_path)]
    result = CliRunner().invoke(app, [*args, "--tenant", "globex", "--feature", "ocr"])
    assert result.exit_code == 0, result.output
    trace = manifest(tmp_path)["empty.png"]["trace"]
    assert isinstance(trace, dict)
    assert (trace["tenant"], trace["feature"]) == ("globex", "ocr")
    refused = CliRunner().invoke(app, [*args, "--tenant", "no spaces/or slashes"])
    assert refused.exit_code != 0 and "tenant" in refused.output
