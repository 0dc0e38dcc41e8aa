"""The cost table as a Prefect artifact: `mmflow costs` computes it from the ledger
(tasks/ledger.py) and hands it to this flow, so the table an operator printed is also kept in
Prefect's UI under `mmflow-costs-by-<group>` (an artifact belongs to a flow run)."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact


@flow(name="mmflow-costs", log_prints=False, persist_result=False)
def publish_costs(group: str, table: list[dict[str, Any]], description: str) -> str:
    """Write the table; returns the artifact's key."""
    key = f"mmflow-costs-by-{group}"
    create_table_artifact(key=key, table=table, description=description)
    return key
