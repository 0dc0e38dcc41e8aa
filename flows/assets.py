"""Lineage as Prefect assets: every output file is materialised from its input, with its engines.

Each output file becomes an asset keyed by its URI (`file:///abs/out/x.json`, `s3://bucket/x.json`)
whose upstream is the input's URI, carrying the output's sha256, the scenario, the mmflow version
and the engine/model of every step (the same facts as the output's own `lineage` section).

How the events are made, and why (read from Prefect 3.9.1, `prefect/context.py` `AssetContext`
and `task_engine.py`): a `@materialize` task emits, when its run completes, one
`prefect.asset.referenced` event per upstream asset and one
`prefect.asset.materialization.succeeded` event per asset it materialises, each of the latter
relating *every* upstream asset (`prefect.resource.role: asset`) and carrying that asset's
metadata as payload. So one materialising task for a whole group of documents would tie every
output to every input of the group — wrong lineage — and one task per document is the thousands
of task runs that grouping exists to avoid (a SQLite-backed server records ~28 a second).

Therefore:
- inside a task run (a batch group, `process-inputs`), each input's outputs are emitted through
  Prefect's own `AssetContext.emit_events` with only that input upstream: the same event names,
  labels and payload the engine produces, no extra task run, and the events worker attaches the
  enclosing task run, flow run and flow as related resources just as it does for the engine's;
- at flow level (the stepwise path, one to four documents), one input's outputs are a real
  `@materialize` task run, Prefect's canonical form, shown in the UI beside the steps; a call at
  flow level naming several inputs runs as one `record-lineage` task run that emits per input.

The open-source server stores these events (`/api/events/filter`); its UI has no asset graph
(Prefect Cloud draws one from the same events).
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import re
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec
from prefect import task
from prefect.assets import Asset, AssetProperties, add_asset_metadata, materialize
from prefect.cache_policies import NO_CACHE
from prefect.context import AssetContext, FlowRunContext, TaskRunContext
from prefect.events import Event, RelatedResource
from prefect.states import Completed
from pydantic import BaseModel, Field

from mmflow.tasks.models import LineageStep, Status
from mmflow.tasks.redaction import redact_data

logger = logging.getLogger(__name__)

MATERIALIZED_BY = "mmflow"
MAX_KEY_LENGTH = 512  # prefect.types.names.MAX_ASSET_KEY_LENGTH
# Characters Prefect refuses in an asset key (prefect.types.names.RESTRICTED_ASSET_CHARACTERS).
# `%` is among them, so percent-encoding is impossible: each becomes `_`, and the exact location
# stays in the metadata (`uri`) and the asset's name.
_RESTRICTED = re.compile(r"[\n\r\t\0 #?&%\"'<>\[\]{}|\\^`]")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://(.*)$", re.DOTALL)


def asset_key(location: str) -> str:
    """The asset key of a file: its URI, local paths made absolute `file://` URIs.

    Prefect wants a lowercase alphanumeric scheme, none of its restricted characters, and at
    most 512 characters; a longer key keeps its start and ends in a hash of the whole location,
    so distinct files keep distinct keys.
    """
    match = _SCHEME.match(location)
    if match:
        scheme = re.sub(r"[^a-z0-9]", "", match.group(1).lower()) or "file"
        key = f"{scheme}://{match.group(2)}"
    else:
        key = "file://" + Path(location).expanduser().resolve().as_posix()
    key = _RESTRICTED.sub("_", key)
    if len(key) > MAX_KEY_LENGTH:
        digest = hashlib.sha256(location.encode()).hexdigest()[:16]
        key = f"{key[: MAX_KEY_LENGTH - 18]}~{digest}"
    return key


class StepUse(BaseModel):
    """One step as the asset records it: what ran, which version of our code, on which engine."""

    name: str
    version: str
    engine: str = ""
    cached: bool = False


class OutputMetadata(BaseModel):
    """The materialisation's payload (Prefect shows it as the asset's metadata)."""

    scenario: str
    status: Status
    uri: str  # the exact location; the key may have had characters replaced
    sha256: str  # of the output file's bytes as stored
    bytes: int
    input_uri: str
    input_sha256: str
    mmflow_version: str
    engines: dict[str, str] = Field(default_factory=dict)  # step name → engine/model, if any
    steps: list[StepUse] = Field(default_factory=list)
    checks: dict[str, int] = Field(
        default_factory=dict
    )  # check status → count, if the output has checks


class OutputAsset(BaseModel):
    """One output file as an asset: its key, the input it came from, and its metadata."""

    key: str
    upstream: str
    metadata: OutputMetadata

    def asset(self) -> Asset:
        name = PurePosixPath(self.metadata.uri).name
        return Asset(key=self.key, properties=AssetProperties(name=name))

    def upstream_asset(self) -> Asset:
        name = PurePosixPath(self.metadata.input_uri).name
        return Asset(key=self.upstream, properties=AssetProperties(name=name))


class LineageSection(BaseModel):
    """The `lineage` section of every result JSON (docs/contracts.md); other keys are ignored."""

    input_sha256: str
    mmflow_version: str
    steps: list[LineageStep]


def _read_bytes(location: str) -> bytes:
    with fsspec.open(location, "rb") as handle:
        data: bytes = handle.read()
    return data


def output_assets(
    scenario: str,
    input_uri: str,
    paths: Sequence[str] | Mapping[str, bytes],
    status: Status = Status.OK,
) -> list[OutputAsset]:
    """The assets of one input's output files; the first is its result JSON.

    The lineage comes from that JSON's `lineage` section — the contract every scenario writes —
    so the assets say exactly what the output says, whatever the scenario. `paths` maps each
    file to the bytes just written (an object store stores a PUT whole or not at all, and a
    local file is renamed into place whole), which saves reading every output back — two
    requests per file on S3; given bare paths, each file is read back once.
    """
    if not paths:
        raise ValueError(f"no output files given for {input_uri}")
    contents = (
        dict(paths) if isinstance(paths, Mapping) else {path: _read_bytes(path) for path in paths}
    )
    paths = list(contents)
    document = json.loads(contents[paths[0]])
    if not isinstance(document, dict) or "lineage" not in document:
        raise ValueError(f"{paths[0]} has no `lineage` section; every result JSON must carry one")
    lineage = LineageSection.model_validate(document["lineage"])
    steps = [
        StepUse(name=s.name, version=s.version, engine=s.engine, cached=s.cached)
        for s in lineage.steps
    ]
    checks: dict[str, int] = {}
    for check in document.get("checks") or []:
        if isinstance(check, dict) and isinstance(check.get("status"), str):
            checks[check["status"]] = checks.get(check["status"], 0) + 1
    upstream = asset_key(input_uri)
    return [
        OutputAsset(
            key=asset_key(path),
            upstream=upstream,
            metadata=OutputMetadata(
                scenario=scenario,
                status=status,
                uri=path,
                sha256=hashlib.sha256(data).hexdigest(),
                bytes=len(data),
                input_uri=input_uri,
                input_sha256=lineage.input_sha256,
                mmflow_version=lineage.mmflow_version,
                engines={s.name: s.engine for s in steps if s.engine},
                steps=steps,
                checks=checks,
            ),
        )
        for path, data in contents.items()
    ]


def _by_upstream(outputs: Sequence[OutputAsset]) -> dict[str, list[OutputAsset]]:
    groups: dict[str, list[OutputAsset]] = {}
    for output in outputs:
        groups.setdefault(output.upstream, []).append(output)
    return groups


def _payload(output: OutputAsset) -> dict[str, Any]:
    """What the event carries (engines name providers): redacted, as everything sent."""
    return redact_data(output.metadata.model_dump(mode="json"))


_held: ContextVar[list[Event] | None] = ContextVar("mmflow_held_asset_events", default=None)


# This process: a group's task run compares it with its run's, to know whether it runs in the
# flow's own process (a thread) or in a Dask or Ray worker.
PROCESS = uuid.uuid4().hex

_sender: ThreadPoolExecutor | None = None
_pending: list[Future[None]] = []
_pending_lock = threading.Lock()


@contextmanager
def asset_events_sent_together(later: bool = False) -> Iterator[None]:
    """Within this block (one batch group's task run), asset events are held and sent to the
    API in one request at its end, instead of one by one through Prefect's events worker.

    Through the worker, each event was a websocket message of its own and a lookup of the run's
    related resources: about 5 ms a document, a third of a text PDF's whole cost in a batch
    (docs/performance.md). The events are the same: built by `_events_of` with Prefect's own
    helpers, the run context's resources attached as the worker attaches them. They are sent
    even when the group fails part way: its finished inputs' outputs exist.

    `later`: the request goes out from a background thread, in the group's context, and the
    group's task run ends without waiting for it (the server took ~55 ms a group to answer,
    while the next group waited); `flush_asset_events` waits for every such request before
    the flow run ends. Only for groups in the flow's own process: a worker process may be
    gone before a background request is done.
    """
    held: list[Event] = []
    token = _held.set(held)
    try:
        yield
    finally:
        _held.reset(token)
        if held and later:
            _send_in_background(held)
        elif held:
            _send_together(held)


def _send_in_background(events: list[Event]) -> None:
    global _sender
    context = contextvars.copy_context()  # the group's task run and flow run, for their resources
    with _pending_lock:
        if _sender is None:
            _sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mmflow-asset-events")
        _pending.append(_sender.submit(context.run, _send_together, events))


def flush_asset_events(timeout_s: float = 120.0) -> None:
    """Wait for every group's asset events sent in the background (`later`) to be sent, or
    handed to Prefect's events worker when the API refused them."""
    with _pending_lock:
        pending = list(_pending)
        _pending.clear()
    done, late = wait(pending, timeout=timeout_s)
    for future in done:
        if future.exception() is not None:
            logger.warning("asset events of a group were not sent: %s", future.exception())
    if late:
        logger.warning("%d groups' asset events still unsent after %g s", len(late), timeout_s)


