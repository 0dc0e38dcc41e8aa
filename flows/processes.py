"""Task runs in worker processes on this machine, started warm from a fork server.

Threads share one interpreter lock: a batch of text PDFs is pure-Python work, so a second
thread only adds hand-offs (docs/performance.md: 2 threads ran 1.29× a plain loop). Worker
processes escape the lock, if they start cheaply. Prefect's `ProcessPoolTaskRunner` spawns
each worker from a fresh interpreter, which imports Prefect and the pipeline again (~2 s a
worker, for every flow run). This runner is that task runner on a `multiprocessing` fork
server instead: the fork server imports Prefect and the pipeline once, and each worker is a
fork of it, ready in milliseconds. A long-lived process (a benchmark, a deployment served in
process) keeps its fork server for all its flow runs; a one-off command pays its start once.

Prefect forwards each task run's events and logs from the workers to this process's API
client. This module adds what mmflow's runs share within one process:

- a stop request (flows/stopping.py): a run asked to stop starts no new input in any worker;
- Ctrl-C: workers ignore SIGINT, which the terminal sends to the whole process group, so the
  flow's process alone decides, and a stop ends every input in the manifest.

A group of inputs is one task run in a worker (flows/runs.py), and a task run in a worker
costs ~0.35 s more than in a thread, so groups are larger here (`default_group_size`).
Progress arrives when a group ends.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any, Self

from prefect.task_runners import (
    ProcessPoolTaskRunner,
    TaskRunner,
    ThreadPoolTaskRunner,
    _initialize_process_pool_worker,
)

from mmflow.flows import stopping

# What a worker needs, imported once by the fork server: Prefect's task engine and client, and
# the scenarios' flows and steps (each imports its heavy libraries, such as OCR, on first use).
PRELOAD = [
    "prefect.task_engine",
    "prefect.client.orchestration",
    "prefect.events.clients",
    "prefect.assets",
    "pymupdf",
    "mmflow.flows.runs",
    "mmflow.flows.invoice",
    "mmflow.flows.image",
    "mmflow.flows.meeting",
    "mmflow.flows.batch",
    "mmflow.tasks.invoice",
]

_in_worker = False  # set in a worker process by `_worker_starts`


def _worker_starts(stop: Any) -> None:
    """Run once in each worker process, after Prefect's own set-up."""
    global _in_worker
    _in_worker = True
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the flow's process handles Ctrl-C
    stopping.follow(stop)


def fork_server_context() -> multiprocessing.context.BaseContext:
    """The fork server context, its preload set if it has not started yet."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def start_fork_server() -> None:
    """Start the fork server now, without waiting: it imports while the flow run starts."""
    import multiprocessing.forkserver

    fork_server_context()
    multiprocessing.forkserver.ensure_running()


class WarmProcessPoolTaskRunner(ProcessPoolTaskRunner):
    """Prefect's process pool task runner, its workers forked from a warm fork server."""

    def duplicate(self) -> Self:
        # Prefect enters a copy of the flow's task runner around each task run it hydrates in a
        # worker. A worker starts no pool of its own: a task submitted there runs in a thread.
        if _in_worker:
            return ThreadPoolTaskRunner(max_workers=1)  # type: ignore[return-value]
        return super().duplicate()

    def __enter__(self) -> Self:
        # Prefect's ProcessPoolTaskRunner.__enter__ (prefect==3.9.1), on the fork server
        # context rather than "spawn", and with a stop event the workers follow.
        TaskRunner.__enter__(self)
        context = fork_server_context()
        stop = context.Event()
        self._shared = ExitStack()
        self._shared.enter_context(stopping.forwarded_to(stop))
        self._subprocess_message_queue = context.Queue()
        self._message_forwarding_thread = threading.Thread(
            target=self._forward_subprocess_messages,
            name="ProcessPoolTaskRunnerMessageForwarder",
            daemon=True,
        )
        self._message_forwarding_thread.start()
        try:
            self._executor = ProcessPoolExecutor(
                max_workers=self._max_workers,
                mp_context=context,
                initializer=_initialize_process_pool_worker,
                initargs=(self._subprocess_message_queue, _worker_starts, (stop,)),
            )
            self._resolver_executor = ThreadPoolExecutor(max_workers=self._max_workers)
        except Exception:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        try:
            super().__exit__(exc_type, exc_value, traceback)
        finally:
            self._shared.close()
