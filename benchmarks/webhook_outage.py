"""The webhook through a Prefect outage: every upload accepted while the API is down becomes
exactly one flow run once it is back.

A real `prefect server start` (SQLite in a scratch folder) with a deployment carrying the
receiver's `upload_trigger`; the receiver under uvicorn delivering through its outbox. Uploads
before the outage are delivered; then the server is stopped, uploads go on (the receiver is
restarted half-way, so pending events must survive it), the server is started again on the same
port and database, and the figures are: how long the outbox takes to drain, and how many flow
runs each upload got. Finally one delivered event is sent again with its id, to show the server
does not start a second run for it. The runs are only created (Scheduled), never executed: no
worker is needed to count them.

    .venv/bin/python -m benchmarks.webhook_outage --before 3 --during 12
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
from prefect import flow
from prefect.deployments.runner import RunnerDeployment
from starlette.applications import Starlette

from benchmarks.database_load import prefect_server
from benchmarks.webhook_load import (
    BENCHMARK_SECRET,
    distinct_bodies,
    free_port,
    serving,
    wait_until_drained,
)
from mmflow.deployments.delivery import PrefectEventSink
from mmflow.deployments.webhook import (
    WebhookSettings,
    create_app,
    signed_headers,
    upload_trigger,
)
from mmflow.deployments.webhook_state import WebhookState


@flow(name="mmflow-webhook-outage-probe")
def outage_probe(inputs: list[str], out: str) -> None:
    """Stands in for a scenario's flow: its runs are counted, never executed."""


