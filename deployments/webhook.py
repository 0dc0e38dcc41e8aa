"""The webhook receiver: authenticated, size-limited, content-addressed uploads that start flows.

Prefect's own webhooks are Cloud-only, so the open-source path is this small ASGI app
(`mmflow webhook`). A caller POSTs a file (raw body, its own Content-Type) or a JSON
`{"uri": "s3://…"}` to `/v1/ingest/{scenario}`, signed with HMAC-SHA256 over
`<timestamp>.<body>` in `X-Mmflow-Timestamp` / `X-Mmflow-Signature: sha256=<hex>`.

Order of work, and why:
1. Cheap refusals before reading the body: unknown scenario (404), missing or malformed
   signature headers or a timestamp outside the window (401), an unsupported Content-Type
   (415), a declared Content-Length over the limit (413).
2. The body is streamed, hashed and HMAC'd as it arrives; past the limit reading stops (413).
3. A wrong signature is 401; a signature already seen inside the window is a replay (409).
4. The bytes are stored under `<storage>/uploads/<sha256>` BEFORE anything else, so an input
   that was acknowledged can always be processed again.
5. One Prefect event per (bytes, scenario); a small record at `<storage>/uploads/<sha256>.json`
   makes the same bytes sent twice answer 200 with the existing status instead of a second
   event (and a second computation). The record is written after the event, so a crash in
   between re-emits on retry: at least once, and the flows' content-hash cache makes that cheap.

The event a `DeploymentEventTrigger` matches:

    event:    mmflow.upload.received
    resource: prefect.resource.id = mmflow.upload.<sha256>
              mmflow.scenario     = invoice | meeting | image
              mmflow.uri          = <storage>/uploads/<sha256>  (the stored copy: local or s3://)
              mmflow.sha256       = <sha256>
    payload:  sha256, scenario, uri, size, media_type, source (the URI it was fetched from, or
              "body"), out (where the status endpoint looks for outputs: <outputs>/<scenario>)

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
`<out>/<sha256>.json`, which is what `GET /v1/status/{sha256}` looks for. Replay memory is per
process: run one receiver process (several would each accept a replayed signature once).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import shutil
import tempfile
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from threading import Lock
from typing import IO, TYPE_CHECKING, Any

import fsspec
from pydantic import BaseModel, Field, SecretBytes
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mmflow.tasks.models import ManifestEntry
from mmflow.tasks.persist import Manifest, join, write_text

if TYPE_CHECKING:
    from prefect.events import DeploymentEventTrigger

EVENT_NAME = "mmflow.upload.received"
TIMESTAMP_HEADER = "X-Mmflow-Timestamp"
SIGNATURE_HEADER = "X-Mmflow-Signature"
MB = 1024 * 1024
URI_BODY_LIMIT = 64 * 1024  # a JSON {"uri": …} body is tiny; anything bigger is not one
_SIGNATURE = re.compile(r"sha256=([0-9a-f]{64})")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_DIGITS = re.compile(r"[0-9]{1,15}")  # ASCII only: str.isdigit() also accepts "²"
_SPOOL_IN_MEMORY = 8 * MB  # larger uploads spill to a temporary file, not RAM


class Scenario(StrEnum):
    INVOICE = "invoice"
    MEETING = "meeting"
    IMAGE = "image"


# Media types a raw upload may declare per scenario ("type/" = any subtype). Validation later
# sniffs the bytes anyway; this only refuses what is certainly the wrong kind of request.
ACCEPTED_MEDIA: dict[Scenario, tuple[str, ...]] = {
    Scenario.INVOICE: ("application/pdf", "image/", "application/octet-stream"),
    Scenario.MEETING: ("audio/", "video/", "application/octet-stream"),
    Scenario.IMAGE: ("image/", "application/pdf", "application/octet-stream"),
}

# Which output files a scenario writes per input (the `<stem>` is the upload's sha256).
OUTPUT_SUFFIXES: dict[Scenario, tuple[str, ...]] = {
    Scenario.INVOICE: (".json",),
    Scenario.MEETING: (".json", ".rttm", ".srt"),
    Scenario.IMAGE: (".json",),
}


class WebhookSettings(BaseModel):
    """How the receiver is run; the secret never appears in a repr or a log."""

    storage: str = Field(description="Folder or s3:// prefix; uploads go under <storage>/uploads")
    secret: SecretBytes
    window_s: int = Field(default=300, gt=0, description="Accepted clock skew of a signature")
    max_bytes: int = Field(default=100 * MB, gt=0)
    outputs: str | None = Field(default=None, description="Default <storage>/outputs")
    allowed_uri_prefixes: tuple[str, ...] = Field(
        default=("s3://",),
        description="A JSON {'uri'} may only name inputs under these (no server-local files "
        "unless a folder is listed here explicitly)",
    )

    def outputs_root(self) -> str:
        return self.outputs or join(self.storage, "outputs")


class Upload(BaseModel):
    """What the event announces: one stored input and the scenario to run on it."""

    sha256: str
    scenario: Scenario
    uri: str
    size: int
    media_type: str
    source: str
    out: str
    filename: str = ""  # the name the file was uploaded under, if the caller gave one


class UploadRecord(BaseModel):
    """`<storage>/uploads/<sha256>.json`: what was received, and the event sent per scenario."""

    sha256: str
    uri: str
    size: int
    media_type: str
    source: str
    received_at: datetime
    events: dict[str, str | None] = Field(default_factory=dict)


Emitter = Callable[[Upload], str | None]

# What a triggered run gets from the event: the stored upload, where to write, and the name the
# file was uploaded under (run and task-run names; empty when the caller gave none).
UPLOAD_PARAMETERS: dict[str, Any] = {
    "inputs": ["{{ event.resource['mmflow.uri'] }}"],
    "out": "{{ event.payload.out }}",
    "names": ["{{ event.payload.filename }}"],
}


def emit_upload_event(upload: Upload) -> str | None:
    """Send `mmflow.upload.received` to the Prefect API; returns the event id.

    `emit_event` queues the event for Prefect's background events worker, so the 202 means
    "stored and handed to the worker", not "the server has it"; a server that is down when the
    worker sends loses it (re-sending the same bytes then answers 200 without a new event; a
    caller who needs the run can watch `/v1/status/{sha256}`).
    """
    from prefect.events import emit_event

    event = emit_event(
        event=EVENT_NAME,
        resource={
            "prefect.resource.id": f"mmflow.upload.{upload.sha256}",
            "mmflow.scenario": upload.scenario.value,
            "mmflow.uri": upload.uri,
            "mmflow.sha256": upload.sha256,
        },
        payload=upload.model_dump(mode="json"),
    )
    if event is None:  # no Prefect API configured: nothing would ever start the flow
        raise RuntimeError("Prefect events are off; set PREFECT_API_URL to the Prefect server")
    return str(event.id)


def upload_trigger(scenario: str) -> DeploymentEventTrigger:
    """The trigger that starts `scenario`'s deployment for each upload (the YAML above).

    Seen working with `flow.serve(triggers=[...])` on a local server: the list parameter is
    rendered from the event (`inputs == ["<storage>/uploads/<sha256>"]`), 200 uploads gave 200
    flow runs, one per input.
    """
    from prefect.events import DeploymentEventTrigger

    name = str(scenario)  # a registry name (a StrEnum member is one too)
    return DeploymentEventTrigger(
        name=f"mmflow {name} upload",
        expect={EVENT_NAME},
        match={"prefect.resource.id": "mmflow.upload.*", "mmflow.scenario": name},
        parameters=UPLOAD_PARAMETERS,
    )


# ---------------------------------------------------------------- signing


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The `X-Mmflow-Signature` value for a body sent at `timestamp` (unix seconds)."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signed_headers(
    secret: bytes, body: bytes, content_type: str, timestamp: float | None = None
) -> dict[str, str]:
    """Headers a client sends with `body`: what tests, the load benchmark and callers use."""
    stamp = str(int(time.time() if timestamp is None else timestamp))
    return {
        "Content-Type": content_type,
        TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: sign(secret, stamp, body),
    }


class SeenSignatures:
    """Signatures accepted recently: a second use inside the window is a replay."""

    def __init__(self, window_s: int) -> None:
        self._keep_s = 2 * window_s  # a timestamp may be up to window_s ahead or behind
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = Lock()

    def first_use(self, signature: str, now: float) -> bool:
        with self._lock:
            while self._seen and next(iter(self._seen.values())) < now - self._keep_s:
                self._seen.popitem(last=False)
            if signature in self._seen:
                return False
            self._seen[signature] = now
            return True


# ---------------------------------------------------------------- storage


class UploadStore:
    """Content-addressed objects and their records under `<storage>/uploads/`."""

    def __init__(self, storage: str) -> None:
        self.root = join(storage, "uploads")
        self.fs, self._root_path = fsspec.core.url_to_fs(self.root)
        self._local = "://" not in storage or storage.startswith("file://")

    def object_uri(self, sha256: str) -> str:
        return join(self.root, sha256)

    def _path(self, name: str) -> str:
        return f"{self._root_path.rstrip('/')}/{name}"

    def put(self, sha256: str, spool: IO[bytes]) -> str:
        """Store the bytes once; a second copy of the same bytes is not written again."""
        path = self._path(sha256)
        if not self.fs.exists(path):
            spool.seek(0)
            if self._local:  # write aside and rename: a reader never sees half an upload
                self.fs.makedirs(self._root_path, exist_ok=True)
                partial = f"{path}.partial-{uuid.uuid4().hex}"
                with self.fs.open(partial, "wb") as handle:
                    shutil.copyfileobj(spool, handle)
                self.fs.mv(partial, path)
            else:  # object stores write whole objects atomically
                with self.fs.open(path, "wb") as handle:
                    shutil.copyfileobj(spool, handle)
        return self.object_uri(sha256)

    def exists(self, sha256: str) -> bool:
        return bool(self.fs.exists(self._path(sha256)))

    def read_record(self, sha256: str) -> UploadRecord | None:
        path = self._path(f"{sha256}.json")
        if not self.fs.exists(path):
            return None
        with self.fs.open(path, "r", encoding="utf-8") as handle:
            return UploadRecord.model_validate_json(handle.read())

    def write_record(self, record: UploadRecord) -> None:
        write_text(join(self.root, f"{record.sha256}.json"), record.model_dump_json(indent=2))

    def check(self) -> None:
        """Raises OSError when the storage cannot be reached or created."""
        self.fs.makedirs(self._root_path, exist_ok=True)


def _outputs_status(sha256: str, scenario: Scenario, out: str) -> dict[str, Any]:
    """What the flow has written for this upload so far: its files and its manifest line."""
    fs, out_path = fsspec.core.url_to_fs(out)
    fs.invalidate_cache()  # outputs appear from another process: never trust a cached listing
    outputs = [
        join(out, f"{sha256}{suffix}")
        for suffix in OUTPUT_SUFFIXES[scenario]
        if fs.exists(f"{out_path.rstrip('/')}/{sha256}{suffix}")
    ]
    entry: ManifestEntry | None = None
    if fs.exists(f"{out_path.rstrip('/')}/{Manifest.FILENAME}"):
        entry = next((e for e in Manifest(out).read() if e.sha256 == sha256), None)
    return {
        "status": entry.status.value if entry else ("done" if outputs else "received"),
        "error": entry.error.model_dump() if entry and entry.error else None,
        "outputs": outputs,
    }


# ---------------------------------------------------------------- the app


class Refused(Exception):
    """A request refused with an HTTP status and a message a caller can act on."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.code, "message": self.message}, self.status)


