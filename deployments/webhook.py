"""The webhook receiver: signed, size-limited, content-addressed uploads that start flows, durably.

Prefect's own webhooks are Cloud-only, so the open-source path is this small ASGI app
(`mmflow webhook`). A caller POSTs a file (raw body, its own Content-Type) or a JSON
`{"uri": "s3://…"}` to `/v1/ingest/{scenario}` and reads `GET /v1/status/{sha256}`, both signed
(deployments/signing.py; the scheme, status codes and guarantees for callers are in
docs/webhook.md):

    X-Mmflow-Timestamp:      <unix seconds>
    X-Mmflow-Content-SHA256: <hex SHA-256 of the body; of no bytes for a GET>
    X-Mmflow-Signature:      v2=<hex HMAC-SHA256(secret, METHOD\\nPATH\\nTIMESTAMP\\nBODY_SHA)>
    X-Mmflow-Filename:       <original file name, percent-encoded UTF-8>   (optional, unsigned)

Order of work, and why:
1. Refusals that need no body, so a forged request costs the receiver nothing: unknown scenario
   (404); missing, malformed, stale (401) or wrong (401) signature, checked over method, path,
   timestamp and the declared body hash; a signature already used (409); an unsupported
   Content-Type (415); no Content-Length (411) or one over the limit (413).
2. The body is streamed under a deadline (408), hashed, spooled, cut off past the limit (413);
   a hash other than the signed one is 401. Only then is the signature recorded as used, in the
   state file, so replay memory survives a restart.
3. A `{"uri"}` input is resolved and checked against the allow-list (deployments/uri_inputs.py;
   no URI inputs unless prefixes are configured) and fetched with the same limit.
4. The bytes are stored under `<storage>/uploads/<sha256>` (fsync'd and renamed into place
   locally), THEN one outbox entry per (bytes, scenario) is committed, THEN the answer is 202.
5. The delivery loop (deployments/delivery.py) sends the entry's event to the Prefect API with
   retries and reads it back before calling it delivered; pending events survive a restart of
   the receiver or of Prefect. The same bytes again answer with the existing entry (202 while
   its event is pending, 200 once delivered), never a second event.

The event a `DeploymentEventTrigger` matches (extend, never rename):

    event:    mmflow.upload.received
    id:       uuid5 of the stored URI and scenario: the same on every (re-)send
    resource: prefect.resource.id = mmflow.upload.<sha256>
              mmflow.scenario     = invoice | meeting | image
              mmflow.uri          = <storage>/uploads/<sha256>  (the stored copy: local or s3://)
              mmflow.sha256       = <sha256>
              mmflow.filename     = the sanitised original file name (the sha256 when none given)
    payload:  sha256, scenario, uri, size, media_type, source (the URI it was fetched from, or
              "body"; redacted), out (where the status endpoint looks for outputs:
              <outputs>/<scenario>), filename (as the label)

A trigger on the invoice deployment (prefect.yaml):

    triggers:
      - type: event
        expect: ["mmflow.upload.received"]
        match: {"prefect.resource.id": "mmflow.upload.*", "mmflow.scenario": "invoice"}
        parameters:
          inputs: ["{{ event.resource['mmflow.uri'] }}"]
          out: "{{ event.payload.out }}"

`upload_trigger(scenario)` builds the same trigger in Python (for `flow.serve` or
`to_deployment`). Because the stored object is named by its hash, the flow writes
`<out>/<sha256>.json`, which is what `GET /v1/status/{sha256}` looks for.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import sqlite3
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import ExitStack, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import fsspec
from pydantic import BaseModel, Field, SecretBytes, field_validator
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mmflow.deployments.delivery import (
    DeliveryLoop,
    DeliveryPolicy,
    EventSink,
    PrefectEventSink,
    failure_kind,
)
from mmflow.deployments.refused import Refused
from mmflow.deployments.signing import (
    CONTENT_SHA256_HEADER,
    EMPTY_SHA256,
    FILENAME_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignedRequest,
    read_signed_headers,
    secret_weakness,
    sign,
    signed_headers,
)
from mmflow.deployments.upload_names import filename_from_headers, filename_from_path
from mmflow.deployments.uri_inputs import SPOOL_IN_MEMORY, UriAllowList, fetch
from mmflow.deployments.webhook_state import Delivery, DeliveryState, WebhookState
from mmflow.flows import registry
from mmflow.tasks import redaction
from mmflow.tasks.models import ManifestEntry
from mmflow.tasks.persist import Manifest, join

if TYPE_CHECKING:
    from prefect.events import DeploymentEventTrigger

__all__ = [  # the signing helpers are re-exported: callers import them from here
    "CONTENT_SHA256_HEADER",
    "EVENT_NAME",
    "FILENAME_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Upload",
    "WebhookSettings",
    "create_app",
    "emit_upload_event",
    "sign",
    "signed_headers",
    "upload_event",
    "upload_trigger",
]

EVENT_NAME = "mmflow.upload.received"
EVENT_NAMESPACE = uuid.UUID("5d1f0a52-8c1e-4bb4-9b0e-6f1f3c0d2a71")  # for upload event ids
MB = 1024 * 1024
URI_BODY_LIMIT = 64 * 1024  # a JSON {"uri": …} body is tiny; anything bigger is not one
HEALTH_PROBE_TTL_S = 2.0  # probes of /healthz share one look at the Prefect API per 2 s
_STATUS_PREFIX = "/v1/status/"
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


# What a triggered run gets from the event: the stored upload, where to write, and the name the
# file was uploaded under (run and task-run names; the sha256 when the caller gave none).
UPLOAD_PARAMETERS: dict[str, Any] = {
    "inputs": ["{{ event.resource['mmflow.uri'] }}"],
    "out": "{{ event.payload.out }}",
    "names": ["{{ event.resource['mmflow.filename'] }}"],
}


class WeakSecret(Exception):
    """The configured secret could be guessed; raised as is, so no error echoes its value."""


def _is_local(storage: str) -> bool:
    return "://" not in storage or storage.startswith("file://")


class WebhookSettings(BaseModel):
    """How the receiver is run; the secret never appears in a repr, a log or an error."""

    storage: str = Field(description="Folder or s3:// prefix; uploads go under <storage>/uploads")
    secret: SecretBytes = Field(description="At least 32 random bytes, shared with callers")
    window_s: int = Field(default=300, gt=0, description="Accepted clock skew of a signature")
    max_bytes: int = Field(default=100 * MB, gt=0)
    outputs: str | None = Field(default=None, description="Default <storage>/outputs")
    allowed_uri_prefixes: tuple[str, ...] = Field(
        default=(),
        description="A JSON {'uri'} may only name inputs under these, compared after resolving "
        "'..' and symlinks; none by default (no URI inputs at all)",
    )
    state_dir: str | None = Field(
        default=None,
        description="Local folder of the outbox and replay memory (SQLite); default "
        "<storage>/state for local storage, ~/.local/state/mmflow/webhook/<id> otherwise",
    )
    body_timeout_s: float = Field(
        default=60.0, gt=0, description="A body not complete by then is refused with 408"
    )
    backlog_alert_s: float = Field(
        default=120.0, gt=0, description="/healthz says degraded when an event waits longer"
    )
    delivery: DeliveryPolicy = Field(default_factory=DeliveryPolicy)

    @field_validator("secret")
    @classmethod
    def _strong_secret(cls, secret: SecretBytes) -> SecretBytes:
        weakness = secret_weakness(secret.get_secret_value())
        if weakness:
            raise WeakSecret(weakness)
        return secret

    def outputs_root(self) -> str:
        return self.outputs or join(self.storage, "outputs")

    def state_root(self) -> str:
        """Where the SQLite state lives: always a local folder (see webhook_state.py)."""
        if self.state_dir:
            return self.state_dir
        if _is_local(self.storage):
            return str(Path(self.storage.removeprefix("file://")) / "state")
        base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
        storage_id = hashlib.sha256(self.storage.encode()).hexdigest()[:16]
        return str(base / "mmflow" / "webhook" / storage_id)


class Upload(BaseModel):
    """What the event announces: one stored input and the scenario to run on it."""

    sha256: str
    scenario: str  # a registered scenario's name (flows/registry.py)
    uri: str
    size: int
    media_type: str
    source: str
    out: str
    filename: str | None = Field(
        default=None, description="Sanitised original file name (deployments/upload_names.py)"
    )


def upload_event_id(upload: Upload) -> uuid.UUID:
    """The event's id: one per stored object and scenario, whoever sends it and how often."""
    return uuid.uuid5(EVENT_NAMESPACE, f"{upload.uri}\n{upload.scenario}")