@contextmanager
def prefect_client(api_url: str) -> Iterator[Any]:
    """A sync Prefect client for `api_url` (whatever PREFECT_API_URL says elsewhere)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings(updates={PREFECT_API_URL: api_url}),
        get_client(sync_client=True) as prefect,
    ):
        yield prefect


@dataclass
class OutageFigures:
    uploads_before: int = 0
    uploads_during: int = 0
    accepted_during: int = 0
    resend_while_pending: int = 0  # the HTTP status of the same bytes sent again in the outage
    health_during: str = ""
    restart_s: float = 0.0  # `prefect server start` → /api/health answers
    drain_s: float = 0.0  # /api/health answers → the outbox holds nothing pending or sent
    runs_s: float = 0.0  # /api/health answers → every upload has its run
    runs: Counter[str] = field(default_factory=Counter)  # upload URI → flow runs
    extra_runs_after_resend: int = -1

    def uploads_with_runs(self, count: int) -> int:
        return sum(1 for n in self.runs.values() if n == count)


def _upload(client: httpx.Client, body: bytes, timestamp: float | None = None) -> httpx.Response:
    path, media = "/v1/ingest/invoice", "application/pdf"
    headers = signed_headers(
        BENCHMARK_SECRET, "POST", path, body, content_type=media, timestamp=timestamp
    )
    return client.post("/v1/ingest/invoice", content=body, headers=headers)


def _runs_by_input(api_url: str, deployment_id: UUID) -> Counter[str]:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    query = DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
    with prefect_client(api_url) as prefect:
        runs = prefect.read_flow_runs(deployment_filter=query, limit=200)
    return Counter(str(run.parameters["inputs"][0]) for run in runs)


def _wait_for_runs(
    api_url: str, deployment_id: UUID, uris: set[str], timeout_s: float
) -> Counter[str]:
    deadline = time.monotonic() + timeout_s
    while True:
        runs = _runs_by_input(api_url, deployment_id)
        if uris <= set(runs) or time.monotonic() > deadline:
            return runs
        time.sleep(1)


def run_outage(
    workdir: Path, before: int = 3, during: int = 10, settle_s: float = 10
) -> OutageFigures:
    """The scenario of the module docstring, in `workdir`; returns its figures."""
    figures = OutageFigures(uploads_before=before, uploads_during=during)
    home, port = workdir / "prefect", free_port()  # the same server twice: same home and port
    api_url = f"http://127.0.0.1:{port}/api"
    bodies = distinct_bodies(before + during, 20_000)
    settings = WebhookSettings(storage=str(workdir / "hook"), secret=BENCHMARK_SECRET)

    def receiver() -> Starlette:
        return create_app(settings, sink=PrefectEventSink(api_url))

    # Before: delivered, and their runs made, while the server is up.
    with prefect_server(home, port=port):
        with prefect_client(api_url):
            deployment = outage_probe.to_deployment(
                name="outage", triggers=[upload_trigger("invoice")]
            )
            assert isinstance(deployment, RunnerDeployment)  # to_deployment is sync here
            deployment_id = deployment.apply()
        with serving(receiver()) as url, httpx.Client(base_url=url, timeout=60) as client:
            uris = {_upload(client, body).json()["uri"] for body in bodies[:before]}
            wait_until_drained(url)
        _wait_for_runs(api_url, deployment_id, uris, timeout_s=120)

    # During: the API is down; the receiver keeps accepting, and restarts half-way.
    outage, outage_uris = bodies[before:], []
    for part in (outage[: len(outage) // 2], outage[len(outage) // 2 :]):
        with serving(receiver()) as url, httpx.Client(base_url=url, timeout=60) as client:
            for body in part:
                response = _upload(client, body)
                figures.accepted_during += response.status_code == 202
                outage_uris.append(response.json()["uri"])
            if part:
                again = _upload(client, part[0], timestamp=time.time() + 1)  # a new signature
                figures.resend_while_pending = again.status_code
                figures.health_during = client.get("/healthz").json()["status"]
    uris.update(outage_uris)

    # After: the same server comes back; the restarted receiver drains its outbox.
    with serving(receiver()) as url:
        started = time.monotonic()
        with prefect_server(home, port=port):
            back = time.monotonic()
            figures.restart_s = back - started
            wait_until_drained(url, timeout_s=300)
            figures.drain_s = time.monotonic() - back
            _wait_for_runs(api_url, deployment_id, uris, timeout_s=300)
            figures.runs_s = time.monotonic() - back
            time.sleep(settle_s)  # a second run per upload, if any, would show by now
            figures.runs = _runs_by_input(api_url, deployment_id)

            # The same event id once more: the server must not start another run for it.
            state = WebhookState(settings.state_root())
            entry = state.for_upload(Path(outage_uris[0]).name)[0]
            state.close()
            asyncio.run(_send_once(api_url, entry.event))
            time.sleep(settle_s)
            after_resend = _runs_by_input(api_url, deployment_id)
            figures.extra_runs_after_resend = after_resend.total() - figures.runs.total()
    return figures


async def _send_once(api_url: str, event: dict[str, Any]) -> None:
    sink = PrefectEventSink(api_url)
    try:
        await sink.send([event])
    finally:
        await sink.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=int, default=3, help="uploads before the outage")
    parser.add_argument("--during", type=int, default=12, help="uploads during the outage")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        figures = run_outage(Path(workdir), args.before, args.during)
    total = args.before + args.during
    print(f"uploads before the outage {figures.uploads_before} · during {figures.uploads_during}")
    print(
        f"accepted during the outage {figures.accepted_during}/{figures.uploads_during} · "
        f"same bytes again while pending → {figures.resend_while_pending} · "
        f"/healthz during → {figures.health_during}"
    )
    print(
        f"server restart {figures.restart_s:.1f} s · outbox drained {figures.drain_s:.1f} s "
        f"and every run created {figures.runs_s:.1f} s after the API answered again"
    )
    print(
        f"uploads with exactly one run {figures.uploads_with_runs(1)}/{total} · "
        f"with none {total - len(figures.runs)} · "
        f"with more than one {sum(1 for n in figures.runs.values() if n > 1)} · "
        f"runs after re-sending a delivered event id: +{figures.extra_runs_after_resend}"
    )


if __name__ == "__main__":
    main()
