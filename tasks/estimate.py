"""Pre-flight token, cost and time estimates: what each way of reading a page would spend.

Cost is measured before it is spent (docs/architecture.md). The token formulas follow each
provider's published rules; the prices are data in `tasks/prices.toml`, loaded once, never
constants here.

Published rules implemented (see the docstrings of the private helpers for the steps):
- OpenAI tile models (gpt-4o family): low detail is a flat base (85); high detail fits the image
  in 2048x2048, scales it down so the short side is at most 768, then costs base + per-tile
  tokens for each 512-px tile (85 + 170 per tile for gpt-4o).
- OpenAI patch models (gpt-4.1-mini): 32-px patches, at most 1536 after a published shrink,
  times a per-model multiplier; `detail` does not change the count.
- Anthropic: the image is scaled down until the long edge is at most 1568 px and it is at most
  ~1,600 tokens, then tokens = ceil(width * height / 750).
- Gemini (2.0 and later): 258 tokens when both sides are at most 384 px, otherwise 258 per
  768x768 tile.
"""

from __future__ import annotations

import math
import tomllib
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from functools import cache
from importlib.resources import files
from typing import Literal

from pydantic import BaseModel

from mmflow.tasks.models import Estimate

Detail = Literal["low", "high"]


class ProviderFamily(StrEnum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    GEMINI = "gemini"


ImageScheme = Literal["tile", "patch", "area", "gemini"]

_FAMILY_SCHEME: dict[ProviderFamily, ImageScheme] = {
    ProviderFamily.OPENAI: "tile",
    ProviderFamily.ANTHROPIC: "area",
    ProviderFamily.GEMINI: "gemini",
}

# OpenAI tile formula constants for the gpt-4o family (the family-level estimate).
OPENAI_BASE_TOKENS = 85
OPENAI_TILE_TOKENS = 170
# Anthropic: long edge cap and the "~1,600 tokens" cap of the published resize rule.
ANTHROPIC_MAX_EDGE = 1568
ANTHROPIC_PIXELS_PER_TOKEN = 750
ANTHROPIC_MAX_TOKENS = 1600
# Gemini: tokens per image tile and the small-image threshold.
GEMINI_TOKENS_PER_TILE = 258
GEMINI_SMALL_SIDE = 384
GEMINI_TILE_SIDE = 768
# OpenAI patch models.
PATCH_SIDE = 32
PATCH_CAP = 1536


class ModelPrice(BaseModel):
    """One row of the price table."""

    family: ProviderFamily
    input_usd_per_mtok: Decimal
    output_usd_per_mtok: Decimal
    image_scheme: ImageScheme
    image_base_tokens: int = OPENAI_BASE_TOKENS
    image_tile_tokens: int = OPENAI_TILE_TOKENS
    image_patch_multiplier: Decimal = Decimal("1")


class LocalCost(BaseModel):
    """Time model of an engine that runs here: seconds = fixed + per_megapixel * MP."""

    seconds_fixed: float
    seconds_per_megapixel: float


class VisionCall(BaseModel):
    prompt_tokens: int
    output_tokens: int


class PriceTable(BaseModel):
    prices_as_of: str
    default_model: dict[ProviderFamily, str]
    vision_call: VisionCall
    models: dict[str, ModelPrice]
    local: dict[str, LocalCost]
    # Batch APIs (OpenAI Batch, Anthropic Message Batches) bill this fraction of the standard price.
    batch_price_factor: Decimal = Decimal("0.5")


PRICES_FILE = "prices.toml"
DATA_FILES = (PRICES_FILE,)  # part of the cache key of every step that imports this module


@cache
def price_table() -> PriceTable:
    """The table shipped as package data; parsed once per process."""
    raw = files(__package__ or "mmflow.tasks").joinpath(PRICES_FILE).read_text(encoding="utf-8")
    return PriceTable.model_validate(tomllib.loads(raw))


def model_price(model: str) -> ModelPrice:
    table = price_table()
    if model not in table.models:
        known = ", ".join(sorted(table.models))
        raise ValueError(
            f"no price for model {model!r}; known: {known}; add it to tasks/prices.toml"
        )
    return table.models[model]


def default_model(family: ProviderFamily) -> str:
    """The model whose prices the router's estimates use for this family."""
    return price_table().default_model[ProviderFamily(family)]


# ---------------------------------------------------------------- token formulas


def _check_size(width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")


def openai_tiles(width: int, height: int) -> int:
    """512-px tiles after fitting in 2048x2048 and scaling the short side down to 768."""
    _check_size(width, height)
    w, h = Fraction(width), Fraction(height)
    if max(w, h) > 2048:
        scale = Fraction(2048) / max(w, h)
        w, h = Fraction(math.floor(w * scale)), Fraction(math.floor(h * scale))
    short = min(w, h)
    if short > 768:  # only ever scaled down: a small image is not blown up to 768
        scale = Fraction(768) / short
        w, h = Fraction(math.floor(w * scale)), Fraction(math.floor(h * scale))
    return math.ceil(w / 512) * math.ceil(h / 512)


def openai_patches(width: int, height: int) -> int:
    """32-px patches, shrunk to at most 1536 the way OpenAI's image guide describes."""
    _check_size(width, height)
    patches = math.ceil(width / PATCH_SIDE) * math.ceil(height / PATCH_SIDE)
    if patches <= PATCH_CAP:
        return patches
    shrink = math.sqrt(PATCH_CAP * PATCH_SIDE**2 / (width * height))
    w1, h1 = width * shrink, height * shrink
    # Second shrink so that whole patches fit along the tighter side.
    fit = min(
        math.floor(w1 / PATCH_SIDE) / (w1 / PATCH_SIDE),
        math.floor(h1 / PATCH_SIDE) / (h1 / PATCH_SIDE),
    )
    w2, h2 = int(w1 * fit), int(h1 * fit)
    return min(PATCH_CAP, math.ceil(w2 / PATCH_SIDE) * math.ceil(h2 / PATCH_SIDE))


def anthropic_resized(width: int, height: int) -> tuple[int, int]:
    """Size Claude sees: long edge <= 1568 px and at most ~1,600 tokens (1.2 MP)."""
    _check_size(width, height)
    w, h = width, height
    if max(w, h) > ANTHROPIC_MAX_EDGE:
        scale = Fraction(ANTHROPIC_MAX_EDGE, max(w, h))
        w, h = max(1, math.floor(w * scale)), max(1, math.floor(h * scale))
    max_pixels = ANTHROPIC_MAX_TOKENS * ANTHROPIC_PIXELS_PER_TOKEN
    if w * h > max_pixels:
        scale_f = math.sqrt(max_pixels / (w * h))
        w, h = max(1, math.floor(w * scale_f)), max(1, math.floor(h * scale_f))
        while w * h > max_pixels:  # float rounding can leave one row too many
            w, h = (w - 1, h) if w >= h else (w, h - 1)
    return w, h


def gemini_tiles(width: int, height: int) -> int:
    _check_size(width, height)
    if width <= GEMINI_SMALL_SIDE and height <= GEMINI_SMALL_SIDE:
        return 1
    return math.ceil(width / GEMINI_TILE_SIDE) * math.ceil(height / GEMINI_TILE_SIDE)


def _scheme_tokens(
    scheme: ImageScheme,
    width: int,
    height: int,
    detail: Detail,
    base: int = OPENAI_BASE_TOKENS,
    per_tile: int = OPENAI_TILE_TOKENS,
    multiplier: Decimal = Decimal("1"),
) -> int:
    if detail not in ("low", "high"):
        raise ValueError(f"detail must be 'low' or 'high', got {detail!r} ('auto' is never sent)")
    if scheme == "tile":
        _check_size(width, height)
        return base if detail == "low" else base + per_tile * openai_tiles(width, height)
    if scheme == "patch":
        return math.ceil(openai_patches(width, height) * multiplier)
    if scheme == "area":
        w, h = anthropic_resized(width, height)
        return math.ceil(w * h / ANTHROPIC_PIXELS_PER_TOKEN)
    return GEMINI_TOKENS_PER_TILE * gemini_tiles(width, height)


def estimate_image_tokens(
    family: ProviderFamily, width: int, height: int, detail: Detail = "high"
) -> int:
    """Image input tokens of one image for a provider family's reference formula.

    `detail` matters for OpenAI only; Anthropic and Gemini have no such switch.
    """
    return _scheme_tokens(_FAMILY_SCHEME[ProviderFamily(family)], width, height, detail)


def model_image_tokens(model: str, width: int, height: int, detail: Detail = "high") -> int:
    """Image input tokens as one named model bills them (e.g. gpt-4o-mini's larger tiles)."""
    row = model_price(model)
    return _scheme_tokens(
        row.image_scheme,
        width,
        height,
        detail,
        base=row.image_base_tokens,
        per_tile=row.image_tile_tokens,
        multiplier=row.image_patch_multiplier,
    )


# ---------------------------------------------------------------- money and time


def estimate_cost(model: str, input_tokens: int, output_tokens: int) -> Decimal:
    """USD for one call at the table's standard prices; exact, not rounded."""
    if input_tokens < 0 or output_tokens < 0:
        raise ValueError("token counts cannot be negative")
    row = model_price(model)
    million = Decimal(1_000_000)
    return (
        Decimal(input_tokens) * row.input_usd_per_mtok
        + Decimal(output_tokens) * row.output_usd_per_mtok
    ) / million


def estimate_batch_cost(model: str, input_tokens: int, output_tokens: int) -> Decimal:
    """USD for one call sent through a provider's batch API (the table's batch price factor)."""
    return estimate_cost(model, input_tokens, output_tokens) * price_table().batch_price_factor


def estimate_local(alternative: str, width_px: int, height_px: int) -> Estimate:
    """Seconds (and zero tokens) for an engine that runs on this machine."""
    table = price_table()
    if alternative not in table.local:
        raise ValueError(f"no time model for {alternative!r}; known: {', '.join(table.local)}")
    cost = table.local[alternative]
    megapixels = width_px * height_px / 1e6
    seconds = cost.seconds_fixed + cost.seconds_per_megapixel * megapixels
    note = "no model call" if alternative == "text_layer" else f"{megapixels:.2f} MP page image"
    return Estimate(alternative=alternative, seconds=round(seconds, 3), note=note)


def estimate_vision_call(
    family: ProviderFamily, width_px: int, height_px: int, detail: Detail = "high"
) -> Estimate:
    """One vision extraction call with the family's default model: image + prompt in, JSON out."""
    family = ProviderFamily(family)
    table = price_table()
    model = default_model(family)
    image_tokens = model_image_tokens(model, width_px, height_px, detail)
    input_tokens = image_tokens + table.vision_call.prompt_tokens
    output_tokens = table.vision_call.output_tokens
    name = f"vision:{family.value}"
    if family is ProviderFamily.OPENAI:
        name += f":{detail}"
    return Estimate(
        alternative=name,
        input_tokens=input_tokens,
        cost_usd=estimate_cost(model, input_tokens, output_tokens),
        note=(
            f"{model}: {width_px}x{height_px} px image {image_tokens} tokens + prompt "
            f"{table.vision_call.prompt_tokens}; {output_tokens} output tokens assumed; "
            f"prices of {table.prices_as_of}; latency not estimated"
        ),
    )


def estimate_page_alternatives(width_px: int, height_px: int) -> list[Estimate]:
    """Every way of reading one page image of this size, cheapest local ways first."""
    return [
        estimate_local("text_layer", width_px, height_px),
        estimate_local("ocr:rapidocr", width_px, height_px),
        estimate_vision_call(ProviderFamily.OPENAI, width_px, height_px, "high"),
        estimate_vision_call(ProviderFamily.OPENAI, width_px, height_px, "low"),
        estimate_vision_call(ProviderFamily.ANTHROPIC, width_px, height_px),
        estimate_vision_call(ProviderFamily.GEMINI, width_px, height_px),
    ]
