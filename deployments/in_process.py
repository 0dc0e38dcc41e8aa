"""Run served deployments' flow runs in this process's threads: the webhook-to-result fast path.

`prefect.serve` (deployments/serve.py) polls the API every 10 s (`PREFECT_RUNNER_POLL_FREQUENCY`)
and starts every flow run in a new process (`python -m prefect.engine`), which imports Prefect
and mmflow again (~3 s here) before the run's first step; an upload's run therefore waits
seconds for work that takes a fraction of one. `InProcessRunner` registers the same deployments,
polls for their due Scheduled runs every `poll_s` (0.5 s), and runs each in a thread of this
process with Prefect's own engine (`flow_engine.run_flow`, which reads the parameters from the
flow run, validates them and reports every state): imports, the OCR engine and models stay
loaded from one run to the next. At most `limit` runs go at once; a finished run wakes the poll
so a waiting one starts at once.

How a run is taken, and why none is run twice: a run is claimed by proposing `Pending`, as
Prefect's runner and workers do. The server accepts that only from `Scheduled`, so when two
runners (or a runner and a worker) see the same run, one claim wins and the other is refused
(`PreventPendingTransitions`). A run cancelled before it was claimed is not Scheduled any more,
so it is never claimed; one cancelled between its claim and its start is refused `Running` by
the server, and the engine aborts before the flow body runs.

What it gives up (docs/webhook.md, "Fast path"): a run shares this process, so a crash or a
runaway memory use of one run takes every run here with it, CPU-bound work of concurrent runs
shares one interpreter (the GIL; native code such as ONNX and PyMuPDF releases it), and a run
that has started cannot be cancelled: a thread cannot be killed. It finishes, and the
cancellation is logged. If the process dies, its claimed runs stay Pending or Running on the
server: Prefect's heartbeats (`PREFECT_FLOWS_HEARTBEAT_FREQUENCY`) and an automation on missing
heartbeats are what mark such runs Crashed, as for any runner.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments.runner import RunnerDeployment
    from prefect.flows import Flow

logger = logging.getLogger("mmflow.serve.in_process")

DEFAULT_LIMIT = 4
DEFAULT_POLL_S = 0.5
API_RETRY_S = 5.0  # after a failed poll: the API is down or restarting; try again then
CANCEL_CHECK_S = 5.0  # how often running runs are looked at for a cancellation to warn about


class InProcessSettings(BaseModel):
    """How many runs go at once and how often the API is asked for new ones."""

    limit: int = Field(default=DEFAULT_LIMIT, ge=1, description="Most flow runs at once")
    poll_s: float = Field(
        default=DEFAULT_POLL_S, gt=0, description="Seconds between looks for due runs"
    )
    pause_on_shutdown: bool = Field(
        default=True,
        description="Pause the deployments when stopping, as `prefect.serve` does: no "
        "scheduled runs pile up while nothing serves them",
    )


class InProcessRunner:
    """Serves `deployments`: registers them, then runs their due flow runs in threads here.

    `run()` blocks until `stop()`; the runs already going are then waited for, unless
    `abandon()` is called too (their runs are marked Crashed, their threads left to die with
    the process).
    """

    def __init__(
        self, deployments: Sequence[RunnerDeployment], settings: InProcessSettings | None = None
    ) -> None:
        self.deployments = list(deployments)
        self.settings = settings or InProcessSettings()
        self._flows: dict[UUID, Flow[..., Any]] = {}
        self._running: dict[UUID, str] = {}  # flow run id → its name, while its thread runs
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._abandon = threading.Event()
        self.started = threading.Event()  # set once the deployments are registered
        self.finished_runs = 0  # runs whose thread has ended, whatever their end
        self._warned: set[UUID] = set()  # running runs whose cancellation was logged
        self._cancel_checked_at = float("-inf")

    # ------------------------------------------------------------ control, from any thread

    def stop(self) -> None:
        """Claim nothing more; `run()` returns when the runs going now have ended."""
        self._stop.set()
        self._wake.set()

    def abandon(self) -> None:
        """Stop now: the runs still going are marked Crashed and not waited for."""
        self._abandon.set()
        self.stop()

    def running(self) -> list[str]:
        """Names of the flow runs executing now."""
        with self._lock:
            return list(self._running.values())

    # ------------------------------------------------------------ the loop

    def register(self) -> dict[UUID, Flow[..., Any]]:
        """Create or update the deployments on the server (unpaused), each with its flow."""
        from prefect.flows import load_flow_from_entrypoint

        for deployment in self.deployments:
            if deployment.entrypoint is None:
                raise ValueError(f"deployment {deployment.name} has no entrypoint to load")
            # `apply` is sync-compatible (typed as "or a coroutine"); called here, it is not.
            deployment_id = cast("UUID", deployment.apply())
            self._flows[deployment_id] = load_flow_from_entrypoint(deployment.entrypoint)
        return dict(self._flows)

    def run(self) -> None:
        """Register, then poll and run until `stop()`; returns when nothing runs any more."""
        from prefect import get_client

        self.register()
        self.started.set()
        # Each run's thread starts from this thread's context: the Prefect settings in force
        # here (the API URL of a profile or a test harness) are the ones its engine uses.
        with get_client(sync_client=True) as client:
            try:
                while not self._stop.is_set():
                    self._wake.clear()
                    wait = self._poll_once(client)
                    self._note_cancellations(client)
                    self._wake.wait(wait)
                self._wait_for_running(client)
            finally:
                if self.settings.pause_on_shutdown:
                    self._pause(client)

    def _poll_once(self, client: SyncPrefectClient) -> float:
        """Claim and start as many due runs as there are free slots; the seconds to wait."""
        free = self.settings.limit - len(self.running())
        if free <= 0:
            return self.settings.poll_s  # a finishing run wakes the loop sooner
        from prefect.client.schemas.objects import FlowRun

        try:
            found = client.get_scheduled_flow_runs_for_deployments(
                deployment_ids=list(self._flows), scheduled_before=datetime.now(UTC)
            )
        except Exception as error:  # the API is down or restarting: runs wait on the server
            logger.warning("cannot read scheduled flow runs (%s); trying again", error)
            return API_RETRY_S
        # the sync client answers with response models; the engine takes flow runs
        due = [FlowRun.model_validate(run, from_attributes=True) for run in found]
        due.sort(key=lambda run: run.next_scheduled_start_time or datetime.min.replace(tzinfo=UTC))
        for flow_run in due:
            if free == 0 or self._stop.is_set():
                break
            with self._lock:
                if flow_run.id in self._running:
                    continue
            if self._claim(client, flow_run):
                self._start(flow_run)
                free -= 1
        return self.settings.poll_s

    def _claim(self, client: SyncPrefectClient, flow_run: FlowRun) -> bool:
        """Propose Pending: accepted only from Scheduled, so exactly one claimant wins."""
        from prefect.exceptions import Abort
        from prefect.states import Pending
        from prefect.utilities.engine import propose_state_sync

        try:
            state = propose_state_sync(client, Pending(), flow_run_id=flow_run.id)
        except Abort:  # another runner took it, or it was cancelled or deleted meanwhile
            return False
        except Exception as error:
            logger.warning("cannot claim flow run %s (%s)", flow_run.name, error)
            return False
        return state.is_pending()

    def _start(self, flow_run: FlowRun) -> None:
        if flow_run.deployment_id not in self._flows:  # the query asked for these only
            raise RuntimeError(f"flow run {flow_run.id} is not of a served deployment")
        flow = self._flows[flow_run.deployment_id]
        with self._lock:
            self._running[flow_run.id] = flow_run.name
        context = contextvars.copy_context()
        thread = threading.Thread(
            target=context.run,
            args=(self._execute, flow, flow_run),
            name=f"mmflow-run-{flow_run.name}",
            daemon=True,  # abandoned runs must not keep the process alive
        )
        thread.start()

    def _execute(self, flow: Flow[..., Any], flow_run: FlowRun) -> None:
        """One flow run through Prefect's engine; whatever happens, its slot is freed."""
        from prefect.exceptions import Abort
        from prefect.flow_engine import run_flow

        logger.info("flow run %s of %s starts", flow_run.name, flow.name)
        try:
            run_flow(flow, flow_run=flow_run, return_type="state")
        except Abort as refused:  # cancelled (or taken) between its claim and its start
            logger.info("flow run %s was not started: %s", flow_run.name, refused)
        except BaseException as error:  # the engine reports states itself; this is its crash
            logger.exception("flow run %s ended with an engine error", flow_run.name)
            self._mark_crashed(flow_run.id, f"the in-process runner's engine failed: {error!r}")
        finally:
            with self._lock:
                self._running.pop(flow_run.id, None)
                self.finished_runs += 1
            self._wake.set()

    # ------------------------------------------------------------ stopping

    def _wait_for_running(self, client: SyncPrefectClient) -> None:
        """Wait for the runs going now, or mark them Crashed once `abandon()` is called."""
        while True:
            with self._lock:
                left = dict(self._running)
            if not left:
                return
            if self._abandon.is_set():
                for run_id in left:
                    self._mark_crashed(
                        run_id, "the in-process runner was stopped before this run ended"
                    )
                return
            self._note_cancellations(client)
            self._wake.wait(self.settings.poll_s)
            self._wake.clear()

    def _note_cancellations(self, client: SyncPrefectClient) -> None:
        """A run cancelled while it executes here cannot be stopped: say so, once per run.
        One query for all running runs, at most every CANCEL_CHECK_S."""
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterId,
            FlowRunFilterState,
            FlowRunFilterStateName,
        )

        with self._lock:
            running = {k: v for k, v in self._running.items() if k not in self._warned}
        now = time.monotonic()
        if not running or now - self._cancel_checked_at < CANCEL_CHECK_S:
            return
        self._cancel_checked_at = now
        query = FlowRunFilter(
            id=FlowRunFilterId(any_=list(running)),
            state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Cancelling"])),
        )
        try:
            cancelling = client.read_flow_runs(flow_run_filter=query)
        except Exception:  # only a warning is at stake; the next look will do
            return
        for flow_run in cancelling:
            self._warned.add(flow_run.id)
            logger.warning(
                "flow run %s was asked to cancel, but it is running in this process and "
                "cannot be stopped: it runs to its end",
                running.get(flow_run.id, flow_run.name),
            )

    def _mark_crashed(self, run_id: UUID, message: str) -> None:
        from prefect import get_client
        from prefect.states import Crashed

        try:
            with get_client(sync_client=True) as client:
                client.set_flow_run_state(run_id, Crashed(message=message), force=True)
        except Exception as error:
            logger.warning("cannot mark flow run %s crashed (%s)", run_id, error)

    def _pause(self, client: SyncPrefectClient) -> None:
        for deployment_id in self._flows:
            try:
                client.pause_deployment(deployment_id)
            except Exception as error:
                logger.warning("cannot pause deployment %s (%s)", deployment_id, error)


def serve_until_interrupted(
    runner: InProcessRunner, on_interrupt: Callable[[], None] | None = None
) -> None:
    """`runner.run()` in a thread of its own, stopped by Ctrl-C or SIGTERM here.

    The first interrupt stops claiming and waits for the runs going now (`on_interrupt` is
    called too: the CLI asks running flows to start no new input); a second abandons them. The
    loop has a thread of its own so an interrupt never lands between a claim and the start of
    its run, which would leave the run Pending with nobody running it.
    """
    import signal

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    context = contextvars.copy_context()
    loop = threading.Thread(target=context.run, args=(runner.run,), name="mmflow-in-process")
    loop.start()
    interrupts = 0
    try:
        while loop.is_alive():
            try:
                loop.join(0.5)
            except KeyboardInterrupt:
                interrupts += 1
                if interrupts == 1:
                    running = runner.running()
                    logger.warning(
                        "stopping: waiting for %d running flow run(s)%s; interrupt again to "
                        "abandon them (they are marked Crashed)",
                        len(running),
                        f" ({', '.join(running)})" if running else "",
                    )
                    if on_interrupt is not None:
                        on_interrupt()
                    runner.stop()
                else:
                    runner.abandon()
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
