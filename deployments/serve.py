"""Serve every mmflow deployment from this process: the no-worker way to run the deployments.

`prefect deploy` (deployments/prefect.yaml) + a process worker is the production path; `mmflow
serve` builds the same deployments in Python from the scenario registry — one per scenario with
its upload trigger, plus the scheduled batch when a source is given — and runs their flow runs
here until Ctrl-C, for users without a work pool. By default each run gets a process of its own
(Prefect's runner); `in_process` runs them in threads of this one, the fast path for uploads
(deployments/in_process.py, docs/webhook.md "Fast path").

The two ways register deployments under the same names, so they cannot both own one: serve
refuses to take over a deployment a work pool runs (it would change its entrypoint and pool
under the worker, and leave two automations per upload), and says how to choose.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from mmflow.deployments.webhook import upload_trigger
from mmflow.flows import registry
from mmflow.tasks.errors import MmflowError
from mmflow.tasks.persist import join

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

BATCH_CRON = "0 2 * * *"  # nightly, UTC (as in prefect.yaml)


class DeploymentConflict(MmflowError):
    """A deployment serve would register is already run by a work pool."""


def batch_deployment_name(scenario: str) -> str:
    return f"{scenario}-batch"


def build_deployments(
    outputs: str, batch_source: str | None = None, batch_scenario: str = "invoice"
) -> list[RunnerDeployment]:
    """One deployment per registered scenario, started by uploads; the scheduled batch of
    `batch_scenario` only with a source."""
    from prefect.schedules import Cron
    from prefect.types.entrypoint import EntrypointType

    from mmflow.flows.batch import batch_flow, check_source

    # `to_deployment` is sync-compatible (typed as "or a coroutine"); called here, it is not.
    deployments: list[Any] = [
        scenario.load_flow().to_deployment(
            scenario.name,
            parameters={"out": join(outputs, scenario.name)},
            triggers=[upload_trigger(scenario.name)],
            tags=["mmflow", scenario.name, *scenario.tags],
            description=scenario.summary,
            # Importable from any working directory, as the worker's deployments are.
            entrypoint_type=EntrypointType.MODULE_PATH,
        )
        for scenario in registry.scenarios()
    ]
    if batch_source is not None:
        deployments.append(
            batch_flow.to_deployment(
                batch_deployment_name(batch_scenario),
                parameters={
                    "source": check_source(batch_source),
                    "out": join(outputs, batch_deployment_name(batch_scenario)),
                    "scenario": batch_scenario,
                },
                schedule=Cron(BATCH_CRON, timezone="UTC"),
                tags=["mmflow", batch_scenario, "batch"],
                description=f"Nightly {batch_scenario} batch over {batch_source}.",
                entrypoint_type=EntrypointType.MODULE_PATH,
            )
        )
    return cast("list[RunnerDeployment]", deployments)


def pool_owned(deployments: list[RunnerDeployment]) -> list[str]:
    """Which of these deployments already exist on the server with a work pool."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    owned = []
    with get_client(sync_client=True) as client:
        for deployment in deployments:
            full = f"{deployment.flow_name}/{deployment.name}"
            try:
                existing = client.read_deployment_by_name(full)
            except ObjectNotFound:
                continue
            if existing.work_pool_name:
                owned.append(f"{full} (work pool {existing.work_pool_name})")
    return owned


def serve_all(
    outputs: str,
    batch_source: str | None = None,
    limit: int | None = None,
    batch_scenario: str = "invoice",
    in_process: bool = False,
    poll_s: float | None = None,
) -> None:
    """Register the deployments and run their flow runs until interrupted: each in a process
    of its own (Prefect's runner), or `in_process` in threads here (deployments/in_process.py).
    `poll_s` is how often the API is asked for due runs (Prefect's runner: its setting,
    `PREFECT_RUNNER_POLL_FREQUENCY`, 10 s by default; in process: 0.5 s)."""
    from prefect import serve

    deployments = build_deployments(outputs, batch_source, batch_scenario)
    owned = pool_owned(deployments)
    if owned:
        raise DeploymentConflict(
            "these deployments are run by a work pool (created by `prefect deploy`): "
            + ", ".join(owned)
            + ". Run their worker (`prefect worker start --pool …`) instead of `mmflow serve`, "
            "or delete them first (`prefect deployment delete FLOW/NAME`) to serve them here."
        )
    if in_process:
        from mmflow.deployments.in_process import (
            DEFAULT_LIMIT,
            DEFAULT_POLL_S,
            InProcessRunner,
            InProcessSettings,
            serve_until_interrupted,
        )
        from mmflow.flows import stopping

        settings = InProcessSettings(limit=limit or DEFAULT_LIMIT, poll_s=poll_s or DEFAULT_POLL_S)
        # Interrupted, running flows start no new input (flows/stopping.py), as `mmflow run`'s.
        serve_until_interrupted(InProcessRunner(deployments, settings), stopping.request_stop)
        return
    if poll_s is None:
        serve(*deployments, limit=limit)
    else:
        serve(*deployments, limit=limit, query_seconds=poll_s)
