"""The evaluation history: every figure of every run, kept as a time series in one table.

One row per (run, dataset, metric), with the tier, the code version and whether the run was
accepted as the baseline. It lives in the same database as the cost ledger, in its own table
`eval_results`: by default the SQLite file `ledger.sqlite` in mmflow's data folder, or the
database `MMFLOW_LEDGER_URL` names; `MMFLOW_EVAL_DATABASE_URL` puts the history elsewhere. Any
SQLAlchemy URL works (`sqlite:////var/lib/mmflow/ledger.sqlite`,
`postgresql+psycopg://user:password@host/mmflow`). Nothing else writes `eval_results`, so the
ledger's tables and this one sit side by side without knowing of each other.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from mmflow.tasks.errors import MissingDependency
from mmflow.tasks.eval.results import EvalRun, Tier
from mmflow.tasks.ledger import engine_url
from mmflow.tasks.telemetry_settings import ledger_url

DATABASE_URL_ENV = "MMFLOW_EVAL_DATABASE_URL"
TABLE_NAME = "eval_results"
INSTALL = "pip install 'mmflow[eval]'"


def database_url(explicit: str | None = None) -> str:
    """The URL given, else `MMFLOW_EVAL_DATABASE_URL`, else the ledger's database
    (`MMFLOW_LEDGER_URL`, else `ledger.sqlite` in mmflow's data folder)."""
    return explicit or os.environ.get(DATABASE_URL_ENV) or ledger_url()


class HistoryRow(BaseModel):
    """One recorded figure."""

    run_id: str
    recorded_at: datetime
    tier: str
    dataset: str
    metric: str
    value: float
    higher_is_better: bool
    is_primary: bool
    item_count: int | None
    mmflow_version: str
    git_commit: str | None
    git_dirty: bool | None
    accepted: bool


def _sqlalchemy() -> Any:
    try:
        import sqlalchemy
    except ImportError as exc:
        raise MissingDependency("SQLAlchemy (the evaluation history)", INSTALL) from exc
    return sqlalchemy


def _table(sa: Any, metadata: Any) -> Any:
    return sa.Table(
        TABLE_NAME,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), nullable=False, index=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tier", sa.String(16), nullable=False, index=True),
        sa.Column("dataset", sa.String(64), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("higher_is_better", sa.Boolean, nullable=False),
        sa.Column("is_primary", sa.Boolean, nullable=False),
        sa.Column("item_count", sa.Integer, nullable=True),
        sa.Column("mmflow_version", sa.String(64), nullable=False),
        sa.Column("git_commit", sa.String(40), nullable=True),
        sa.Column("git_dirty", sa.Boolean, nullable=True),
        sa.Column("accepted", sa.Boolean, nullable=False, default=False),
    )


class HistoryStore:
    """Appends evaluation runs and reads them back as series; creates its table on first use."""

    def __init__(self, url: str | None = None) -> None:
        sa = _sqlalchemy()
        self.url = database_url(url)
        if self.url.startswith("sqlite:///"):
            Path(self.url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self._sa = sa
        self._engine = sa.create_engine(engine_url(self.url))  # PostgreSQL through psycopg
        metadata = sa.MetaData()
        self._table = _table(sa, metadata)
        metadata.create_all(self._engine)

    @contextmanager
    def _begin(self) -> Iterator[Any]:
        with self._engine.begin() as connection:
            yield connection

    def close(self) -> None:
        self._engine.dispose()

    def append(self, run: EvalRun) -> int:
        """Every metric of every dataset that ran; returns how many rows were written."""
        recorded_at = (
            run.started_at if run.started_at.tzinfo else run.started_at.replace(tzinfo=UTC)
        )
        rows = [
            {
                "run_id": run.run_id,
                "recorded_at": recorded_at,
                "tier": run.tier.value,
                "dataset": outcome.dataset,
                "metric": metric.name,
                "value": float(metric.value),
                "higher_is_better": metric.higher_is_better,
                "is_primary": metric.primary,
                "item_count": metric.count,
                "mmflow_version": run.code.mmflow,
                "git_commit": run.code.git_commit,
                "git_dirty": run.code.git_dirty,
                "accepted": False,
            }
            for outcome in run.outcomes
            for metric in outcome.metrics
        ]
        if rows:
            with self._begin() as connection:
                connection.execute(self._table.insert(), rows)
        return len(rows)

    def rows(self, tier: Tier | str, primary_only: bool = False) -> list[HistoryRow]:
        """A tier's figures, oldest first."""
        table, sa = self._table, self._sa
        query = sa.select(*[c for c in table.columns if c.name != "id"]).where(
            table.c.tier == str(tier)
        )
        if primary_only:
            query = query.where(table.c.is_primary.is_(True))
        query = query.order_by(table.c.recorded_at, table.c.id)
        with self._begin() as connection:
            found = connection.execute(query).mappings().all()
        return [HistoryRow.model_validate(dict(row)) for row in found]

    def run_ids(self, tier: Tier | str) -> list[str]:
        """The tier's runs, oldest first."""
        seen: dict[str, None] = {}
        for row in self.rows(tier):
            seen.setdefault(row.run_id, None)
        return list(seen)

    def mark_accepted(self, run_id: str) -> int:
        """Flag a run's rows as the accepted baseline (the trend chart marks them)."""
        with self._begin() as connection:
            done = connection.execute(
                self._table.update().where(self._table.c.run_id == run_id).values(accepted=True)
            )
        return int(done.rowcount or 0)