def upload_event(upload: Upload, occurred: datetime | None = None) -> dict[str, Any]:
    """The `mmflow.upload.received` event for `upload`, as the JSON the Prefect API takes."""
    from prefect.events import Event

    name = upload.filename or upload.sha256
    event = Event(
        id=upload_event_id(upload),
        occurred=occurred or datetime.now(UTC),
        event=EVENT_NAME,
        resource={
            "prefect.resource.id": f"mmflow.upload.{upload.sha256}",
            "mmflow.scenario": upload.scenario,
            "mmflow.uri": upload.uri,
            "mmflow.sha256": upload.sha256,
            "mmflow.filename": name,
        },
        # `source` is the URI a caller named, which may carry credentials; never sent as is
        payload=upload.model_dump(mode="json")
        | {"filename": name, "source": redaction.redact(upload.source)},
    )
    return event.model_dump(mode="json")


def emit_upload_event(upload: Upload) -> str:
    """Send the event through Prefect's background events worker; returns the event id.

    Fire-and-forget (if the API is down the event is lost): for scripts and tests that start
    a run by hand. The receiver itself delivers through its outbox (deployments/delivery.py).
    """
    from prefect.events import Event, emit_event

    event = Event.model_validate(upload_event(upload))
    emitted = emit_event(
        event=event.event,
        resource=dict(event.resource),
        payload=event.payload,
        id=event.id,
        occurred=event.occurred,
    )
    if emitted is None:  # no Prefect API configured: nothing would ever start the flow
        raise RuntimeError("Prefect events are off; set PREFECT_API_URL to the Prefect server")
    return str(emitted.id)


