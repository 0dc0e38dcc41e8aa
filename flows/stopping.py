"""Stopping a run gently: asked once, a run starts no new input; what is running gets a grace
period to end, and every input still ends in the manifest (as `failed: interrupted` if it could
not finish), so running the same command again completes the rest. The grace period is kept
when the run has an input timeout (each input then runs in a thread of its own, flows/runs.py);
without one, an input already running ends on its own.

The command line asks on the first Ctrl-C and stops at once on the second (cli/app.py); a flow
run cancelled from the Prefect UI is ended by Prefect itself.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

GRACE_S = 10.0  # how long inputs already running may take to end once a stop is asked

_requested: Any = threading.Event()  # or, in a worker process, the flow process's (follow)
_forwarded: list[Any] = []  # events that worker processes follow (flows/processes.py)


def request_stop() -> None:
    _requested.set()
    for event in list(_forwarded):
        event.set()


@contextmanager
def forwarded_to(event: Any) -> Iterator[None]:
    """While inside, a stop requested here is also set on `event`, a `multiprocessing` event
    that worker processes follow; one already requested is set at once."""
    _forwarded.append(event)
    if _requested.is_set():
        event.set()
    try:
        yield
    finally:
        _forwarded.remove(event)


def follow(event: Any) -> None:
    """In a worker process: its stop requests are those set on `event` by the flow's process."""
    global _requested
    _requested = event


def stop_requested() -> bool:
    return _requested.is_set()


def reset() -> None:
    """Forget a stop request (a new run in the same process, or a test)."""
    _requested.clear()
