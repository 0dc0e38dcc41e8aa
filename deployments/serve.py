"""Serve every mmflow deployment from this process: the no-worker way to run prefect.yaml.

`prefect deploy` + a process worker is the production path; `mmflow serve` builds the same four
deployments in Python (same parameters, nightly batch schedule, upload triggers) and runs their
flow runs here until Ctrl-C, for users without a work pool.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from mmflow.deployments.webhook import Scenario, upload_trigger
from mmflow.tasks.persist import join

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

BATCH_CRON = "0 2 * * *"  # nightly, UTC (as in prefect.yaml)


def build_deployments(outputs: str, batch_source: str | None = None) -> list[RunnerDeployment]:
    """The deployments of prefect.yaml as runner deployments; the batch only with a source."""
    from prefect.schedules import Cron

    from mmflow.flows.batch import batch_flow
    from mmflow.flows.image import image_flow
    from mmflow.flows.invoice import invoice_flow
    from mmflow.flows.meeting import meeting_flow
    from mmflow.tasks.image import ImageOptions
    from mmflow.tasks.invoice import InvoiceOptions
    from mmflow.tasks.meeting import MeetingOptions

    invoice_parameters: dict[str, Any] = {
        "options": InvoiceOptions().model_dump(mode="json"),
        "cache": True,
        "workers": 2,
    }
    # `to_deployment` is sync-compatible (typed as "or a coroutine"); called here, it is not.
    deployments: list[Any] = [
        invoice_flow.to_deployment(
            "invoice",
            parameters={"out": join(outputs, "invoice"), **invoice_parameters},
            triggers=[upload_trigger(Scenario.INVOICE)],
            tags=["mmflow", "invoice"],
        ),
        meeting_flow.to_deployment(
            "meeting",
            parameters={
                "out": join(outputs, "meeting"),
                "options": MeetingOptions().model_dump(mode="json"),
                "cache": True,
                "workers": 2,
            },
            triggers=[upload_trigger(Scenario.MEETING)],
            tags=["mmflow", "meeting"],
        ),
        image_flow.to_deployment(
            "image",
            parameters={
                "out": join(outputs, "image"),
                "options": ImageOptions().model_dump(mode="json"),
                "cache": True,
            },
            triggers=[upload_trigger(Scenario.IMAGE)],
            tags=["mmflow", "image"],
        ),
    ]
    if batch_source is not None:
        deployments.append(
            batch_flow.to_deployment(
                "invoice-batch",
                parameters={
                    "source": batch_source,
                    "out": join(outputs, "invoice-batch"),
                    "scenario": "invoice",
                    "invoice": invoice_parameters["options"],
                    "cache": True,
                    "workers": 2,
                },
                schedule=Cron(BATCH_CRON, timezone="UTC"),
                tags=["mmflow", "invoice", "batch"],
            )
        )
    return cast("list[RunnerDeployment]", deployments)


def serve_all(outputs: str, batch_source: str | None = None, limit: int | None = None) -> None:
    """Register the deployments and run their flow runs in this process until interrupted."""
    from prefect import serve

    serve(*build_deployments(outputs, batch_source), limit=limit)
