"""Process-local progress events: the CLI draws a bar, the flow updates a Prefect artifact."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from pydantic import BaseModel


class ItemDone(BaseModel):
    uri: str
    status: str
    units: float = 1.0  # documents, or seconds of audio


Listener = Callable[[ItemDone], None]
_listeners: list[Listener] = []
_lock = threading.Lock()


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    with _lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(listener)


def publish(event: ItemDone) -> None:
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(event)
