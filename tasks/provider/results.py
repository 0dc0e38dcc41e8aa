"""What a provider call returns: the parsed object, and what it cost before and after."""

from __future__ import annotations

from decimal import Decimal
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T", bound=BaseModel)

Detail = Literal["low", "high"]


class Usage(BaseModel):
    """Tokens the provider reports it billed."""

    input_tokens: int = 0
    output_tokens: int = 0


class CallEstimate(BaseModel):
    """Pre-flight estimate of one call; `cost_usd` is an upper bound on output (max tokens)."""

    model: str
    detail: Detail
    image_tokens: int
    prompt_tokens: int
    max_output_tokens: int
    cost_usd: Decimal

    @property
    def input_tokens(self) -> int:
        return self.image_tokens + self.prompt_tokens


class ProviderResult(BaseModel, Generic[T]):
    """A schema-valid answer with its provenance: model, detail, attempts, tokens and money."""

    value: T
    raw_text: str
    provider: str
    model: str
    detail: Detail
    usage: Usage
    estimate: CallEstimate
    cost_usd: Decimal = Field(description="actual cost from billed usage; 0 on a cache hit")
    attempts: int = Field(description="HTTP requests sent, retries and repair included")
    repaired: bool = False
    cached: bool = False
    downgraded: bool = Field(default=False, description="detail lowered by budget or token limit")


class ProviderSegment(BaseModel):
    start: float
    end: float
    text: str


class ProviderTranscript(BaseModel):
    """A provider transcription: the text, and segments with times in seconds."""

    text: str
    language: str | None = None
    duration_s: float | None = None
    segments: list[ProviderSegment] = Field(default_factory=list)
    model: str
    attempts: int


class BatchRequest(BaseModel):
    """One item of a batch: its id in the results, the prompt and (optionally) images."""

    custom_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    prompt: str
    images: list[bytes] = Field(default_factory=list)
    detail: Detail = "high"


class BatchStatus(BaseModel):
    batch_id: str
    state: Literal["running", "ended"]
    provider_status: str
    succeeded: int = 0
    failed: int = 0
    total: int = 0


class BatchItemResult(BaseModel, Generic[T]):
    """One batch answer: a schema-valid value, or the reason there is none."""

    custom_id: str
    value: T | None = None
    raw_text: str | None = None
    error: str | None = None
    usage: Usage = Field(default_factory=Usage)
    cost_usd: Decimal = Field(default=Decimal("0"), description="at the batch (discounted) price")
