"""One registry drives every place that lists scenarios: a toy scenario (tests/toy_scenario: a
steps module and a flow module) plus one registry entry appears in `mmflow run`, the batch flow,
`mmflow serve`, the webhook and deployments/prefect.yaml, with no other file touched."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmflow.flows import registry
from tests.toy_scenario.flow import SCENARIO

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def toy() -> Iterator[registry.Scenario]:
    registry.register(SCENARIO)
    yield SCENARIO
    registry.unregister(SCENARIO.name)


@pytest.fixture()
def texts(tmp_path: Path) -> Path:
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "a.txt").write_text("one two three\n")
    (folder / "b.txt").write_text("Four five\n")
    (folder / "c.bin").write_bytes(b"\xff\xfe\x00 not text")
    return folder


def _manifest(out: Path) -> dict[str, dict[str, object]]:
    lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    return {Path(str(line["uri"])).name: line for line in lines}


def test_the_builtin_scenarios_are_registered() -> None:
    assert {"invoice", "meeting", "image"} <= set(registry.names())


def test_an_unknown_scenario_is_a_one_line_error_listing_them_all() -> None:
    from mmflow.cli.app import app

    result = CliRunner().invoke(app, ["run", "receipt", "x.pdf"])
    assert result.exit_code == 2
    assert "no scenario or command 'receipt'" in result.output
    assert "invoice" in result.output and "meeting" in result.output
    assert "Traceback" not in result.output


def test_a_registered_scenario_is_a_run_command(
    toy: registry.Scenario, texts: Path, tmp_path: Path, prefect_server: str
) -> None:
    from mmflow.cli.app import app

    listed = CliRunner().invoke(app, ["run", "--help"])
    assert "wordcount" in listed.output
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["run", "wordcount", str(texts), "--out", str(out), "--set", "lowercase=false"]
    )
    assert result.exit_code == 0, result.output
    manifest = _manifest(out)
    assert manifest["a.txt"]["status"] == "ok" and manifest["b.txt"]["status"] == "ok"
    assert manifest["c.bin"]["status"] == "rejected"
    assert json.loads((out / "a.json").read_text())["count"]["words"] == 3


def test_the_batch_flow_runs_a_registered_scenario(
    toy: registry.Scenario, texts: Path, tmp_path: Path, prefect_server: str
) -> None:
    from mmflow.flows.batch import batch_flow

    report = batch_flow(source=str(texts), out=str(tmp_path / "out"), scenario="wordcount")
    assert report.listed == 3 and report.processed == 3
    assert report.totals == {"words": 5}


def test_serve_builds_a_deployment_with_an_upload_trigger_for_it(
    toy: registry.Scenario, tmp_path: Path
) -> None:
    from mmflow.deployments.serve import build_deployments

    deployments = {d.name: d for d in build_deployments(str(tmp_path))}
    toy_deployment = deployments["wordcount"]
    assert toy_deployment.entrypoint == "tests.toy_scenario.flow.wordcount_flow"
    (trigger,) = toy_deployment.triggers
    assert trigger.match.model_dump()["mmflow.scenario"] == "wordcount"


def test_the_deployment_file_lists_it(toy: registry.Scenario) -> None:
    from mmflow.deployments.prefect_yaml import document

    names = [d["name"] for d in document()["deployments"]]
    assert "wordcount" in names


def test_the_committed_deployment_file_is_the_registry_s() -> None:
    """deployments/prefect.yaml is written from the registry: `make prefect-yaml`."""
    from mmflow.deployments.prefect_yaml import render

    assert (ROOT / "deployments" / "prefect.yaml").read_text() == render()


def test_the_webhook_takes_uploads_for_it(toy: registry.Scenario, tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from benchmarks.webhook_load import CountingSink
    from mmflow.deployments.webhook import WebhookSettings, create_app, signed_headers

    secret = b"0123456789abcdef" * 4
    settings = WebhookSettings(storage=str(tmp_path / "hook"), secret=secret)
    body, path = b"some words to count\n", "/v1/ingest/wordcount"
    with TestClient(create_app(settings, sink=CountingSink())) as client:
        accepted = client.post(
            path,
            content=body,
            headers=signed_headers(secret, "POST", path, body, content_type="text/plain"),
        )
        audio = b"RIFF" + bytes(40)  # another body: a repeated signature is a replay
        refused = client.post(
            path,
            content=audio,
            headers=signed_headers(secret, "POST", path, audio, content_type="audio/wav"),
        )
    assert accepted.status_code == 202, accepted.text
    assert refused.status_code == 415  # the scenario's own media types
