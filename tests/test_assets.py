"""Lineage as Prefect assets: each output file is a materialisation of its own input.

The flow tests run the invoice flow on the real engine and server and read the asset events
back through the events API. They rely on `flows/runs.py` `run_input` recording the outputs
after `scenario.write` (`record_outputs(output_assets(scenario.name, uri, [output]))`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import fsspec
import httpx
import pytest
from prefect import flow, get_client
from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter
from prefect.events.schemas.events import ReceivedEvent

from mmflow.flows.assets import MAX_KEY_LENGTH, asset_key, output_assets, record_outputs
from mmflow.flows.invoice import invoice_flow
from mmflow.flows.runs import RunSettings
from mmflow.tasks.samples import SPECS, invoice_pdf
from tests.prefect_runs import read_until, task_run_names

SUCCEEDED = "prefect.asset.materialization.succeeded"


def test_a_relative_local_path_becomes_an_absolute_file_uri(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert asset_key("out/x.json") == f"file://{tmp_path.resolve().as_posix()}/out/x.json"


def test_an_s3_uri_is_its_own_key() -> None:
    assert asset_key("s3://bucket/results/x.json") == "s3://bucket/results/x.json"


def test_characters_prefect_refuses_in_a_key_are_replaced() -> None:
    assert asset_key("s3://bucket/my invoice #3.json") == "s3://bucket/my_invoice__3.json"


def test_an_overlong_location_keeps_a_distinct_key_within_prefects_limit() -> None:
    stem = "s3://bucket/" + "a" * 600
    first, second = asset_key(stem + "1.json"), asset_key(stem + "2.json")
    assert len(first) <= MAX_KEY_LENGTH and len(second) <= MAX_KEY_LENGTH
    assert first != second


def _result_json(path: Path) -> Path:
    lineage = {
        "input_sha256": "ab" * 32,
        "mmflow_version": "0.1.0",
        "steps": [
            {"name": "transcribe", "version": "1f2e", "engine": "faster-whisper 1.2.1"},
            {"name": "align", "version": "3c4d"},
        ],
    }
    path.write_text(json.dumps({"segments": [], "lineage": lineage}), encoding="utf-8")
    return path


def test_companion_files_share_the_input_and_lineage_but_hash_their_own_bytes(
    tmp_path: Path,
) -> None:
    main = _result_json(tmp_path / "call.json")
    rttm = tmp_path / "call.rttm"
    rttm.write_text("SPEAKER call 1 0.00 1.00 <NA> <NA> S1 <NA> <NA>\n", encoding="utf-8")
    assets = output_assets("meeting", "s3://inbox/call.wav", [str(main), str(rttm)])
    assert [a.key for a in assets] == [asset_key(str(main)), asset_key(str(rttm))]
    assert {a.upstream for a in assets} == {"s3://inbox/call.wav"}
    assert [a.metadata.sha256 for a in assets] == [
        hashlib.sha256(p.read_bytes()).hexdigest() for p in (main, rttm)
    ]
    for asset in assets:
        assert asset.metadata.engines == {"transcribe": "faster-whisper 1.2.1"}
        assert asset.metadata.input_sha256 == "ab" * 32


def test_an_output_without_a_lineage_section_is_refused(tmp_path: Path) -> None:
    bare = tmp_path / "bare.json"
    bare.write_text('{"fields": {}}', encoding="utf-8")
    with pytest.raises(ValueError, match="lineage"):
        output_assets("invoice", str(tmp_path / "bare.pdf"), [str(bare)])


def _asset_events(flow_run_id: Any, expected: int, wait_s: float = 60.0) -> list[ReceivedEvent]:
    """The flow run's asset events as the server stored them, once `expected` have arrived."""

    async def read() -> list[ReceivedEvent]:
        async with get_client() as client:
            page = await client.read_events(
                filter=EventFilter(
                    event=EventNameFilter(prefix=["prefect.asset."]),
                    related=EventRelatedFilter(id=[f"prefect.flow-run.{flow_run_id}"]),
                ),
                limit=50,  # the server's maximum page
            )
            events = list(page.events)
            while page.next_page:
                page = await client.read_events_page(str(page.next_page))
                events += page.events
            return events

    return read_until(read, expected, wait_s)


def _write_invoices(folder: Path, count: int) -> list[Path]:
    """Born-digital invoices (fast: text layer, no OCR), each different, plus their names."""
    folder.mkdir(parents=True)
    specs = list(SPECS.values())
    paths = []
    for i in range(count):
        path = folder / f"invoice-{i:02d}.pdf"
        path.write_bytes(invoice_pdf(specs[i % len(specs)]))
        if i >= len(specs):  # same layout again: add a byte so each input has its own hash
            path.write_bytes(path.read_bytes() + b"\n%" + str(i).encode() + b"\n")
        paths.append(path)
    return paths


def _materialisations(events: list[ReceivedEvent]) -> dict[str, ReceivedEvent]:
    found: dict[str, ReceivedEvent] = {}
    for event in events:
        if event.event == SUCCEEDED:
            assert event.resource.id not in found, f"two materialisations of {event.resource.id}"
            found[event.resource.id] = event
    return found