def _media_type(headers: Mapping[str, str]) -> str:
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _check_headers(headers: Mapping[str, str], now: float, window_s: int) -> str:
    """The signature to verify, once the headers are present, well-formed and in time."""
    stamp, signature = headers.get(TIMESTAMP_HEADER), headers.get(SIGNATURE_HEADER)
    if not stamp or not signature:
        raise Refused(
            401,
            "missing_signature",
            f"sign the request: {TIMESTAMP_HEADER} (unix seconds) and "
            f"{SIGNATURE_HEADER}: sha256=<hex HMAC-SHA256 of '<timestamp>.<body>'>",
        )
    if not _SIGNATURE.fullmatch(signature) or not _DIGITS.fullmatch(stamp):
        raise Refused(401, "bad_signature", "the signature headers are malformed")
    if abs(now - int(stamp)) > window_s:
        raise Refused(
            401,
            "stale_timestamp",
            f"the timestamp is more than {window_s} s from the receiver's clock; "
            "sign the request again with the current time",
        )
    return signature


def _check_length(headers: Mapping[str, str], limit: int) -> None:
    declared = headers.get("content-length")
    if declared is None:
        return
    if not _DIGITS.fullmatch(declared):
        raise Refused(400, "bad_length", "Content-Length is not a number")
    if int(declared) > limit:
        raise Refused(413, "too_large", f"the body is {declared} bytes; the limit is {limit}")