def upload_trigger(scenario: str) -> DeploymentEventTrigger:
    """The trigger that starts `scenario`'s deployment for each upload (the YAML above).

    Seen working with `flow.serve(triggers=[...])` on a local server: the list parameter is
    rendered from the event (`inputs == ["<storage>/uploads/<sha256>"]`), 200 uploads gave 200
    flow runs, one per input.
    """
    from prefect.events import DeploymentEventTrigger

    name = str(scenario)  # a registry name
    return DeploymentEventTrigger(
        name=f"mmflow {name} upload",
        expect={EVENT_NAME},
        match={"prefect.resource.id": "mmflow.upload.*", "mmflow.scenario": name},
        parameters=UPLOAD_PARAMETERS,
    )


# ---------------------------------------------------------------- storage


class UploadStore:
    """Content-addressed objects under `<storage>/uploads/`."""

    def __init__(self, storage: str) -> None:
        self.root = join(storage, "uploads")
        self.fs, self._root_path = fsspec.core.url_to_fs(self.root)
        self._local = _is_local(storage)

    def object_uri(self, sha256: str) -> str:
        return join(self.root, sha256)

    def _path(self, name: str) -> str:
        return f"{self._root_path.rstrip('/')}/{name}"

    def put(self, sha256: str, spool: IO[bytes]) -> str:
        """Store the bytes once, durably; a second copy of the same bytes is not written again."""
        path = self._path(sha256)
        if not self.fs.exists(path):
            spool.seek(0)
            if self._local:
                _write_durably(Path(path), spool)
            else:  # object stores write whole objects atomically and durably
                with self.fs.open(path, "wb") as handle:
                    while chunk := spool.read(MB):
                        handle.write(chunk)
        return self.object_uri(sha256)

    def exists(self, sha256: str) -> bool:
        return bool(self.fs.exists(self._path(sha256)))

    def check(self) -> None:
        """Raises OSError when the storage cannot be reached or created."""
        self.fs.makedirs(self._root_path, exist_ok=True)