def _events_of(context: AssetContext) -> list[Event]:
    """The events `context.emit_events(Completed())` emits (prefect/context.py, 3.9.1): one
    `referenced` per upstream asset, one `materialization.succeeded` per output, relating
    every upstream asset and the tool that materialised it."""
    upstream = context.upstream_assets | context.direct_asset_dependencies
    events = [
        Event(event="prefect.asset.referenced", resource=context.asset_as_resource(asset))
        for asset in upstream
    ]
    related = [context.asset_as_related(asset) for asset in upstream]
    if context.materialized_by:
        related.append(context.related_materialized_by(context.materialized_by))
    events += [
        Event(
            event="prefect.asset.materialization.succeeded",
            resource=context.asset_as_resource(asset),
            related=related,
            payload=context.materialization_metadata.get(asset.key) or {},
        )
        for asset in context.downstream_assets
    ]
    return events


def _send_together(events: list[Event]) -> None:
    """POST the events in one request, each with the run's related resources (flow run, task
    run, flow, tags); if the API refuses, hand them to Prefect's events worker one by one."""
    from prefect import get_client
    from prefect.events.related import related_resources_from_run_context
    from prefect.events.utilities import should_emit_events
    from prefect.events.worker import EventsWorker
    from prefect.utilities.asyncutils import run_coro_as_sync

    if not should_emit_events():
        return

    async def run_resources() -> list[RelatedResource]:
        async with get_client() as client:
            return await related_resources_from_run_context(client)

    from_run: list[RelatedResource] = run_coro_as_sync(run_resources()) or []
    complete = []
    for event in events:
        involved = {resource.id for resource in event.involved_resources}
        extra = [resource for resource in from_run if resource.id not in involved]
        complete.append(event.model_copy(update={"related": [*event.related, *extra]}))
    try:
        with get_client(sync_client=True) as client:
            body = [event.model_dump(mode="json") for event in complete]
            client.request("POST", "/events", json=body).raise_for_status()
    except Exception as error:  # an API without the batch endpoint, or a passing failure
        logger.warning("asset events not sent together (%s); sending them one by one", error)
        worker = EventsWorker.instance()
        for event in events:
            worker.send(event)


