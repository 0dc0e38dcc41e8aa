"""The scenarios mmflow runs: one entry each, read by everything that lists them.

The CLI (`mmflow run <scenario>`), the batch flow (`--scenario`), `mmflow serve`, the webhook
(`/v1/ingest/<scenario>`) and the deployment file (deployments/prefect.yaml) all take their
scenarios from here, so a new scenario is a module in tasks/ (its steps), a module in flows/
(its pipeline and flow) and one entry: in `BUILTIN` below, or, from another package, an entry
point in the `mmflow.scenarios` group whose object is a `Scenario`.

An entry names its flow and pipeline by import path, so listing scenarios (`mmflow --help`, the
webhook's routes) imports no flow, no Prefect and no model.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from threading import Lock
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from prefect import Flow
    from pydantic import BaseModel

ENTRY_POINT_GROUP = "mmflow.scenarios"


def load_object(reference: str) -> Any:
    """`package.module:attribute` → the attribute."""
    module, _, attribute = reference.partition(":")
    value: Any = importlib.import_module(module)
    for part in attribute.split("."):
        value = getattr(value, part)
    return value


@dataclass(frozen=True)
class Scenario:
    """One kind of input and what mmflow does with it."""

    name: str  # `mmflow run <name>`, `/v1/ingest/<name>`, the deployment's name
    summary: str  # one line: CLI help, deployment description, webhook errors
    flow: str  # import path of the @flow: `package.module:function`
    pipeline: str  # import path of the Pipeline class (flows/runs.py) the batch flow builds
    media_types: tuple[str, ...]  # uploads the webhook takes ("image/" is any image subtype)
    outputs: tuple[str, ...] = (".json",)  # files written per input, main result first
    batch: bool = True  # `mmflow run batch --scenario <name>` and a scheduled batch deployment
    tags: tuple[str, ...] = field(default=())

    def load_flow(self) -> Flow[..., Any]:
        return cast("Flow[..., Any]", load_object(self.flow))

    def load_pipeline(self) -> Any:
        """The pipeline class (a `flows.runs.Pipeline`; built with its `Options`)."""
        return load_object(self.pipeline)

    def options_model(self) -> type[BaseModel]:
        """The options the pipeline takes (its `Options`), which every cache key includes."""
        return cast("type[BaseModel]", self.load_pipeline().Options)

    def accepts(self, media_type: str) -> bool:
        return any(
            media_type == accepted or (accepted.endswith("/") and media_type.startswith(accepted))
            for accepted in self.media_types
        )


BUILTIN: tuple[Scenario, ...] = (
    Scenario(
        name="invoice",
        summary="Invoices and receipts (PDFs, scans, photos) to verified fields and line items.",
        flow="mmflow.flows.invoice:invoice_flow",
        pipeline="mmflow.flows.invoice:InvoicePipeline",
        media_types=("application/pdf", "image/", "application/octet-stream"),
        outputs=(".json",),
    ),
    Scenario(
        name="meeting",
        summary="Meeting and call recordings to who-said-what-when (JSON, RTTM, SRT) and notes.",
        flow="mmflow.flows.meeting:meeting_flow",
        pipeline="mmflow.flows.meeting:MeetingPipeline",
        media_types=("audio/", "video/", "application/octet-stream"),
        outputs=(".json", ".rttm", ".srt"),
    ),
    Scenario(
        name="image",
        summary="Images classified, read and costed; a provider answers at the cheapest tier.",
        flow="mmflow.flows.image:image_flow",
        pipeline="mmflow.flows.image:ImagePipeline",
        media_types=("image/", "application/pdf", "application/octet-stream"),
        outputs=(".json",),
    ),
)

_registered: dict[str, Scenario] = {}
_loaded = False
_lock = Lock()


def _load() -> None:
    """Built-ins first, then other packages' entry points (a plugin cannot replace a built-in)."""
    global _loaded
    with _lock:
        if _loaded:
            return
        for scenario in BUILTIN:
            _registered.setdefault(scenario.name, scenario)
        for point in entry_points(group=ENTRY_POINT_GROUP):
            scenario = point.load()
            if not isinstance(scenario, Scenario):
                raise TypeError(f"entry point {point.name} ({point.value}) is not a Scenario")
            _registered.setdefault(scenario.name, scenario)
        _loaded = True


def register(scenario: Scenario) -> Scenario:
    """Add a scenario at run time (a plugin's import, a test); a taken name is refused."""
    _load()
    with _lock:
        if scenario.name in _registered and _registered[scenario.name] != scenario:
            raise ValueError(f"a scenario named {scenario.name!r} is already registered")
        _registered[scenario.name] = scenario
    return scenario


def unregister(name: str) -> None:
    with _lock:
        _registered.pop(name, None)


def scenarios() -> Iterator[Scenario]:
    _load()
    with _lock:
        found = list(_registered.values())
    yield from found


def names() -> list[str]:
    return [scenario.name for scenario in scenarios()]


def get(name: str) -> Scenario:
    """The scenario called `name`, or a ValueError that lists the ones there are."""
    _load()
    with _lock:
        found = _registered.get(name)
    if found is None:
        raise ValueError(f"no scenario named {name!r}; the scenarios are: {', '.join(names())}")
    return found
