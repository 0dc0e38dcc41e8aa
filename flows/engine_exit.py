"""A sync flow run ends when its body and its final state are done, not up to a second later.

Prefect 3.9.1 keeps a heartbeat thread beside every flow run (`prefect/flow_engine.py`,
`_send_heartbeats`). The thread sleeps in 1 s steps and looks at its stop flag between them;
when the run ends, the *sync* engine joins it (`join_on_exit=True`), so every sync flow run
waits for the rest of the current step: ~0.5 s on average, up to 1 s, for a run whose work may
take 25 ms (docs/performance.md). The async engine does not join (`join_on_exit=False`): it sets
the stop flag and goes on, and the thread ends by itself at its next step without emitting
again, since it checks the flag before each sleep and each heartbeat.

mmflow's flows are sync functions, called as such by the CLI, the batch flow, deployments,
plugins and tests; making them `async def` would put their bodies in an async run context,
where Prefect's dual sync/async functions (artifacts, `Block.load`) return coroutines instead
of doing their work. So the sync engine is made to leave the thread as the async engine does:
heartbeats still start with every run (crashed-run detection keeps working), the run just no
longer waits for the sleeping thread. `install()` is idempotent and changes nothing when
Prefect's function no longer has the `join_on_exit` switch (tests/test_engine_exit.py fails
then, so an upgrade is noticed).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Generator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from prefect import flow_engine

_prefect_heartbeats: Callable[..., AbstractContextManager[None]] = flow_engine._send_heartbeats


def prefect_can_skip_join() -> bool:
    """Whether this Prefect's heartbeat context still takes `join_on_exit`."""
    return "join_on_exit" in inspect.signature(_prefect_heartbeats).parameters


@contextmanager
def heartbeats_without_join(engine: Any, join_on_exit: bool = True) -> Generator[None, None, None]:
    """Prefect's heartbeats for `engine`'s run, stopped but not waited for at its end."""
    del join_on_exit  # the sync engine asks for a join; its run need not wait for one
    with _prefect_heartbeats(engine, join_on_exit=False):
        yield


def install() -> None:
    """Make every sync flow run in this process end without joining its heartbeat thread."""
    if prefect_can_skip_join():
        flow_engine._send_heartbeats = heartbeats_without_join