def _upstream_assets(event: ReceivedEvent) -> list[str]:
    return [r.id for r in event.related if r.role == "asset"]


def _assert_each_output_is_an_asset_of_its_own_input(
    documents: list[Any], events: list[ReceivedEvent]
) -> None:
    materialised = _materialisations(events)
    ok = [d for d in documents if d.status.value == "ok"]
    assert set(materialised) == {asset_key(d.output) for d in ok}
    for document in ok:
        event = materialised[asset_key(document.output)]
        assert _upstream_assets(event) == [asset_key(document.uri)]
        roles = {r.role: r.id for r in event.related}
        assert roles["asset-materialized-by"] == "mmflow"
        assert roles["task-run"].startswith("prefect.task-run.")  # as the engine's events do
        payload = event.payload
        with fsspec.open(document.output, "rb") as handle:
            stored = handle.read()
        assert payload["sha256"] == hashlib.sha256(stored).hexdigest()
        assert payload["input_sha256"] == document.sha256
        assert payload["scenario"] == "invoice" and payload["status"] == "ok"
        assert payload["engines"]["validate"].startswith("pymupdf")
        assert payload["mmflow_version"]
        assert {s["name"] for s in payload["steps"]} >= {"validate", "read", "extract"}


@pytest.mark.slow
def test_several_inputs_recorded_at_flow_level_are_one_task_run_each_output_its_own_input(
    prefect_server: str, tmp_path: Path
) -> None:
    outputs = {
        f"{tmp_path}/in/{n}.png": str(_result_json(tmp_path / f"{n}.json")) for n in ("a", "b")
    }

    @flow(name="record-images")
    def record_images() -> None:
        record_outputs(
            [a for uri, out in outputs.items() for a in output_assets("image", uri, [out])]
        )

    state = record_images(return_state=True)
    events = _asset_events(state.state_details.flow_run_id, expected=4)
    materialised = _materialisations(events)
    for uri, out in outputs.items():
        assert _upstream_assets(materialised[asset_key(out)]) == [asset_key(uri)]
    (name,) = task_run_names(state.state_details.flow_run_id, expected=1)
    assert name.startswith("record-lineage")


@pytest.mark.slow
def test_stepwise_run_materialises_each_output_from_its_own_input(
    prefect_server: str, tmp_path: Path
) -> None:
    inputs = _write_invoices(tmp_path / "in", 2)
    state = invoice_flow(
        inputs=[str(p) for p in inputs],
        out=str(tmp_path / "out"),
        return_state=True,
        run=RunSettings(cache=False),
    )
    documents = state.result().inputs
    assert [d.status.value for d in documents] == ["ok", "ok"]
    events = _asset_events(state.state_details.flow_run_id, expected=4)
    _assert_each_output_is_an_asset_of_its_own_input(documents, events)
    # nine task runs an input: validate, normalise, route, read, split, extract, verify,
    # sanity, materialize (reading stops at `expected`: a smaller number could miss the last)
    names = task_run_names(state.state_details.flow_run_id, expected=18)
    assert {n for n in names if n.startswith("materialize")} == {
        f"materialize {p.name}" for p in inputs
    }


@pytest.mark.slow
def test_grouped_run_materialises_each_output_without_a_task_run_per_document(
    prefect_server: str, tmp_path: Path
) -> None:
    inputs = _write_invoices(tmp_path / "in", 6)
    rejected = tmp_path / "in" / "empty.pdf"
    rejected.write_bytes(b"")
    state = invoice_flow(
        inputs=[str(tmp_path / "in")],
        out=str(tmp_path / "out"),
        return_state=True,
        run=RunSettings(cache=False, group_size=4),
    )
    documents = state.result().inputs
    assert sorted(d.status.value for d in documents) == ["ok"] * len(inputs) + ["rejected"]
    events = _asset_events(state.state_details.flow_run_id, expected=2 * len(inputs))
    _assert_each_output_is_an_asset_of_its_own_input(documents, events)
    assert len(task_run_names(state.state_details.flow_run_id, expected=2)) == 2


@pytest.mark.slow
def test_a_rejected_input_produces_no_asset(prefect_server: str, tmp_path: Path) -> None:
    good = _write_invoices(tmp_path / "in", 1)[0]
    rejected = tmp_path / "in" / "empty.pdf"
    rejected.write_bytes(b"")
    state = invoice_flow(
        inputs=[str(good), str(rejected)],
        out=str(tmp_path / "out"),
        return_state=True,
        run=RunSettings(cache=False),
    )
    statuses = {Path(d.uri).name: d.status.value for d in state.result().inputs}
    assert statuses == {good.name: "ok", rejected.name: "rejected"}
    events = _asset_events(state.state_details.flow_run_id, expected=2)
    involved = {r.id for e in events for r in [e.resource, *e.related]}
    assert asset_key(str(good)) in involved
    assert asset_key(str(rejected)) not in involved
    assert not any(e.resource.id.endswith("/empty.json") for e in events)


