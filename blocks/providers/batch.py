"""A named batch job whose state survives restarts: a rerun continues polling the batch it
already submitted instead of paying for a second one."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import fsspec
from pydantic import BaseModel, Field

from mmflow.blocks.providers.base import ProviderBlock
from mmflow.blocks.providers.cache import schema_fingerprint
from mmflow.blocks.providers.resilience import Clock, SystemClock
from mmflow.tasks.provider.budget import Budget
from mmflow.tasks.provider.results import BatchItemResult, BatchRequest, BatchStatus

T = TypeVar("T", bound=BaseModel)


class BatchState(BaseModel):
    """What is written to `<state_dir>/<name>.json`."""

    name: str
    provider: str
    batch_id: str
    schema_key: str
    custom_ids: list[str]
    estimate_usd: Decimal
    submitted_at: datetime
    last_status: str = "submitted"
    collected: bool = False
    cost_usd: Decimal | None = None
    polls: int = Field(default=0, description="status checks made, across restarts")


class BatchJob:
    """submit → poll → collect for one named batch, with its state in a JSON file."""

    def __init__(
        self,
        provider: ProviderBlock,
        name: str,
        state_dir: str,
        *,
        clock: Clock | None = None,
        **storage_options: Any,
    ) -> None:
        if not name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"batch name {name!r}: use letters, digits, '-' and '_' only")
        self.provider = provider
        self.name = name
        self.clock = clock or SystemClock()
        self.fs, root = fsspec.core.url_to_fs(state_dir, **storage_options)
        self.path = f"{root.rstrip('/')}/{name}.json"

    def state(self) -> BatchState | None:
        if not self.fs.exists(self.path):
            return None
        with self.fs.open(self.path, "rb") as fh:
            return BatchState.model_validate_json(fh.read())

    def _save(self, state: BatchState) -> None:
        self.fs.makedirs(self.path.rsplit("/", 1)[0], exist_ok=True)
        tmp = f"{self.path}.tmp"
        with self.fs.open(tmp, "wb") as fh:
            fh.write(state.model_dump_json(indent=2).encode())
        self.fs.mv(tmp, self.path)

    def submit(
        self, requests: list[BatchRequest], schema: type[BaseModel], *, budget: Budget | None = None
    ) -> str:
        """Submit once; if this name was submitted before, return that batch id instead."""
        existing = self.state()
        if existing is not None:
            if existing.provider != self.provider.label:
                raise ValueError(
                    f"batch {self.name!r} was submitted to {existing.provider}, not "
                    f"{self.provider.label}; choose another name"
                )
            return existing.batch_id
        estimate = self.provider.estimate_batch(requests, schema)
        batch_id = self.provider.submit_batch(requests, schema, budget=budget)
        self._save(
            BatchState(
                name=self.name,
                provider=self.provider.label,
                batch_id=batch_id,
                schema_key=schema_fingerprint(schema),
                custom_ids=[r.custom_id for r in requests],
                estimate_usd=estimate,
                submitted_at=datetime.now(UTC),
            )
        )
        return batch_id

    def _require(self) -> BatchState:
        state = self.state()
        if state is None:
            raise ValueError(f"batch {self.name!r} was never submitted (no {self.path})")
        return state

    def poll(self) -> BatchStatus:
        state = self._require()
        status = self.provider.poll_batch(state.batch_id)
        state.last_status = status.provider_status
        state.polls += 1
        self._save(state)
        return status

    def wait(self, *, interval_s: float = 30.0, max_polls: int = 2880) -> BatchStatus:
        """Poll until the batch ends (sleeping through the injected clock)."""
        for _ in range(max_polls):
            status = self.poll()
            if status.state == "ended":
                return status
            self.clock.sleep(interval_s)
        raise TimeoutError(f"batch {self.name!r} still running after {max_polls} polls")

    def collect(self, schema: type[T]) -> list[BatchItemResult[T]]:
        """Results at the batch price; the state file records that they were collected."""
        state = self._require()
        if state.schema_key != schema_fingerprint(schema):
            raise ValueError(f"batch {self.name!r} was submitted with a different schema")
        results = self.provider.collect_batch(state.batch_id, schema)
        state.collected = True
        state.cost_usd = sum((r.cost_usd for r in results), Decimal("0"))
        self._save(state)
        return results