class _Received:
    """The body, hashed and HMAC'd while it streams in, spooled to disk past a few MB."""

    def __init__(self, secret: bytes, stamp: str) -> None:
        # Owned by the request handler, which closes it on every path.
        self.spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115
        self.mac = hmac.new(secret, stamp.encode() + b".", hashlib.sha256)
        self.sha = hashlib.sha256()
        self.size = 0

    def add(self, chunk: bytes, limit: int) -> None:
        self.size += len(chunk)
        if self.size > limit:
            raise Refused(413, "too_large", f"the body exceeds the limit of {limit} bytes")
        self.mac.update(chunk)
        self.sha.update(chunk)
        self.spool.write(chunk)

    def read_all(self) -> bytes:
        self.spool.seek(0)
        return self.spool.read()


def _fetch(uri: str, limit: int) -> tuple[IO[bytes], str, int]:
    """Copy the bytes at `uri` into a spool, hashing them; refuses past the limit."""
    try:
        fs, path = fsspec.core.url_to_fs(uri)
        size = fs.size(path)
        if size is not None and size > limit:
            raise Refused(413, "too_large", f"{uri} is {size} bytes; the limit is {limit}")
        # Returned to the request handler, which closes it; closed here if the copy fails.
        spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115
        sha, total = hashlib.sha256(), 0
        try:
            with fs.open(path, "rb") as handle:
                while chunk := handle.read(MB):
                    total += len(chunk)
                    if total > limit:
                        raise Refused(413, "too_large", f"{uri} exceeds the limit of {limit} bytes")
                    sha.update(chunk)
                    spool.write(chunk)
        except BaseException:
            spool.close()
            raise
    except (FileNotFoundError, IsADirectoryError) as error:
        raise Refused(400, "not_found", f"{uri} does not exist or is not a file") from error
    except ImportError as error:
        raise Refused(400, "unsupported_uri", f"{uri}: no storage driver ({error})") from error
    return spool, sha.hexdigest(), total