@pytest.mark.slow
def test_outputs_on_s3_are_assets_keyed_by_their_s3_uris(
    prefect_server: str, moto_endpoint: str
) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=moto_endpoint)
    fs.mkdir("mmflow-assets")
    fs.pipe_file("mmflow-assets/in/northwind.pdf", invoice_pdf(SPECS["northwind-invoice"]))
    state = invoice_flow(
        inputs=["s3://mmflow-assets/in/"],
        out="s3://mmflow-assets/out",
        return_state=True,
        run=RunSettings(cache=False),
    )
    documents = state.result().inputs
    assert [d.output for d in documents] == ["s3://mmflow-assets/out/northwind.json"]
    events = _asset_events(state.state_details.flow_run_id, expected=2)
    _assert_each_output_is_an_asset_of_its_own_input(documents, events)
    (event,) = _materialisations(events).values()
    assert event.resource.id == "s3://mmflow-assets/out/northwind.json"
    assert _upstream_assets(event) == ["s3://mmflow-assets/in/northwind.pdf"]


def test_outside_any_prefect_run_nothing_is_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain loop over the steps has no run to attach assets to: no task run is started."""
    import mmflow.flows.assets as assets

    started: list[object] = []
    monkeypatch.setattr(assets, "materialize", lambda *a, **k: started.append(a))
    monkeypatch.setattr(assets, "_record_lineage", lambda outputs: started.append(outputs))
    monkeypatch.setattr(assets, "emit_materializations", lambda outputs: started.append(outputs))
    result = tmp_path / "x.json"
    result.write_text('{"lineage": {"input_sha256": "ab", "mmflow_version": "0", "steps": []}}')
    assets.record_outputs(assets.output_assets("invoice", str(tmp_path / "x.pdf"), [str(result)]))
    assert started == []


@pytest.mark.slow
def test_a_groups_events_refused_in_one_request_still_arrive_one_by_one(
    prefect_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group's asset events go in one request (flows/assets.py); an API that refuses it
    (an older or hosted one without the batch endpoint) gets them through the events worker."""
    from prefect.client.orchestration import SyncPrefectClient

    sent_together: list[str] = []
    request = SyncPrefectClient.request

    def refusing(self: SyncPrefectClient, method: str, path: str, *args: Any, **kw: Any) -> Any:
        if (method, path) == ("POST", "/events"):
            sent_together.append(path)
            raise httpx.HTTPError("405 Method Not Allowed")
        return request(self, method, path, *args, **kw)

    monkeypatch.setattr(SyncPrefectClient, "request", refusing)
    inputs = _write_invoices(tmp_path / "in", 6)
    state = invoice_flow(
        inputs=[str(tmp_path / "in")],
        out=str(tmp_path / "out"),
        return_state=True,
        run=RunSettings(cache=False, group_size=3),
    )
    documents = state.result().inputs
    events = _asset_events(state.state_details.flow_run_id, expected=2 * len(inputs))
    _assert_each_output_is_an_asset_of_its_own_input(documents, events)
    assert sent_together == ["/events", "/events"]  # one request per group, both refused


def test_a_group_sent_later_does_not_wait_and_flush_waits_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A group in the flow's own process hands its events to a background thread (in its own
    context, for the run's resources) and ends at once; `flush_asset_events` returns only when
    they are sent."""
    import contextvars
    import threading
    import time

    from prefect.events import Event

    from mmflow.flows import assets

    group = contextvars.ContextVar("group", default="none")
    release = threading.Event()
    sent: list[tuple[str, int]] = []

    def slow_send(events: list[Event]) -> None:
        release.wait(30)
        sent.append((group.get(), len(events)))

    monkeypatch.setattr(assets, "_send_together", slow_send)
    event = Event(event="prefect.asset.referenced", resource={"prefect.resource.id": "file:///x"})
    group.set("group 1")
    started = time.monotonic()
    with assets.asset_events_sent_together(later=True):
        assets._held.get().append(event)  # type: ignore[union-attr]
    assert time.monotonic() - started < 5 and sent == []  # the group did not wait
    threading.Timer(0.3, release.set).start()
    assets.flush_asset_events()
    assert sent == [("group 1", 1)]
    with assets.asset_events_sent_together():  # in a worker process: sent before it ends
        assets._held.get().append(event)  # type: ignore[union-attr]
    assert sent == [("group 1", 1), ("group 1", 1)]


@pytest.mark.slow
def test_a_grouped_run_ends_only_after_every_groups_events_were_sent(
    prefect_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Groups no longer wait for their events' request; the flow run still does, before it
    ends, so a finished run has sent every event."""
    import time

    from mmflow.flows import assets

    send = assets._send_together
    sent: list[int] = []

    def slow_send(events: Any) -> None:
        time.sleep(1.0)
        send(events)
        sent.append(len(events))

    monkeypatch.setattr(assets, "_send_together", slow_send)
    _write_invoices(tmp_path / "in", 6)
    state = invoice_flow(
        inputs=[str(tmp_path / "in")],
        out=str(tmp_path / "out"),
        return_state=True,
        run=RunSettings(cache=False, group_size=3),
    )
    assert state.is_completed()
    assert sent == [6, 6]  # two groups, two events per document: all sent when the flow returned