def emit_materializations(outputs: Sequence[OutputAsset]) -> None:
    """Emit each input's outputs as Prefect's engine would for a `@materialize` task run.

    One `AssetContext` per input, so an output relates only to its own input; Prefect's
    `emit_events` writes the events (a completed state gives `…materialization.succeeded`),
    or, inside `asset_events_sent_together`, the same events are held for one request.
    """
    held = _held.get()
    for group in _by_upstream(outputs).values():
        context = AssetContext(
            downstream_assets={o.asset() for o in group},
            direct_asset_dependencies={group[0].upstream_asset()},
            materialized_by=MATERIALIZED_BY,
            materialization_metadata={o.key: _payload(o) for o in group},
        )
        if held is None:
            context.emit_events(Completed())
        else:
            held += _events_of(context)


def _attach_metadata(metadata: dict[str, dict[str, Any]]) -> None:
    for key, values in metadata.items():
        add_asset_metadata(key, values)


@task(name="record-lineage", cache_policy=NO_CACHE, persist_result=False)
def _record_lineage(outputs: list[OutputAsset]) -> None:
    """Several inputs' outputs at flow level: one task run, each input emitted on its own."""
    emit_materializations(outputs)


def record_outputs(outputs: Sequence[OutputAsset]) -> None:
    """Record output files as Prefect asset materialisations, each from its own input.

    Inside a task run (a batch group) the events are emitted directly, adding no task run; at
    flow level one input's outputs are one `@materialize` task run, several inputs one
    `record-lineage` task run. Nothing is recorded for an empty list (a rejected input), nor
    when the steps run outside any Prefect flow run (a plain loop over `run_input`, as the
    throughput benchmark's baseline does): assets belong to a run, and the output's own
    `lineage` section holds the same facts.
    """
    if not outputs or (TaskRunContext.get() is None and FlowRunContext.get() is None):
        return
    if TaskRunContext.get() is not None:
        emit_materializations(outputs)
        return
    groups = _by_upstream(outputs)
    if len(groups) > 1:
        _record_lineage(list(outputs))
        return
    first = outputs[0]
    label = PurePosixPath(first.metadata.input_uri).name
    materializing = materialize(
        *[o.asset() for o in outputs],
        by=MATERIALIZED_BY,
        name="materialize",
        task_run_name=f"materialize {label}",
        asset_deps=[first.upstream_asset()],
        cache_policy=NO_CACHE,  # a cached state emits no materialisation
        persist_result=False,
    )(_attach_metadata)
    materializing({o.key: _payload(o) for o in outputs})