def _write_durably(path: Path, spool: IO[bytes]) -> None:
    """Write aside, fsync, rename, fsync the folder: a 202 is never answered for lost bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.partial-{uuid.uuid4().hex}")
    try:
        with open(partial, "wb") as handle:
            while chunk := spool.read(MB):
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _outputs_status(sha256: str, scenario: str, out: str, waiting: str) -> dict[str, Any]:
    """What the flow has written for this upload so far: its files and its manifest line."""
    fs, out_path = fsspec.core.url_to_fs(out)
    fs.invalidate_cache()  # outputs appear from another process: never trust a cached listing
    outputs = [
        join(out, f"{sha256}{suffix}")
        for suffix in registry.get(scenario).outputs
        if fs.exists(f"{out_path.rstrip('/')}/{sha256}{suffix}")
    ]
    entry: ManifestEntry | None = None
    if fs.exists(f"{out_path.rstrip('/')}/{Manifest.FILENAME}"):
        entry = next((e for e in Manifest(out).read() if e.sha256 == sha256), None)
    return {
        "status": entry.status.value if entry else ("done" if outputs else waiting),
        "error": entry.error.model_dump() if entry and entry.error else None,
        "outputs": outputs,
    }


def _iso(timestamp: float | None) -> str | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC).isoformat()


def _delivery_status(delivery: Delivery) -> dict[str, Any]:
    return {
        "state": delivery.state.value,
        "attempts": delivery.attempts,
        "last_error": delivery.last_error,
        "accepted_at": _iso(delivery.accepted_at),
        "delivered_at": _iso(delivery.delivered_at),
    }


def upload_status(deliveries: list[Delivery]) -> dict[str, Any]:
    """`GET /v1/status/{sha256}`: the upload, and per scenario its event's delivery and outputs.

    `status` per scenario is the flow's manifest status once it wrote one (ok, rejected,
    failed), `done` when outputs exist without one, else the delivery state (pending, sent,
    delivered).
    """
    first = deliveries[0].event["payload"]
    return {
        "sha256": first["sha256"],
        "uri": first["uri"],
        "size": first["size"],
        "media_type": first["media_type"],
        "filename": first.get("filename"),
        "received_at": _iso(deliveries[0].accepted_at),
        "scenarios": {
            d.scenario: {"event_id": str(d.event_id), "delivery": _delivery_status(d)}
            | _outputs_status(d.sha256, d.scenario, d.event["payload"]["out"], d.state.value)
            for d in deliveries
        },
    }


# ---------------------------------------------------------------- reading a request


def _media_type(headers: Mapping[str, str]) -> str:
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _check_length(headers: Mapping[str, str], limit: int) -> None:
    """A POST declares its size up front, so an oversized one is refused before it is read.

    A signed caller hashed the whole body before sending it, so it knows its length: a chunked
    body (no Content-Length, or Transfer-Encoding, which overrides it) is refused with 411
    instead of being read up to the limit.
    """
    declared = headers.get("content-length")
    if declared is None or "transfer-encoding" in headers:
        raise Refused(
            411,
            "length_required",
            f"send the body with a Content-Length header (not chunked); the limit is {limit} bytes",
        )
    if not declared.isascii() or not declared.isdigit():
        raise Refused(400, "bad_length", "Content-Length is not a number")
    if int(declared) > limit:
        raise Refused(413, "too_large", f"the body is {declared} bytes; the limit is {limit}")


class _Received:
    """The body, hashed while it streams in, spooled to disk past a few MB."""

    def __init__(self) -> None:
        # Entered into the request's ExitStack, which closes it on every path.
        self.spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
        self.sha = hashlib.sha256()
        self.size = 0

    def add(self, chunk: bytes, limit: int) -> None:
        self.size += len(chunk)
        if self.size > limit:
            raise Refused(413, "too_large", f"the body exceeds the limit of {limit} bytes")
        self.sha.update(chunk)
        self.spool.write(chunk)

    def read_all(self) -> bytes:
        self.spool.seek(0)
        return self.spool.read()


async def _read_body(
    request: Request, signed: SignedRequest, limit: int, timeout_s: float, spools: ExitStack
) -> _Received:
    """The body, complete within `timeout_s`, no larger than `limit`, with the signed hash."""
    body = _Received()
    spools.enter_context(body.spool)
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                body.add(chunk, limit)
    except TimeoutError as error:
        raise Refused(
            408, "body_timeout", f"the body did not arrive within {timeout_s:g} s; send it again"
        ) from error
    except ClientDisconnect as error:
        raise Refused(400, "disconnected", "the body ended before it was complete") from error
    if body.sha.hexdigest() != signed.body_sha256:
        raise Refused(
            401,
            "bad_signature",
            f"the body's SHA-256 is not the signed {CONTENT_SHA256_HEADER}; nothing was stored",
        )
    return body


def _uri_of(body: _Received) -> str:
    try:
        uri = json.loads(body.read_all())["uri"]
    except (ValueError, TypeError, KeyError) as error:
        message = 'a JSON body must be {"uri": "<s3://… or path>"}'
        raise Refused(400, "malformed", message) from error
    if not isinstance(uri, str):
        raise Refused(400, "malformed", 'a JSON body must be {"uri": "<s3://… or path>"}')
    return uri


# ---------------------------------------------------------------- the app


class _PrefectHealth:
    """The Prefect API's reachability for /healthz, looked at no more than once per TTL."""

    def __init__(self, sink: EventSink) -> None:
        self.sink = sink
        self._checked_at = float("-inf")
        self._error: str | None = None
        self._lock = asyncio.Lock()

    async def error(self) -> str | None:
        async with self._lock:
            if time.monotonic() - self._checked_at > HEALTH_PROBE_TTL_S:
                try:
                    await asyncio.wait_for(self.sink.probe(), timeout=5)
                    self._error = None
                except Exception as error:  # its text may name the API's host: not shown
                    self._error = failure_kind(error)
                self._checked_at = time.monotonic()
            return self._error


