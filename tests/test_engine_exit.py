"""A sync flow run does not wait for its heartbeat thread, and still sends heartbeats.

Prefect's sync engine joins the heartbeat thread at the end of every run, and that thread
sleeps in 1 s steps, so a run of 25 ms of work ended up to a second late (flows/engine_exit.py;
benchmarks/flow_end.py measures it). The test watches the thread itself rather than the clock.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from prefect import flow

from mmflow.flows import engine_exit
from mmflow.flows.runs import RunSettings


def _is_heartbeat(thread: threading.Thread) -> bool:
    target = getattr(thread, "_args", ())
    return bool(target) and getattr(target[0], "__name__", "") == "heartbeat_loop"


@flow(name="ends-at-once")
def ends_at_once(run: RunSettings) -> int:
    return run.workers


def test_prefect_still_offers_the_switch() -> None:
    """An upgrade that drops `join_on_exit` must be noticed: install() would do nothing."""
    assert engine_exit.prefect_can_skip_join()


def test_a_sync_flow_run_starts_heartbeats_and_does_not_join_them(
    prefect_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[threading.Thread] = []
    joined: list[threading.Thread] = []
    real_start, real_join = threading.Thread.start, threading.Thread.join

    def start(self: threading.Thread) -> None:
        if _is_heartbeat(self):
            started.append(self)
        real_start(self)

    def join(self: threading.Thread, timeout: Any = None) -> None:
        if _is_heartbeat(self):
            joined.append(self)
        real_join(self, timeout)

    monkeypatch.setattr(threading.Thread, "start", start)
    monkeypatch.setattr(threading.Thread, "join", join)

    assert ends_at_once(RunSettings(workers=3)) == 3

    assert len(started) == 1, "every flow run keeps its heartbeat thread"
    assert joined == [], "the run waited for its sleeping heartbeat thread"
    started[0].join(timeout=5)  # it ends by itself within a step of its sleep
    assert not started[0].is_alive()
