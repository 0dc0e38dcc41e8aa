"""How an `mmflow` process ends: its last exit handler, and what runs in it.

`install()` registers `skip_teardown` before anything else registers an exit handler, so it
runs after all of them (atexit runs handlers last-registered first): Prefect's log and event
flushes are done by then. It runs what `run_last` was given, then, for a finished
`mmflow run` (`end_quickly`), ends the process without tearing down its ~1,800 modules one by
one (~0.25 s): threads were joined before exit handlers ran, and outputs were closed when the
run ended.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from collections.abc import Callable

_status: list[int] = []  # end_quickly's exit status
_last: list[Callable[[], object]] = []  # run_last's calls
_installed: list[bool] = []  # whether skip_teardown is registered in this process


def install() -> None:
    """Register `skip_teardown`: first, so that it runs last."""
    atexit.register(skip_teardown)
    _installed.append(True)


def run_last(call: Callable[[], object]) -> None:
    """Call `call` as this process exits, after every other exit handler: what it starts then
    never competes with this command's work (the warm runner, started by a first command)."""
    if _installed:
        _last.append(call)
    else:  # the command line called in place of `main` (a test): an ordinary exit handler
        atexit.register(call)


def end_quickly(status: int) -> None:
    """End this process with `status` once every exit handler has run, skipping teardown."""
    _status.append(status)


def skip_teardown() -> None:
    for call in _last:
        with contextlib.suppress(Exception):
            call()
    if _status:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(_status[-1])