def create_app(
    settings: WebhookSettings,
    sink: EventSink | None = None,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The receiver; `sink` and `clock` are seams for tests (the Prefect API and time.time)."""
    redaction.install()  # its logs; the secret, wherever it might be echoed, is redacted too
    redaction.register_secret(settings.secret)
    # Imported now, not by the first upload's `upload_event`: the import takes seconds, and on
    # the event loop it would stall every connection (deadlines included) meanwhile.
    import prefect.events  # noqa: F401

    if _is_local(settings.storage):  # a worker elsewhere must find the stored path
        local = Path(settings.storage.removeprefix("file://")).resolve()
        settings = settings.model_copy(update={"storage": str(local)})
    store = UploadStore(settings.storage)
    state = WebhookState(settings.state_root())
    uris = UriAllowList(settings.allowed_uri_prefixes)
    events = sink or PrefectEventSink.from_settings()
    delivery = DeliveryLoop(state, events, settings.delivery)
    health = _PrefectHealth(events)
    secret = settings.secret.get_secret_value()

    async def authenticate(request: Request) -> SignedRequest:
        """Signature headers present, in time, matching this method and path, not used yet."""
        signed = read_signed_headers(request.headers, clock(), settings.window_s)
        if not signed.matches(secret, request.method, request.url.path):
            raise Refused(
                401,
                "bad_signature",
                "the signature does not match this request's method, path, timestamp and "
                "body hash (docs/webhook.md)",
            )
        if request.method == "POST" and await run_in_threadpool(
            state.signature_seen, signed.signature, clock()
        ):
            raise Refused(409, "replayed", "this signature was already used; sign again")
        return signed

    async def receive(request: Request, scenario: registry.Scenario, spools: ExitStack) -> Upload:
        """Authenticate, read, fetch and store the request's input; refusals raise."""
        signed = await authenticate(request)
        media = _media_type(request.headers)
        by_uri = media == "application/json"
        if not by_uri and not scenario.accepts(media):
            raise Refused(
                415,
                "unsupported_media_type",
                f"{media or 'no Content-Type'} is not accepted for {scenario.name}; send the "
                f"file as the raw body with one of {', '.join(scenario.media_types)}, "
                'or application/json {"uri": …}',
            )
        limit = URI_BODY_LIMIT if by_uri else settings.max_bytes
        _check_length(request.headers, limit)
        body = await _read_body(request, signed, limit, settings.body_timeout_s, spools)
        expires_at = signed.timestamp + settings.window_s
        if not await run_in_threadpool(state.first_use, signed.signature, expires_at, clock()):
            raise Refused(409, "replayed", "this signature was already used; sign again")
        if body.size == 0:
            raise Refused(400, "empty", "the body is empty; send the file or a JSON {'uri'}")
        filename = filename_from_headers(request.headers)
        spool, sha256, size, source = body.spool, body.sha.hexdigest(), body.size, "body"
        if by_uri:
            allowed = uris.resolve(_uri_of(body))
            spool, sha256, size = await run_in_threadpool(fetch, uris, allowed, settings.max_bytes)
            spools.enter_context(spool)
            source = allowed.uri
            filename = filename or filename_from_path(allowed.uri)
        stored = await run_in_threadpool(store.put, sha256, spool)
        return Upload(
            sha256=sha256,
            scenario=scenario.name,
            uri=stored,
            size=size,
            media_type="" if by_uri else media,
            source=source,
            out=join(settings.outputs_root(), scenario.name),
            filename=filename,
        )

    async def ingest(request: Request) -> JSONResponse:
        try:
            scenario = registry.get(str(request.path_params["scenario"]))
        except ValueError:
            names = ", ".join(registry.names())
            return Refused(404, "unknown_scenario", f"scenarios: {names}").response()
        with ExitStack() as spools:
            try:
                upload = await receive(request, scenario, spools)
            except Refused as refused:
                return refused.response()
        now = time.time()
        event = upload_event(upload, occurred=datetime.fromtimestamp(now, UTC))
        try:
            entry, added = await run_in_threadpool(
                state.accept, upload.sha256, scenario.name, upload_event_id(upload), event, now
            )
        except sqlite3.Error as error:  # the bytes are stored; a retry finds them
            return Refused(
                503, "outbox_unavailable", f"stored, but not queued for delivery ({error}); retry"
            ).response()
        answer = {
            "sha256": upload.sha256,
            "uri": upload.uri,
            "status_url": f"{_STATUS_PREFIX}{upload.sha256}",
            "event_id": str(entry.event_id),
            "filename": entry.event["payload"].get("filename"),
            "duplicate": not added,
            "delivery": entry.state.value,
        }
        if added:
            delivery.wake()
            return JSONResponse(answer, 202)
        status = await run_in_threadpool(upload_status, await _deliveries(upload.sha256))
        # 202 until the event is delivered: the run is not known to exist before that
        code = 200 if entry.state is DeliveryState.DELIVERED else 202
        return JSONResponse(answer | {"status": status}, code)

    async def _deliveries(sha256: str) -> list[Delivery]:
        found: list[Delivery] = await run_in_threadpool(state.for_upload, sha256)
        return found

    async def status(request: Request) -> JSONResponse:
        try:
            signed = await authenticate(request)
        except Refused as refused:
            return refused.response()
        if signed.body_sha256 != EMPTY_SHA256:
            return Refused(400, "malformed", "a status read has no body; sign b''").response()
        sha256 = str(request.path_params["sha256"]).lower()
        if not _SHA256_HEX.fullmatch(sha256):
            return Refused(400, "malformed", "a status id is a 64-digit hex sha256").response()
        deliveries = await _deliveries(sha256)
        if not deliveries:
            if await run_in_threadpool(store.exists, sha256):
                return JSONResponse({"sha256": sha256, "status": "stored"})
            return Refused(404, "unknown", f"no upload with sha256 {sha256}").response()
        return JSONResponse(await run_in_threadpool(upload_status, deliveries))

    async def healthz(request: Request) -> JSONResponse:
        """ok; degraded (uploads still accepted and kept, events wait); unavailable (503)."""
        try:
            await run_in_threadpool(store.check)
            await run_in_threadpool(state.check)
            backlog = await run_in_threadpool(state.backlog)
        except (OSError, sqlite3.Error) as error:  # the text would name paths: kind only
            return JSONResponse({"status": "unavailable", "error": failure_kind(error)}, 503)
        prefect_error = await health.error()
        oldest = backlog.oldest_accepted_at
        waited = None if oldest is None else time.time() - oldest
        late = waited is not None and waited > settings.backlog_alert_s
        return JSONResponse(
            {
                "status": "degraded" if prefect_error or late else "ok",
                "prefect": {"reachable": prefect_error is None, "error": prefect_error},
                "outbox": {
                    "pending": backlog.pending,
                    "sent": backlog.sent,
                    "oldest_waiting_s": None if waited is None else round(waited, 1),
                    "last_error": delivery.last_failure_kind,
                },
            }
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loop_task = asyncio.create_task(delivery.run_forever(), name="mmflow-webhook-delivery")
        try:
            yield
        finally:
            loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop_task
            await events.aclose()
            state.close()

    return Starlette(
        routes=[
            Route("/v1/ingest/{scenario}", ingest, methods=["POST"]),
            Route(_STATUS_PREFIX + "{sha256}", status, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
