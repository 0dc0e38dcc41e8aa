"""`mmflow costs`: what model calls cost, by tenant, feature, model or scenario, from the ledger.

The ledger (tasks/ledger.py) has one row per model call; this command sums them over a period
and prints a table, and writes the same table as a Prefect artifact (`mmflow-costs-by-<group>`)
so the numbers an operator saw in a terminal can be found later in the UI. `--pareto` keeps
only the costliest groups that together make 80% of the cost (docs/observability.md).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mmflow.cli.console import fail, note, print_table
from mmflow.tasks.ledger import CostGrouping

if TYPE_CHECKING:
    from mmflow.tasks.ledger import CostLine

_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def since_of(text: str, now: datetime | None = None) -> datetime:
    """`7d`, `24h`, `30m`, `2w` back from now, or an ISO date/time (UTC when no zone)."""
    now = now or datetime.now(UTC)
    matched = re.fullmatch(r"(\d+)\s*([mhdw])", text.strip())
    if matched:
        return now - timedelta(**{_UNITS[matched[2]]: int(matched[1])})
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        message = f"{text!r}: write 7d, 24h, 30m, 2w or an ISO date such as 2026-11-01"
        raise ValueError(message) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def usd(amount: Decimal) -> str:
    return f"{amount:.6f}"


def table_rows(lines: list[CostLine], by: CostGrouping) -> list[dict[str, Any]]:
    """The rows the terminal table and the artifact both show."""
    return [
        {
            by.value: line.key if line.key is not None else "(none)",
            "calls": line.calls,
            "refused": line.refused,
            "image_tokens": line.image_tokens,
            "prompt_tokens": line.prompt_tokens,
            "output_tokens": line.output_tokens,
            "estimated_usd": usd(line.estimated_usd),
            "actual_usd": usd(line.actual_usd),
            "share": f"{line.share:.1%}",
            "cumulative": f"{line.cumulative_share:.1%}",
        }
        for line in lines
    ]


def publish_artifact(rows: list[dict[str, Any]], by: CostGrouping, title: str) -> None:
    from mmflow.cli.run import prefect_api
    from mmflow.flows.costs import publish_costs

    prefect_api()
    publish_costs(by.value, rows, title)


def costs(
    since: Annotated[
        str, typer.Option(help="Period: 7d, 24h, 30m, 2w back from now, or an ISO date.")
    ] = "7d",
    by: Annotated[
        CostGrouping, typer.Option(case_sensitive=False, help="Group the calls by this label.")
    ] = CostGrouping.TENANT,
    pareto: Annotated[
        bool,
        typer.Option(help="Only the costliest groups that together make 80% of the cost."),
    ] = False,
    ledger: Annotated[
        str | None,
        typer.Option(help="Ledger URL (default: MMFLOW_LEDGER_URL, else the embedded SQLite)."),
    ] = None,
    artifact: Annotated[
        bool, typer.Option(help="Also write the table as a Prefect artifact.")
    ] = True,
) -> None:
    """What model calls cost over a period, by tenant, feature, model or scenario."""
    from mmflow.tasks import telemetry_settings
    from mmflow.tasks.ledger import CostLedger
    from mmflow.tasks.ledger import pareto as pareto_of

    try:
        start = since_of(since)
    except ValueError as error:
        raise fail("Invalid --since", str(error)) from error
    url = ledger or telemetry_settings.ledger_url()
    lines = CostLedger(url).cost_lines(start, by)
    if pareto:
        lines = pareto_of(lines)
    rows = table_rows(lines, by)
    total = sum((line.actual_usd for line in lines), Decimal("0"))
    view = " (the groups that make 80% of the cost)" if pareto else ""
    title = f"model costs by {by.value} since {start:%Y-%m-%d %H:%M} UTC{view}: ${usd(total)}"
    if not rows:
        note(f"no model calls in the ledger since {start:%Y-%m-%d %H:%M} UTC")
    print_table(
        title, list(rows[0]) if rows else [by.value], [list(map(str, r.values())) for r in rows]
    )
    if artifact:
        publish_artifact(rows, by, title)
