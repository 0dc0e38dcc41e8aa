"""Token formulas against values worked out by hand from the providers' published rules."""

from __future__ import annotations

from decimal import Decimal

import pytest

from mmflow.tasks.estimate import (
    ProviderFamily,
    default_model,
    estimate_cost,
    estimate_image_tokens,
    estimate_local,
    estimate_page_alternatives,
    estimate_vision_call,
    model_image_tokens,
    price_table,
)

# OpenAI high detail: fit in 2048x2048, shrink so the short side is <= 768, 85 + 170 per
# 512-px tile. Worked by hand, e.g. 1920x1080 -> 1365x768 -> 3x2 tiles -> 85 + 6*170 = 1105.
OPENAI_HIGH = [
    (1024, 1024, 765),  # published example: 768x768, 4 tiles
    (2048, 4096, 1105),  # published example: 1024x2048 -> 768x1536, 6 tiles
    (512, 512, 255),  # one tile, no scaling
    (513, 513, 765),  # just over one tile each way: 4 tiles
    (100, 100, 255),  # small images are not blown up
    (1, 1, 255),
    (768, 768, 765),
    (800, 600, 765),  # short side 600 stays: 2x2 tiles
    (600, 400, 425),  # 2x1 tiles
    (1024, 512, 425),  # short side 512 stays: 2x1 tiles
    (512, 1536, 595),  # 1x3 tiles
    (300, 2000, 765),  # 1x4 tiles
    (2000, 300, 765),
    (1536, 768, 1105),  # short side exactly 768: 3x2 tiles
    (1537, 769, 1105),  # -> 1535x768: 3x2 tiles
    (1920, 1080, 1105),  # -> 1365x768
    (1080, 1920, 1105),
    (4096, 4096, 765),  # -> 2048x2048 -> 768x768
    (2048, 2048, 765),
    (4000, 1000, 765),  # -> 2048x512: 4x1 tiles
    (8192, 1024, 765),  # -> 2048x256: 4x1 tiles
    (1240, 1754, 1105),  # A4 at 150 dpi -> 768x1086: 2x3 tiles
    (2480, 3508, 1105),  # A4 at 300 dpi -> 1447x2048 -> 768x1086
    (3000, 2000, 1105),  # -> 2048x1365 -> 1152x768: 3x2 tiles
    (500, 3000, 765),  # -> 341x2048: 1x4 tiles
    (700, 1400, 1105),  # short side 700 stays: 2x3 tiles
    (1025, 513, 1105),  # short side 513 stays: 3x2 tiles
]

# Anthropic: long edge <= 1568 and <= ~1,600 tokens (1.2 MP), then ceil(w*h/750).
ANTHROPIC = [
    (200, 200, 54),  # published table: ~54
    (1000, 1000, 1334),  # published table: ~1334
    (1092, 1092, 1590),  # published table: ~1590, the largest square not resized
    (100, 100, 14),
    (1, 1, 1),
    (750, 1, 1),
    (1568, 1, 3),
    (500, 500, 334),
    (1000, 500, 667),
    (600, 400, 320),
    (800, 600, 640),
    (1024, 768, 1049),
    (1280, 720, 1229),
    (1200, 1000, 1600),  # exactly 1.2 MP: not resized
    (1201, 1000, 1599),  # -> 1200x999
    (2000, 2000, 1599),  # -> 1568x1568 -> 1095x1095
    (784, 1568, 1599),  # -> 774x1549
    (1920, 1080, 1599),  # -> 1568x882 -> 1460x821
    (3000, 100, 109),  # -> 1568x52
    (4000, 3000, 1598),  # -> 1568x1176 -> 1264x948
    (1240, 1754, 1599),  # A4 at 150 dpi -> 1108x1568 -> 920x1303
]

# Gemini 2.0+: 258 when both sides <= 384, otherwise 258 per 768x768 tile.
GEMINI = [
    (384, 384, 258),
    (100, 100, 258),
    (1, 1, 258),
    (383, 385, 258),  # one side over 384: one 768 tile
    (385, 384, 258),
    (600, 400, 258),
    (768, 768, 258),
    (769, 768, 516),
    (384, 1000, 516),
    (1000, 384, 516),
    (800, 600, 516),
    (1536, 768, 516),
    (1537, 768, 774),
    (500, 2000, 774),
    (1024, 1024, 1032),
    (1240, 1754, 1548),  # A4 at 150 dpi: 2x3 tiles
    (1920, 1080, 1548),
    (2048, 2048, 2322),
    (2480, 3508, 5160),  # A4 at 300 dpi: 4x5 tiles
    (3000, 3000, 4128),
    (4096, 4096, 9288),
]


