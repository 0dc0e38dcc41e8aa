"""Reading back what the Prefect server recorded about a flow run."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

T = TypeVar("T")


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

    return read_until(read, expected, wait_s)


def read_until(
    read: Callable[[], Coroutine[Any, Any, list[T]]], expected: int, wait_s: float
) -> list[T]:
    """What `read` returns once it holds `expected` items, or when `wait_s` runs out.

    The server records task runs and events a little after the flow returns: poll, and let the
    caller's assertion say what is missing."""
    deadline = time.monotonic() + wait_s
    found = asyncio.run(read())
    while len(found) < expected and time.monotonic() < deadline:
        time.sleep(0.5)
        found = asyncio.run(read())
    return found
