"""The cost ledger and `mmflow costs`: two tenants' real image runs, the OpenAI SDK driven
against the local wire-format server (tests/fakeproviders.py), give one ledger row per model
call, and a `--by tenant` table (printed and as a Prefect artifact) that matches the ledger."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from mmflow.blocks.providers import OpenAIProvider
from mmflow.cli.costs import since_of
from mmflow.flows.image import image_flow
from mmflow.flows.runs import RunSettings
from mmflow.tasks.image import ImageTask
from mmflow.tasks.ledger import CostGrouping, CostLedger, CostLine, pareto, with_shares
from tests.fakeproviders import OPENAI_CHAT, FakeServer, Recorded, Reply, openai_chat, saved
from tests.imagesamples import chart_image, png

pytestmark = pytest.mark.slow

ANSWERS = {
    "ChartAnswer": json.dumps(
        {
            "chart_type": "bar",
            "title": "Sales",
            "x_label": None,
            "y_label": None,
            "series": [{"name": "sales", "labels": ["R1"], "values": [40.0]}],
        }
    ),
    "Synthesis": json.dumps({"summary": "Two charts.", "common_points": [], "differences": []}),
    "Description": json.dumps({"description": "A bar chart.", "objects": ["bars"]}),
}


@pytest.fixture
def server() -> Iterator[FakeServer]:
    def answer(req: Recorded) -> Reply:
        schema = req.json()["response_format"]["json_schema"]["name"]
        return openai_chat(ANSWERS[schema], prompt_tokens=1200, completion_tokens=80)

    with FakeServer() as fake:
        fake.on("POST", OPENAI_CHAT, answer)
        yield fake


def two_tenants_run(tmp_path: Path, server: FakeServer) -> None:
    """acme: two charts (two vision calls and a synthesis); globex: one image described."""
    provider = saved(OpenAIProvider(api_key="sk-test", base_url=f"{server.url}/v1"))
    for seed in range(3):
        (tmp_path / f"chart-{seed}.png").write_bytes(png(chart_image(seed, engine="pillow")))
    image_flow(
        inputs=[str(tmp_path / "chart-0.png"), str(tmp_path / "chart-1.png")],
        out=str(tmp_path / "acme"),
        task=ImageTask.CHART,
        provider=provider,
        max_usd=Decimal("1"),
        run=RunSettings(cache=False, tenant="acme", feature="dashboards"),
    )
    image_flow(
        inputs=[str(tmp_path / "chart-2.png")],
        out=str(tmp_path / "globex"),
        task=ImageTask.DESCRIBE,
        provider=provider,
        run=RunSettings(cache=False, tenant="globex", feature="alt-text"),
    )


def test_two_tenants_runs_give_a_costs_table_by_tenant_that_matches_the_ledger(
    prefect_server: str, tmp_path: Path, server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from typer.testing import CliRunner

    from mmflow.cli.app import app
    from mmflow.cli.console import console

    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    monkeypatch.setenv("MMFLOW_LEDGER_URL", url)
    monkeypatch.setattr(console, "width", 200)  # whole numbers on one line, whatever the terminal
    two_tenants_run(tmp_path, server)

    rows = CostLedger(url).rows()
    assert len(rows) == len(server.sent(OPENAI_CHAT)) == 4  # one row per model call
    assert {(r.tenant, r.feature, r.scenario, r.model) for r in rows} == {
        ("acme", "dashboards", "image", "gpt-4o"),
        ("globex", "alt-text", "image", "gpt-4o"),
    }
    assert all(r.estimated_usd > 0 and r.actual_usd > 0 and r.prompt_tokens == 1200 for r in rows)
    assert len({r.trace_id for r in rows if r.tenant == "acme"}) == 3  # two inputs + the run's
    spent: dict[str | None, Decimal] = defaultdict(Decimal)
    for row in rows:
        spent[row.tenant] += row.actual_usd

    result = CliRunner().invoke(app, ["costs", "--since", "7d", "--by", "tenant"])
    assert result.exit_code == 0, result.output
    for tenant, amount in spent.items():
        assert f"{amount:.6f}" in result.output, tenant

    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["mmflow-costs-by-tenant"])),
            limit=1,
        )
    table = json.loads(str(artifact.data))
    assert {r["tenant"]: Decimal(r["actual_usd"]) for r in table} == {
        t: amount.quantize(Decimal("0.000001")) for t, amount in spent.items()
    }
    assert {r["tenant"]: r["calls"] for r in table} == {"acme": 3, "globex": 1}
    assert table[0]["tenant"] == "acme"  # costliest first

    by_feature = CliRunner().invoke(app, ["costs", "--by", "feature", "--pareto", "--no-artifact"])
    assert by_feature.exit_code == 0, by_feature.output
    # dashboards alone is 75% of the cost: the view needs alt-text too to reach 80%
    assert "dashboards" in by_feature.output and "alt-text" in by_feature.output
    assert "75.0%" in by_feature.output and "100.0%" in by_feature.output


def test_the_pareto_view_keeps_the_fewest_groups_that_make_80_percent() -> None:
    def line(key: str, usd: str) -> CostLine:
        return CostLine(
            key=key,
            calls=1,
            refused=0,
            image_tokens=0,
            prompt_tokens=0,
            output_tokens=0,
            estimated_usd=Decimal(usd),
            actual_usd=Decimal(usd),
        )

    lines = with_shares([line("c", "5"), line("a", "70"), line("b", "15"), line("d", "10")])
    assert [x.key for x in lines] == ["a", "b", "d", "c"]
    assert [x.key for x in pareto(lines)] == ["a", "b"]  # 70% then 85%


def test_since_reads_durations_and_dates() -> None:
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    assert since_of("7d", now) == now - timedelta(days=7)
    assert since_of("36h", now) == now - timedelta(hours=36)
    assert since_of("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="7d"):
        since_of("last week", now)


def test_rows_older_than_the_period_are_left_out(tmp_path: Path) -> None:
    from mmflow.tasks.ledger import LedgerRow

    ledger = CostLedger(f"sqlite:///{tmp_path / 'l.sqlite'}")
    now = datetime.now(UTC)
    for days, usd in ((10, "1"), (1, "2")):
        ledger.add(
            LedgerRow(
                at=now - timedelta(days=days),
                run_id="r",
                trace_id="0" * 31 + "1",
                tenant="acme",
                scenario="image",
                provider="openai",
                model="gpt-4o",
                operation="extract",
                actual_usd=Decimal(usd),
                outcome="ok",
            )
        )
    (week,) = ledger.cost_lines(now - timedelta(days=7), CostGrouping.TENANT)
    assert week.actual_usd == Decimal("2") and week.calls == 1
