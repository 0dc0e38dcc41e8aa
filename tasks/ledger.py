"""The cost ledger: one row per model call, estimated and actual, tagged with who and what for.

One table, `mmflow_model_calls`, in SQLite (embedded, the default: a file in mmflow's data
folder) or PostgreSQL (production: `deployments/postgres.sh start` runs one), through
SQLAlchemy Core so both speak the same SQL. A row is written as each call ends, wherever the
call ran (a thread, a served deployment's subprocess, a Dask worker), so a crash later in the
input loses nothing already billed. Money is stored as whole billionths of a dollar
(`*_usd_nano`, exact integer sums in both databases); `Decimal` in code.

`mmflow costs` reads it (`cost_lines`): totals by tenant, feature, model or scenario since a
time, and the cumulative share that answers "which features drive 80% of the cost".
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from functools import cache
from typing import Any

from pydantic import BaseModel, Field

from mmflow.tasks.provider.quota import from_nano, to_nano
from mmflow.tasks.trace import InputTrace, ModelCall, redact_outgoing_text

TABLE = "mmflow_model_calls"


class LedgerRow(BaseModel):
    """One model call as the ledger keeps it."""

    at: datetime
    run_id: str
    trace_id: str
    tenant: str | None = None
    feature: str | None = None
    scenario: str
    provider: str
    model: str
    operation: str
    detail: str | None = None
    image_count: int = 0
    image_tokens: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    estimated_usd: Decimal = Decimal("0")
    actual_usd: Decimal = Decimal("0")
    cached: bool = False
    outcome: str
    error_type: str | None = None
    quota_state: str | None = None
    latency_ms: float = 0.0
    attempts: int = 0

    @classmethod
    def of_call(cls, trace: InputTrace, call: ModelCall) -> LedgerRow:
        labels = trace.labels
        return cls(
            at=datetime.fromtimestamp(call.end_ns / 1e9, UTC),
            run_id=labels.run_id,
            trace_id=trace.trace_id,
            tenant=labels.tenant,
            feature=labels.feature,
            scenario=labels.scenario,
            provider=call.provider,
            model=redact_outgoing_text(call.model),
            operation=call.operation,
            detail=call.detail,
            image_count=len(set(call.image_hashes)),
            image_tokens=call.image_tokens,  # the estimate of the images in the request
            prompt_tokens=call.prompt_tokens,
            output_tokens=call.output_tokens,
            estimated_usd=call.estimated_usd,
            actual_usd=call.actual_usd,
            cached=call.cached,
            outcome=call.outcome,
            error_type=call.error_type,
            quota_state=call.quota_state,
            latency_ms=call.latency_ms,
            attempts=call.attempts,
        )


class CostGrouping(StrEnum):
    TENANT = "tenant"
    FEATURE = "feature"
    MODEL = "model"
    SCENARIO = "scenario"


class CostLine(BaseModel):
    """Totals of one group (a tenant, a feature, …) over a period."""

    key: str | None
    calls: int
    refused: int
    image_tokens: int
    prompt_tokens: int
    output_tokens: int
    estimated_usd: Decimal
    actual_usd: Decimal
    share: float = Field(0.0, description="of the period's actual cost")
    cumulative_share: float = Field(0.0, description="this and every costlier group")


def engine_url(url: str) -> str:
    """SQLAlchemy's URL for a ledger URL: PostgreSQL through psycopg (the asyncpg URL that
    deployments/postgres.sh prints for Prefect works too), SQLite as given or as a path."""
    for prefix in (
        "postgresql+asyncpg://",
        "postgresql+psycopg2://",
        "postgresql://",
        "postgres://",
    ):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    if "://" in url:
        return url
    return f"sqlite:///{url}"


@cache
def _schema() -> tuple[Any, Any]:
    import sqlalchemy as sa

    metadata = sa.MetaData()
    money = sa.BigInteger
    table = sa.Table(
        TABLE,
        metadata,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("tenant", sa.String(128), index=True),
        sa.Column("feature", sa.String(128)),
        sa.Column("scenario", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("operation", sa.String(16), nullable=False),
        sa.Column("detail", sa.String(8)),
        sa.Column("image_count", sa.Integer, nullable=False),
        sa.Column("image_tokens", sa.Integer, nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("output_tokens", sa.Integer, nullable=False),
        sa.Column("estimated_usd_nano", money, nullable=False),
        sa.Column("actual_usd_nano", money, nullable=False),
        sa.Column("cached", sa.Boolean, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error_type", sa.String(64)),
        sa.Column("quota_state", sa.String(32)),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
    )
    return metadata, table


_engines: dict[str, Any] = {}
_engines_lock = threading.Lock()


def _engine(url: str) -> Any:
    """One engine per ledger URL and process, its table created on first use."""
    with _engines_lock:
        if url not in _engines:
            import sqlalchemy as sa

            target = engine_url(url)
            if target.startswith("sqlite:///"):
                from pathlib import Path

                Path(target.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(target, pool_pre_ping=True)
            if engine.dialect.name == "sqlite":
                _sqlite_waits_for_writers(engine)
            metadata, _ = _schema()
            metadata.create_all(engine, checkfirst=True)
            _engines[url] = engine
        return _engines[url]


def _sqlite_waits_for_writers(engine: Any) -> None:
    """Several processes append to one file: wait for the writer instead of failing, in WAL
    mode so readers (`mmflow costs`) never block writers."""
    import sqlalchemy as sa

    @sa.event.listens_for(engine, "connect")
    def _configure(connection: Any, _record: Any) -> None:
        connection.execute("PRAGMA busy_timeout = 30000")
        connection.execute("PRAGMA journal_mode = WAL")


class CostLedger:
    """The ledger at one URL (see `engine_url`); cheap to pickle, connects on first use."""

    def __init__(self, url: str) -> None:
        self.url = url

    def add(self, row: LedgerRow) -> None:
        self.add_all([row])

    def add_all(self, rows: list[LedgerRow]) -> None:
        if not rows:
            return
        _, table = _schema()
        values = []
        for row in rows:
            data = row.model_dump(exclude={"estimated_usd", "actual_usd"})
            data["estimated_usd_nano"] = to_nano(row.estimated_usd)
            data["actual_usd_nano"] = to_nano(row.actual_usd)
            values.append(data)
        with _engine(self.url).begin() as connection:
            connection.execute(table.insert(), values)

    def record_call(self, trace: InputTrace, call: ModelCall) -> None:
        """An `InputTrace.on_call` listener: the call's row, written now."""
        self.add(LedgerRow.of_call(trace, call))

    def rows(self, since: datetime | None = None) -> list[LedgerRow]:
        import sqlalchemy as sa

        _, table = _schema()
        query = sa.select(table).order_by(table.c.at, table.c.id)
        if since is not None:
            query = query.where(table.c.at >= since)
        with _engine(self.url).connect() as connection:
            found = connection.execute(query).mappings().all()
        rows = []
        for record in found:
            data = dict(record)
            data["estimated_usd"] = from_nano(data.pop("estimated_usd_nano"))
            data["actual_usd"] = from_nano(data.pop("actual_usd_nano"))
            if data["at"].tzinfo is None:  # SQLite hands back naive datetimes, stored as UTC
                data["at"] = data["at"].replace(tzinfo=UTC)
            rows.append(LedgerRow.model_validate(data))
        return rows

    def cost_lines(self, since: datetime | None, by: CostGrouping) -> list[CostLine]:
        """Totals per group, costliest first, with each group's share of the actual cost."""
        import sqlalchemy as sa

        _, table = _schema()
        key = table.c[by.value]
        billed = sa.and_(table.c.outcome == "ok", table.c.cached.is_(False))
        query = sa.select(
            key.label("key"),
            sa.func.count().label("calls"),
            sa.func.sum(sa.case((table.c.outcome == "refused", 1), else_=0)).label("refused"),
            sa.func.sum(sa.case((billed, table.c.image_tokens), else_=0)).label("image_tokens"),
            sa.func.sum(table.c.prompt_tokens).label("prompt_tokens"),
            sa.func.sum(table.c.output_tokens).label("output_tokens"),
            sa.func.sum(table.c.estimated_usd_nano).label("estimated"),
            sa.func.sum(table.c.actual_usd_nano).label("actual"),
        ).group_by(key)
        if since is not None:
            query = query.where(table.c.at >= since)
        with _engine(self.url).connect() as connection:
            found = connection.execute(query).mappings().all()
        lines = [
            CostLine(
                key=record["key"],
                calls=int(record["calls"]),
                refused=int(record["refused"] or 0),
                image_tokens=int(record["image_tokens"] or 0),
                prompt_tokens=int(record["prompt_tokens"] or 0),
                output_tokens=int(record["output_tokens"] or 0),
                estimated_usd=from_nano(int(record["estimated"] or 0)),
                actual_usd=from_nano(int(record["actual"] or 0)),
            )
            for record in found
        ]
        return with_shares(lines)


def with_shares(lines: list[CostLine]) -> list[CostLine]:
    """Costliest first, each with its share of the total and the running (Pareto) share."""
    ordered = sorted(lines, key=lambda line: (-line.actual_usd, str(line.key)))
    total = sum((line.actual_usd for line in ordered), Decimal("0"))
    running = Decimal("0")
    shared = []
    for line in ordered:
        running += line.actual_usd
        share = float(line.actual_usd / total) if total else 0.0
        cumulative = float(running / total) if total else 0.0
        shared.append(line.model_copy(update={"share": share, "cumulative_share": cumulative}))
    return shared


def pareto(lines: list[CostLine], threshold: float = 0.8) -> list[CostLine]:
    """The fewest costliest groups that together make `threshold` of the cost (the 80/20 view)."""
    chosen = []
    for line in lines:
        chosen.append(line)
        if line.cumulative_share >= threshold - 1e-12:
            break
    return chosen
