"""deployments/prefect.yaml, written from the scenario registry so the two never disagree.

    python -m mmflow.deployments.prefect_yaml > deployments/prefect.yaml

(`make prefect-yaml` does it; a test fails when the committed file differs from this output.)
Each registered scenario gets a deployment started by its uploads (the webhook's event), and
the invoice scenario a nightly batch over MMFLOW_BATCH_SOURCE. Entrypoints are module paths, so
a worker imports the installed mmflow from any working directory.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

import yaml

from mmflow.deployments.webhook import EVENT_NAME, UPLOAD_PARAMETERS
from mmflow.flows import registry
from mmflow.flows.observe import ALERT_EVENT
from mmflow.tasks.eval.results import Tier

POOL = "mmflow-process"
BATCH_SCENARIO = "invoice"
BATCH_CRON = "0 2 * * *"
EVAL_CRON: dict[Tier, str] = {Tier.DOMAIN: "0 3 * * *"}  # nightly, after the batch
EVAL_WHEN = {
    Tier.CORE: "on every change (CI runs it too: `mmflow eval run core`)",
    Tier.DOMAIN: "nightly",
    Tier.STRESS: "before a release",
}

HEADER = """\
# mmflow deployments: one per scenario, started by uploads (deployments/webhook.py), plus a
# nightly invoice batch over a configured folder or s3:// prefix, and the evaluation tiers
# (core, domain nightly, stress) gated against their committed baselines (docs/evaluation.md).
# Written by `python -m mmflow.deployments.prefect_yaml` from the scenario registry
# (flows/registry.py): edit the registry, not this file.
#
#   prefect work-pool create mmflow-process --type process
#   MMFLOW_BATCH_SOURCE=s3://bucket/invoices \\
#     prefect --no-prompt deploy --all --prefect-file deployments/prefect.yaml
#   prefect worker start --pool mmflow-process
#
# `{{ $VAR }}` is read from the environment of `prefect deploy`: PWD (outputs default to
# out/<name> under the folder you deploy from, as an absolute path) and MMFLOW_BATCH_SOURCE
# (the folder or s3:// prefix the nightly batch reads; a batch run without one fails at once
# and says so). Change `out` here, per run, or in the UI form (an s3:// prefix works).
# Parameters are the flows' Pydantic-typed arguments, so the UI renders a form per deployment
# and the server refuses values the models reject (enforce_parameter_schema).
# The evaluation reads the public sets from MMFLOW_EVAL_DATA and records its history in
# MMFLOW_EVAL_DATABASE_URL, both read from the worker's environment when a run starts.
"""


def _entrypoint(reference: str) -> str:
    """`package.module:function` → Prefect's module-path entrypoint `package.module.function`."""
    return reference.replace(":", ".")


def document() -> dict[str, Any]:
    deployments: list[dict[str, Any]] = [
        {
            "name": scenario.name,
            "entrypoint": _entrypoint(scenario.flow),
            "description": scenario.summary,
            "tags": ["mmflow", scenario.name, *scenario.tags],
            "work_pool": {"name": POOL, "job_variables": {}},
            "enforce_parameter_schema": True,
            "parameters": {"out": f"{{{{ $PWD }}}}/out/{scenario.name}"},
            "triggers": [
                {
                    "type": "event",
                    "name": f"mmflow {scenario.name} upload",
                    "enabled": True,
                    "expect": [EVENT_NAME],
                    "match": {
                        "prefect.resource.id": "mmflow.upload.*",
                        "mmflow.scenario": scenario.name,
                    },
                    "parameters": copy.deepcopy(UPLOAD_PARAMETERS),
                }
            ],
        }
        for scenario in registry.scenarios()
    ]
    deployments.append(
        {
            "name": f"{BATCH_SCENARIO}-batch",
            "entrypoint": "mmflow.flows.batch.batch_flow",
            "description": f"Nightly {BATCH_SCENARIO} batch over MMFLOW_BATCH_SOURCE; resumes "
            "where the last night stopped.",
            "tags": ["mmflow", BATCH_SCENARIO, "batch"],
            "work_pool": {"name": POOL, "job_variables": {}},
            "enforce_parameter_schema": True,
            "parameters": {
                "source": "{{ $MMFLOW_BATCH_SOURCE }}",
                "out": f"{{{{ $PWD }}}}/out/{BATCH_SCENARIO}-batch",
                "scenario": BATCH_SCENARIO,
            },
            "schedules": [{"cron": BATCH_CRON, "timezone": "UTC", "active": True}],
        }
    )
    deployments += [eval_deployment(tier) for tier in Tier]
    return {"name": "mmflow", "prefect-version": "3.9.1", "deployments": deployments}


def eval_deployment(tier: Tier) -> dict[str, Any]:
    """The evaluation of one tier; the domain tier on a nightly schedule."""
    deployment: dict[str, Any] = {
        "name": f"eval-{tier.value}",
        "entrypoint": "mmflow.flows.evaluation.eval_flow",
        "description": f"Evaluate the {tier.value} tier against its gold data, {EVAL_WHEN[tier]}; "
        "fails on a regression against the accepted baseline.",
        "tags": ["mmflow", "eval", tier.value],
        "work_pool": {"name": POOL, "job_variables": {}},
        "enforce_parameter_schema": True,
        "parameters": {"tier": tier.value, "out": "{{ $PWD }}/out/eval"},
    }
    if tier in EVAL_CRON:
        deployment["schedules"] = [{"cron": EVAL_CRON[tier], "timezone": "UTC", "active": True}]
    if tier is Tier.CORE:
        deployment["triggers"] = [error_rate_automation()]
    return deployment


def error_rate_automation() -> dict[str, Any]:
    """The example automation on mmflow's per-run alert events (docs/observability.md): a run
    whose failed inputs cross the error-rate threshold starts the core evaluation, so a
    regression in the code shows in the gate (and its report) next to the failing run."""
    return {
        "type": "event",
        "name": "mmflow error rate: run the core evaluation",
        "enabled": True,
        "expect": [f"{ALERT_EVENT}.firing"],
        "match": {"prefect.resource.id": "mmflow.alert.error_rate"},
        "parameters": {"tier": Tier.CORE.value, "out": "{{ $PWD }}/out/eval"},
    }


def render() -> str:
    return HEADER + "\n" + yaml.safe_dump(document(), sort_keys=False, width=100)


if __name__ == "__main__":
    sys.stdout.write(render())