def create_app(
    settings: WebhookSettings,
    emit: Emitter = emit_upload_event,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The receiver; `emit` and `clock` are seams for tests (the real ones by default)."""
    if "://" not in settings.storage:  # a worker elsewhere must find the stored path
        settings = settings.model_copy(update={"storage": str(Path(settings.storage).resolve())})
    store = UploadStore(settings.storage)
    seen = SeenSignatures(settings.window_s)
    secret = settings.secret.get_secret_value()
    locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def outputs_for(scenario: str) -> str:
        return join(settings.outputs_root(), scenario)

    def status_of(record: UploadRecord) -> dict[str, Any]:
        return {
            "sha256": record.sha256,
            "uri": record.uri,
            "size": record.size,
            "media_type": record.media_type,
            "received_at": record.received_at.isoformat(),
            "scenarios": {
                name: {"event_id": event_id}
                | _outputs_status(record.sha256, Scenario(name), outputs_for(name))
                for name, event_id in record.events.items()
            },
        }

    async def receive(request: Request, scenario: Scenario) -> tuple[IO[bytes], str, int, str]:
        """Authenticate and read the request; returns (spool, sha256, size, source)."""
        signature = _check_headers(request.headers, clock(), settings.window_s)
        media = _media_type(request.headers)
        by_uri = media == "application/json"
        if not by_uri and not media.startswith(ACCEPTED_MEDIA[scenario]):
            raise Refused(
                415,
                "unsupported_media_type",
                f"{media or 'no Content-Type'} is not accepted for {scenario.value}; send the "
                f"file as the raw body with one of {', '.join(ACCEPTED_MEDIA[scenario])}, "
                'or application/json {"uri": …}',
            )
        limit = URI_BODY_LIMIT if by_uri else settings.max_bytes
        _check_length(request.headers, limit)
        body = _Received(secret, request.headers[TIMESTAMP_HEADER])
        try:
            async for chunk in request.stream():
                body.add(chunk, limit)
            return await _verified(body, signature, by_uri)
        except BaseException:
            body.spool.close()
            raise

    async def _verified(
        body: _Received, signature: str, by_uri: bool
    ) -> tuple[IO[bytes], str, int, str]:
        if not hmac.compare_digest(body.mac.hexdigest(), signature.removeprefix("sha256=")):
            raise Refused(401, "bad_signature", "the signature does not match the body")
        if not seen.first_use(signature, clock()):
            raise Refused(409, "replayed", "this signature was already used; sign again")
        if body.size == 0:
            raise Refused(400, "empty", "the body is empty; send the file or a JSON {'uri'}")
        if not by_uri:
            return body.spool, body.sha.hexdigest(), body.size, "body"
        try:
            uri = json.loads(body.read_all())["uri"]
        except (ValueError, TypeError, KeyError) as error:
            message = 'a JSON body must be {"uri": "<s3://… or path>"}'
            raise Refused(400, "malformed", message) from error
        body.spool.close()  # only the JSON; the input's own bytes come from the URI
        if not isinstance(uri, str) or not uri.startswith(settings.allowed_uri_prefixes):
            raise Refused(
                403,
                "uri_not_allowed",
                f"inputs by URI must start with one of {list(settings.allowed_uri_prefixes)}",
            )
        spool, sha256, size = await run_in_threadpool(_fetch, uri, settings.max_bytes)
        return spool, sha256, size, uri

    async def ingest(request: Request) -> JSONResponse:
        try:
            scenario = Scenario(request.path_params["scenario"])
        except ValueError:
            names = ", ".join(s.value for s in Scenario)
            return Refused(404, "unknown_scenario", f"scenarios: {names}").response()
        try:
            spool, sha256, size, source = await receive(request, scenario)
        except Refused as refused:
            return refused.response()
        with spool:
            stored = await run_in_threadpool(store.put, sha256, spool)
        lock = locks.get(sha256)
        if lock is None:
            lock = locks[sha256] = asyncio.Lock()
        async with lock:  # one event per (bytes, scenario), even for concurrent duplicates
            record = await run_in_threadpool(store.read_record, sha256)
            if record is not None and scenario.value in record.events:
                status = await run_in_threadpool(status_of, record)
                return JSONResponse(
                    {"sha256": sha256, "uri": stored, "status_url": f"/v1/status/{sha256}"}
                    | {"duplicate": True, "status": status},
                    200,
                )
            upload = Upload(
                sha256=sha256,
                scenario=scenario,
                uri=stored,
                size=size,
                media_type=_media_type(request.headers) if source == "body" else "",
                source=source,
                out=join(settings.outputs_root(), scenario.value),
            )
            try:
                event_id = await run_in_threadpool(emit, upload)
            except Exception as error:  # the bytes are stored; the caller may simply retry
                return Refused(
                    503, "event_failed", f"stored, but the event was not sent ({error}); retry"
                ).response()
            record = record or UploadRecord(
                sha256=sha256,
                uri=stored,
                size=size,
                media_type=upload.media_type,
                source=source,
                received_at=datetime.now(UTC),
            )
            record.events[scenario.value] = event_id
            await run_in_threadpool(store.write_record, record)
        return JSONResponse(
            {"sha256": sha256, "uri": stored, "status_url": f"/v1/status/{sha256}"}
            | {"duplicate": False, "event_id": event_id},
            202,
        )

    async def status(request: Request) -> JSONResponse:
        sha256 = str(request.path_params["sha256"]).lower()
        if not _SHA256.fullmatch(sha256):
            return Refused(400, "malformed", "a status id is a 64-digit hex sha256").response()
        record = await run_in_threadpool(store.read_record, sha256)
        if record is None:
            if await run_in_threadpool(store.exists, sha256):
                return JSONResponse({"sha256": sha256, "status": "stored"})
            return Refused(404, "unknown", f"no upload with sha256 {sha256}").response()
        return JSONResponse(await run_in_threadpool(status_of, record))

    async def healthz(request: Request) -> JSONResponse:
        try:
            await run_in_threadpool(store.check)
        except OSError as error:
            return JSONResponse({"status": "unavailable", "detail": str(error)}, 503)
        return JSONResponse({"status": "ok", "storage": settings.storage})

    return Starlette(
        routes=[
            Route("/v1/ingest/{scenario}", ingest, methods=["POST"]),
            Route("/v1/status/{sha256}", status, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
