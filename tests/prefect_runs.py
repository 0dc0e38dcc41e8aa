"""Reading back what the Prefect server recorded about a flow run."""

from __future__ import annotations

import asyncio
import time

from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId


def task_run_names(flow_run_id: object, expected: int, wait_s: float = 60.0) -> list[str]:
    """The flow run's task runs as the server recorded them.

    Task-run states reach the server as events, a little after the flow returns; poll until
    `expected` are recorded (or the wait runs out, and the caller's assertion says what is
    missing).
    """

    async def read() -> list[str]:
        async with get_client() as client:
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
            return [r.name for r in runs]

    deadline = time.monotonic() + wait_s
    names = asyncio.run(read())
    while len(names) < expected and time.monotonic() < deadline:
        time.sleep(0.5)
        names = asyncio.run(read())
    return names
