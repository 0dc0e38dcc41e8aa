"""What a model provider is to the steps: a small contract, and the values its calls return.

Steps (tasks/vision.py, tasks/image.py, tasks/meeting_provider.py) are written against these
protocols, never against a concrete backend or Prefect: the Prefect blocks in
`mmflow.blocks.providers` implement them (OpenAI, Anthropic, OpenAI-compatible servers), and so
can any third-party class. The budget, the errors a call may raise, the results and the fallback
chain live here too, because a step needs them whichever backend answers.
"""

from __future__ import annotations

from typing import Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel

from mmflow.tasks.provider.budget import Budget
from mmflow.tasks.provider.images import ImageInput
from mmflow.tasks.provider.results import Detail, ProviderResult, ProviderTranscript

T = TypeVar("T", bound=BaseModel)


@runtime_checkable
class Provider(Protocol):
    """A model that answers into a Pydantic schema, from images or from text alone.

    Every call is estimated before it is sent and charged to `budget`, which may lower the
    detail or refuse (`BudgetExceeded`) before any request; failures raise `ProviderError`.
    """

    @property
    def label(self) -> str:
        """`family:model@endpoint`: what outputs and lineage name as the engine."""
        ...

    def extract_from_images(
        self,
        images: list[ImageInput],
        prompt: str,
        schema: type[T],
        detail: Detail = "high",
        *,
        budget: Budget | None = None,
    ) -> ProviderResult[T]: ...

    def complete(
        self, prompt: str, schema: type[T], *, budget: Budget | None = None
    ) -> ProviderResult[T]: ...


@runtime_checkable
class Transcriber(Provider, Protocol):
    """A provider that also has a speech-to-text API (OpenAI's and compatible servers')."""

    def transcribe(
        self, audio: bytes, *, filename: str = ..., language: str | None = ...
    ) -> ProviderTranscript: ...


__all__ = ["Budget", "Provider", "ProviderResult", "ProviderTranscript", "Transcriber"]
