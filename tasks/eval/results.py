"""What an evaluation run produces: figures per dataset, and the run they belong to."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class Tier(StrEnum):
    """How often a set of datasets is evaluated (docs/evaluation.md)."""

    CORE = "core"  # every change, in CI: minutes
    DOMAIN = "domain"  # nightly: every public set, the provider-backed datasets
    STRESS = "stress"  # before a release: bad inputs, degraded scans, noisy audio


class Metric(BaseModel):
    """One figure of one dataset. Rates are fractions (0.93, not 93%), so the gate's 2%
    tolerance is an absolute 0.02 on every metric alike."""

    name: str
    value: float
    higher_is_better: bool
    primary: bool = Field(False, description="gated: a drop beyond the tolerance fails the run")
    count: int | None = Field(None, description="what it was computed over: values, words, …")


class DatasetOutcome(BaseModel):
    """A dataset's figures in one run, or why it could not be evaluated."""

    dataset: str
    kind: str
    metrics: list[Metric] = Field(default_factory=list)
    error: str | None = None  # it could not run (missing data, a crash): the gate fails
    skipped: str | None = None  # left out on purpose (no provider given): not gated
    seconds: float = 0.0
    notes: list[str] = Field(default_factory=list)  # what a reader should know (misses, …)

    def metric(self, name: str) -> Metric | None:
        return next((m for m in self.metrics if m.name == name), None)


class CodeVersion(BaseModel):
    """Which code produced the figures: the package version and, in a checkout, the commit."""

    mmflow: str
    git_commit: str | None = None
    git_dirty: bool | None = None

    @property
    def label(self) -> str:
        if self.git_commit is None:
            return self.mmflow
        return f"{self.mmflow} @ {self.git_commit[:10]}{'+dirty' if self.git_dirty else ''}"


class EvalRun(BaseModel):
    """One evaluation of a tier: every dataset's outcome, with when and which code."""

    run_id: str
    tier: Tier
    started_at: datetime
    code: CodeVersion
    outcomes: list[DatasetOutcome]
    seconds: float = 0.0
    extra: dict[str, Any] = Field(default_factory=dict)

    def outcome(self, dataset: str) -> DatasetOutcome | None:
        return next((o for o in self.outcomes if o.dataset == dataset), None)
