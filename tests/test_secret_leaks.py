"""The canary test of issue 15: no secret leaves the process, whatever the scenario.

Every scenario runs once through the real SDKs, flows, moto S3 server and Prefect server with
canary secrets that no data could contain by chance:

- provider API keys, sent to one local server that answers a wrong key as OpenAI-compatible
  servers do: a 401 whose body quotes the key (invoice vision, meeting transcription and notes,
  image through Anthropic's wire format);
- a provider block whose `base_url` carries a gateway's user and password, answered with success
  (image: results, `synthesis.json`, the `image-results` artifact and its event);
- an S3 endpoint URL with credentials (`AWS_ENDPOINT_URL`) for a batch over a bucket, its
  result cache and the webhook's storage;
- a Hugging Face token in the environment and in the meeting options, and the webhook secret.

Then OUT (local folders and the bucket), the cache folder, every captured log record and a dump
of the Prefect server's SQLite database are searched for each canary. Before issue 15 the echoed
keys were in the invoice, image and meeting outputs and the gateway password in the image
outputs, the artifact and its event.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from mmflow.blocks.providers import OpenAIProvider
from mmflow.blocks.providers.anthropic_provider import AnthropicProvider
from mmflow.deployments.signing import signed_headers
from mmflow.deployments.webhook import EVENT_NAME, WebhookSettings, create_app
from mmflow.flows.batch import batch_flow
from mmflow.flows.image import image_flow
from mmflow.flows.invoice import invoice_flow
from mmflow.flows.meeting import meeting_flow
from mmflow.flows.runs import RunReport, RunSettings
from mmflow.tasks.image import ImageTask
from mmflow.tasks.invoice import InvoiceOptions
from mmflow.tasks.meeting import MeetingOptions
from mmflow.tasks.redaction import MASK
from mmflow.tasks.samples import numbered_invoices, scanned_invoices, write_files
from tests.conversation import write_standup
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

pytestmark = pytest.mark.slow


def canary(kind: str) -> str:
    """A distinctive random string (letters and digits: every escaped form is the same)."""
    return f"canary{kind}{secrets.token_hex(12)}"


@dataclass
class Canaries:
    openai_key: str = field(default_factory=lambda: canary("openaikey"))
    anthropic_key: str = field(default_factory=lambda: canary("anthropickey"))
    gateway_key: str = field(default_factory=lambda: canary("gatewaykey"))
    gateway_password: str = field(default_factory=lambda: canary("gatewaypassword"))
    s3_password: str = field(default_factory=lambda: canary("s3password"))
    hf_token: str = field(default_factory=lambda: canary("hftoken"))
    webhook_secret: str = field(default_factory=lambda: canary("webhooksecret"))

    def forms(self) -> dict[str, str]:
        """Each canary, and the basic-auth header value the gateway credentials travel as."""
        values = dict(vars(self))
        basic = f"gw-user:{self.gateway_password}".encode()
        values["gateway basic auth"] = base64.b64encode(basic).decode()
        return values


# ---------------------------------------------------------------- the one local provider server


def credential(request: Recorded) -> str:
    """What the client authenticated with: a bearer key, the user:password of basic auth (a
    URL's userinfo), or Anthropic's x-api-key."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return value
    if scheme.lower() == "basic":
        return base64.b64decode(value).decode()
    return request.headers.get("x-api-key", "")


def _refused_with_the_key(request: Recorded) -> Reply:
    """What an OpenAI-compatible server answers a wrong key: the key, verbatim."""
    return openai_error(
        401,
        f"Incorrect API key provided: {credential(request)}. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        code="invalid_api_key",
    )


def _refused_as_anthropic(request: Recorded) -> Reply:
    return anthropic_error(401, "authentication_error", f"invalid x-api-key {credential(request)}")


def _chart_answer(request: Recorded) -> Reply:
    schema = request.json()["response_format"]["json_schema"]["name"]
    if schema == "Synthesis":
        body: dict[str, Any] = {"summary": "Two charts.", "common_points": [], "differences": []}
    else:
        body = {
            "chart_type": "bar",
            "title": "Sales",
            "x_label": None,
            "y_label": None,
            "series": [{"name": "sales", "labels": ["R1"], "values": [40.0]}],
        }
    return openai_chat(json.dumps(body))


def _chat(request: Recorded) -> Reply:
    """The gateway's basic credentials are right; any bearer key is wrong and echoed."""
    if request.headers.get("authorization", "").lower().startswith("basic "):
        return _chart_answer(request)
    return _refused_with_the_key(request)


def provider_server() -> FakeServer:
    server = FakeServer()
    server.on("POST", OPENAI_CHAT, _chat)
    server.on("POST", OPENAI_TRANSCRIBE, _refused_with_the_key)
    server.on("POST", ANTHROPIC_MESSAGES, _refused_as_anthropic)
    return server


# ---------------------------------------------------------------- what is searched


class _Captured(logging.Handler):
    """Every record as a handler would print it, exception text included."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextmanager
def captured_logs() -> Iterator[_Captured]:
    """The root, Prefect's and mmflow's loggers (Prefect's do not propagate), INFO and up."""
    handler = _Captured()
    loggers = [logging.getLogger(n) for n in ("", "prefect", "mmflow")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
    logging.getLogger("").setLevel(logging.INFO)
    logging.getLogger("mmflow").setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


def _files(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())


def _bucket_objects(fs: Any, bucket: str) -> str:
    return "\n".join(fs.cat_file(p).decode(errors="replace") for p in fs.find(bucket))


def _database_dump() -> str:
    """The test server's SQLite database as SQL text, every table."""
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL

    path = str(PREFECT_API_DATABASE_CONNECTION_URL.value()).split("///", 1)[1]
    with sqlite3.connect(path) as connection:
        return "\n".join(connection.iterdump())


def _eventually(read: Callable[[], str], *markers: str, wait_s: float = 60) -> str:
    """`read()` once it holds every marker (the server persists events and logs in batches)."""
    deadline = time.monotonic() + wait_s
    while True:
        text = read()
        if all(m in text for m in markers) or time.monotonic() > deadline:
            return text
        time.sleep(0.5)


# ---------------------------------------------------------------- the runs


@dataclass
class Places:
    """Where the canaries must not be, and what the runs did (so the search means something)."""

    canaries: Canaries
    out: Path
    cache: Path
    bucket: str
    logs: list[str]
    reports: dict[str, RunReport | Any]
    requests: list[Recorded]
    webhook: dict[str, Any]
    s3: Any

    def bucket_text(self) -> str:
        return _bucket_objects(self.s3, self.bucket)


def _charts(folder: Path) -> list[str]:
    folder.mkdir()
    paths = [folder / "chart-a.png", folder / "chart-b.png"]
    for index, path in enumerate(paths):
        path.write_bytes(png(chart_image(index, engine="pillow")))
    return [str(p) for p in paths]


def _webhook(storage: str, secret: bytes, state_dir: Path, pdf: bytes, bucket: str) -> Any:
    """One upload and one `{"uri"}` input, delivered as events to the Prefect server."""
    settings = WebhookSettings(
        storage=storage,
        secret=secret,
        state_dir=str(state_dir),
        allowed_uri_prefixes=(f"s3://{bucket}/inbox/",),
    )
    path = "/v1/ingest/invoice"
    answers: dict[str, Any] = {}
    with TestClient(create_app(settings)) as client:
        headers = signed_headers(secret, "POST", path, pdf, content_type="application/pdf")
        answers["upload"] = client.post(path, content=pdf, headers=headers).json()
        body = json.dumps({"uri": f"s3://{bucket}/inbox/invoice-10000.pdf"}).encode()
        headers = signed_headers(secret, "POST", path, body, content_type="application/json")
        answers["uri"] = client.post(path, content=body, headers=headers).json()
        missing = json.dumps({"uri": f"s3://{bucket}/inbox/missing.pdf"}).encode()
        headers = signed_headers(secret, "POST", path, missing, content_type="application/json")
        answers["missing"] = client.post(path, content=missing, headers=headers).json()
        for name in ("upload", "uri"):
            status = answers[name]["status_url"]

            def delivery(status: str = status) -> str:
                read = client.get(status, headers=signed_headers(secret, "GET", status))
                return json.dumps(read.json())

            answers[f"{name} status"] = json.loads(_eventually(delivery, '"delivered"', wait_s=30))
    return answers


def _upload(storage: str, secret: bytes, state_dir: Path) -> Any:
    """One upload to a receiver whose storage fails: its answer."""
    settings = WebhookSettings(storage=storage, secret=secret, state_dir=str(state_dir))
    path, pdf = "/v1/ingest/invoice", next(iter(numbered_invoices(1, start=30000)))[1]
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        headers = signed_headers(secret, "POST", path, pdf, content_type="application/pdf")
        answer = client.post(path, content=pdf, headers=headers)
        return {"status": answer.status_code, "body": answer.text}


@pytest.fixture(scope="module")
def places(
    prefect_server: str, moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Places]:
    import s3fs

    found = Canaries()
    root = tmp_path_factory.mktemp("canary")
    out, cache = root / "out", root / "cache"
    bucket = f"canary-{secrets.token_hex(4)}"
    host = moto_endpoint.removeprefix("http://")
    with (
        pytest.MonkeyPatch.context() as env,
        provider_server() as server,
        captured_logs() as logs,
    ):
        env.setenv("HF_TOKEN", found.hf_token)
        s3fs.S3FileSystem.clear_instance_cache()
        s3 = s3fs.S3FileSystem()
        s3.mkdir(bucket)
        for name, data in numbered_invoices(1):
            s3.pipe_file(f"{bucket}/inbox/{name}", data)
        openai = saved(
            OpenAIProvider(api_key=found.openai_key, base_url=f"{server.url}/v1", max_retries=0)
        )
        anthropic = saved(
            AnthropicProvider(api_key=found.anthropic_key, base_url=server.url, max_retries=0)
        )
        gateway = saved(
            OpenAIProvider(
                api_key=found.gateway_key,
                base_url=f"http://gw-user:{found.gateway_password}@"
                f"{server.url.removeprefix('http://')}/v1",
            )
        )
        run = RunSettings(cache_dir=str(cache))
        charts = _charts(root / "charts")
        scans = write_files(root / "scans", scanned_invoices(1))
        reports: dict[str, Any] = {
            "invoice": invoice_flow(
                inputs=[str(scans[0])],
                out=str(out / "invoice"),
                options=InvoiceOptions(),
                provider=openai,
                run=run,
            ),
            "image refused": image_flow(
                inputs=charts[:1],
                out=str(out / "image-refused"),
                task=ImageTask.CHART,
                provider=anthropic,
                run=run,
            ),
            "image gateway": image_flow(
                inputs=charts,
                out=str(out / "image-gateway"),
                task=ImageTask.CHART,
                provider=gateway,
                max_usd=Decimal("1"),
                run=run,
                return_state=True,
            ),
            "meeting": meeting_flow(
                inputs=[str(write_standup(root))],
                out=str(out / "meeting"),
                options=MeetingOptions(num_speakers=2, hf_token=SecretStr(found.hf_token)),
                provider=openai,
                run=run,
            ),
            "batch": batch_flow(
                source=f"s3://{bucket}/inbox/",
                out=f"s3://{bucket}/batch",
                scenario="invoice",
                run=RunSettings(cache_dir=f"s3://{bucket}/cache"),
            ),
        }
        # An S3 endpoint URL with credentials: aiobotocore refuses it, so the storage fails,
        # and its error (and the endpoint) goes into states, logs and the webhook's answer.
        env.setenv("AWS_ENDPOINT_URL", f"http://s3-user:{found.s3_password}@{host}")
        s3fs.S3FileSystem.clear_instance_cache()
        reports["batch, endpoint with credentials"] = batch_flow(
            source=f"s3://{bucket}/inbox/",
            out=str(out / "batch-endpoint-with-credentials"),
            scenario="invoice",
            run=run,
            return_state=True,
        )
        refused_storage = _upload(
            f"s3://{bucket}/hook-endpoint-with-credentials",
            found.webhook_secret.encode(),
            root / "webhook-state-refused",
        )
        env.setenv("AWS_ENDPOINT_URL", moto_endpoint)
        s3fs.S3FileSystem.clear_instance_cache()
        webhook = _webhook(
            f"s3://{bucket}/hook",
            found.webhook_secret.encode(),
            root / "webhook-state",
            next(iter(numbered_invoices(1, start=20000)))[1],
            bucket,
        )
        webhook["endpoint with credentials"] = refused_storage
        yield Places(
            found, out, cache, bucket, logs.lines, reports, list(server.requests), webhook, s3
        )
    s3fs.S3FileSystem.clear_instance_cache()


# ---------------------------------------------------------------- the runs did what they should


def test_every_scenario_met_the_echoing_server_the_gateway_s3_and_the_webhook(
    places: Places,
) -> None:
    sent = {(r.path, credential(r)) for r in places.requests}
    key, gateway = places.canaries.openai_key, f"gw-user:{places.canaries.gateway_password}"
    assert ("/v1/chat/completions", key) in sent  # invoice vision, meeting notes: refused
    assert ("/v1/audio/transcriptions", key) in sent  # meeting transcription: refused
    assert ("/v1/messages", places.canaries.anthropic_key) in sent  # image: refused
    assert sum(1 for r in places.requests if credential(r) == gateway) == 3  # 2 charts + synthesis
    assert all(r.status.value == "ok" for r in places.reports["batch"].inputs)
    for name in ("upload status", "uri status"):
        delivery = places.webhook[name]["scenarios"]["invoice"]["delivery"]
        assert delivery["state"] == "delivered"  # as an event to the Prefect server
    assert places.webhook["missing"]["error"] == "not_found"


def test_refusals_keep_their_reason_with_the_key_masked(places: Places) -> None:
    invoice = json.loads(Path(str(places.reports["invoice"].inputs[0].output)).read_text())
    vision = next(c for c in invoice["checks"] if c["name"] == "vision")
    assert f"Incorrect API key provided: {MASK}" in vision["detail"]
    image = json.loads(Path(str(places.reports["image refused"].inputs[0].output)).read_text())
    (failure,) = image["answer"]["failures"]
    assert "authentication_error" in failure["error"] and MASK in failure["error"]
    meeting = json.loads(Path(str(places.reports["meeting"].inputs[0].output)).read_text())
    assert f"Incorrect API key provided: {MASK}" in json.dumps(meeting)


def test_the_gateway_answers_are_kept_with_its_host_and_without_its_password(
    places: Places,
) -> None:
    for item in places.reports["image gateway"].result().inputs:
        result = json.loads(Path(str(item.output)).read_text())
        assert result["answer"]["source"].startswith("openai:gpt-4o@http://127.0.0.1:")
    synthesis = json.loads((places.out / "image-gateway" / "synthesis.json").read_text())
    assert synthesis["value"]["summary"] == "Two charts."


# ---------------------------------------------------------------- the search


def _assert_no_canary(text: str, place: str, canaries: Canaries) -> None:
    leaked = {
        name: [text[max(0, i - 300) : i + 100] for i in _occurrences(text, value)]
        for name, value in canaries.forms().items()
        if value in text
    }
    assert not leaked, f"canaries in {place}: {leaked}"


def _occurrences(text: str, value: str) -> list[int]:
    """Where `value` starts in `text` (the first three: enough to find the leak)."""
    found: list[int] = []
    start = text.find(value)
    while start >= 0 and len(found) < 3:
        found.append(start)
        start = text.find(value, start + 1)
    return found


def test_no_secret_in_the_output_folders_or_the_bucket(places: Places) -> None:
    local = _files(places.out)
    assert "manifest.jsonl" in str(list(places.out.rglob("manifest.jsonl")))
    _assert_no_canary(local, "OUT", places.canaries)
    remote = places.bucket_text()
    assert '"status":"ok"' in remote.replace(" ", "")  # the batch's manifest is there
    _assert_no_canary(remote, "the bucket", places.canaries)


def test_no_secret_in_the_cache_folder(places: Places) -> None:
    assert any(places.cache.rglob("*"))
    _assert_no_canary(_files(places.cache), "the cache folder", places.canaries)


def test_no_secret_in_any_log_record(places: Places) -> None:
    text = "\n".join(places.logs)
    assert "Finished in state" in text  # the flows' logs were captured
    _assert_no_canary(text, "the logs", places.canaries)


def test_no_secret_in_the_prefect_database(places: Places) -> None:
    for handler in logging.getLogger("prefect.flow_runs").handlers:
        handler.flush()  # Prefect's API log handler sends in batches
    dump = _eventually(_database_dump, EVENT_NAME, "image-results", "answer_source")
    assert EVENT_NAME in dump and "answer_source" in dump  # the webhook's and the artifact's events
    _assert_no_canary(dump, "the Prefect database", places.canaries)


def test_run_names_show_no_signature_or_password(prefect_server: str, tmp_path: Path) -> None:
    """A batch source or an input named by a signed or password-carrying URL (it is not
    fetched here: the folder does not exist, so the run fails at once)."""
    from prefect import get_client
    from prefect.utilities.asyncutils import run_coro_as_sync

    password, signature = canary("sourcepassword"), canary("signature")
    source = f"https://u:{password}@files.example/inbox/?X-Amz-Signature={signature}"
    state = batch_flow(
        source=source, out=str(tmp_path / "out"), scenario="invoice", return_state=True
    )

    async def name() -> str:
        async with get_client() as client:
            run = await client.read_flow_run(state.state_details.flow_run_id)
            return str(run.name)

    named = run_coro_as_sync(name())
    assert named == f"batch invoice https://{MASK}@files.example/inbox/?X-Amz-Signature={MASK}"