@pytest.mark.parametrize(("width", "height", "tokens"), OPENAI_HIGH)
def test_openai_high_detail_follows_tile_formula(width: int, height: int, tokens: int) -> None:
    assert estimate_image_tokens(ProviderFamily.OPENAI, width, height, "high") == tokens


@pytest.mark.parametrize(("width", "height"), [(1, 1), (1024, 1024), (4096, 8192), (20000, 300)])
def test_openai_low_detail_is_flat_85(width: int, height: int) -> None:
    assert estimate_image_tokens(ProviderFamily.OPENAI, width, height, "low") == 85


@pytest.mark.parametrize(("width", "height", "tokens"), ANTHROPIC)
def test_anthropic_follows_pixel_formula(width: int, height: int, tokens: int) -> None:
    assert estimate_image_tokens(ProviderFamily.ANTHROPIC, width, height) == tokens


@pytest.mark.parametrize(("width", "height", "tokens"), GEMINI)
def test_gemini_follows_tile_rule(width: int, height: int, tokens: int) -> None:
    assert estimate_image_tokens(ProviderFamily.GEMINI, width, height) == tokens


def test_detail_does_not_change_anthropic_or_gemini() -> None:
    for family in (ProviderFamily.ANTHROPIC, ProviderFamily.GEMINI):
        high = estimate_image_tokens(family, 1240, 1754, "high")
        assert estimate_image_tokens(family, 1240, 1754, "low") == high


def test_auto_detail_is_refused() -> None:
    with pytest.raises(ValueError, match="auto"):
        estimate_image_tokens(ProviderFamily.OPENAI, 100, 100, "auto")  # type: ignore[arg-type]


def test_non_positive_size_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        estimate_image_tokens(ProviderFamily.GEMINI, 0, 100)


def test_gpt_4o_mini_bills_its_larger_tile_tokens() -> None:
    # published: 2833 base + 5667 per tile; 1024x1024 has 4 tiles
    assert model_image_tokens("gpt-4o-mini", 1024, 1024) == 2833 + 4 * 5667
    assert model_image_tokens("gpt-4o-mini", 1024, 1024, "low") == 2833


def test_gpt_4_1_mini_counts_patches_times_multiplier() -> None:
    # published example: 1024x1024 = 32x32 patches; 1800x2400 shrinks to 33x44 = 1452 patches
    assert model_image_tokens("gpt-4.1-mini", 1024, 1024) == 1659  # ceil(1024 * 1.62)
    assert model_image_tokens("gpt-4.1-mini", 1800, 2400) == 2353  # ceil(1452 * 1.62)


def test_cost_uses_price_table_per_million_tokens() -> None:
    # gpt-4o: $2.50 in, $10.00 out per million
    assert estimate_cost("gpt-4o", 1_000_000, 0) == Decimal("2.50")
    assert estimate_cost("gpt-4o", 1505, 700) == Decimal("0.0107625")
    assert estimate_cost("claude-sonnet-4", 2000, 1000) == Decimal("0.021")


def test_unknown_model_names_the_table_to_edit() -> None:
    with pytest.raises(ValueError, match=r"prices\.toml"):
        estimate_cost("no-such-model", 1, 1)


def test_price_table_is_dated_and_has_a_default_model_per_family() -> None:
    table = price_table()
    assert table.prices_as_of
    for family in ProviderFamily:
        model = default_model(family)
        assert table.models[model].family is family


def test_vision_estimate_adds_prompt_and_prices_output() -> None:
    table = price_table()
    estimate = estimate_vision_call(ProviderFamily.OPENAI, 1024, 1024, "high")
    assert estimate.alternative == "vision:openai:high"
    assert estimate.input_tokens == 765 + table.vision_call.prompt_tokens
    expected = estimate_cost(
        default_model(ProviderFamily.OPENAI), estimate.input_tokens, table.vision_call.output_tokens
    )
    assert estimate.cost_usd == expected


def test_local_engines_cost_time_not_tokens() -> None:
    ocr = estimate_local("ocr:rapidocr", 1240, 1754)
    text = estimate_local("text_layer", 1240, 1754)
    assert ocr.input_tokens == 0 and ocr.cost_usd == 0
    assert ocr.seconds > text.seconds > 0


def test_page_alternatives_cover_every_way_of_reading() -> None:
    names = [e.alternative for e in estimate_page_alternatives(1240, 1754)]
    assert names == [
        "text_layer",
        "ocr:rapidocr",
        "vision:openai:high",
        "vision:openai:low",
        "vision:anthropic",
        "vision:gemini",
    ]
