"""The image plan: resolution tier by kind and task, a cost report of every provider whether or
not one is configured, and coarse-to-fine crops that hold the text they were cut for."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from mmflow.tasks.crops import crop_image, text_region
from mmflow.tasks.estimate import model_image_tokens, price_table
from mmflow.tasks.image import (
    ImageOptions,
    ImagePage,
    ImageTask,
    ImageText,
    Tier,
    choose_tier,
    cost_lines,
    plan_image,
    planned_image,
)
from mmflow.tasks.image_kind import ImageKind, KindResult
from mmflow.tasks.models import Word
from mmflow.tasks.ocr import ocr_image
from tests.imagesamples import photo_image


def kind(k: ImageKind, confidence: float = 0.9) -> KindResult:
    return KindResult(kind=k, confidence=confidence, scores={k.value: 0.9})


def text(n_words: int, conf: float = 0.95) -> ImageText:
    words = [
        Word(text=f"w{i}", bbox=(10.0 * i, 10, 10.0 * i + 8, 20), conf=conf) for i in range(n_words)
    ]
    return ImageText(text=" ".join(w.text for w in words), words=words, mean_conf=conf, engine="t")


def page(width: int = 1600, height: int = 1200) -> ImagePage:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "white").save(buffer, format="PNG")
    return ImagePage(width=width, height=height, image_png=buffer.getvalue())


@pytest.mark.parametrize(
    ("task", "image_kind", "words", "conf", "tier"),
    [
        (ImageTask.EXTRACT_TEXT, ImageKind.DOCUMENT, 80, 0.97, Tier.NONE),  # OCR suffices
        (ImageTask.EXTRACT_TEXT, ImageKind.DOCUMENT, 80, 0.55, Tier.FINE),  # OCR unsure
        (ImageTask.EXTRACT_TEXT, ImageKind.CHART, 15, 0.97, Tier.STANDARD),
        (ImageTask.EXTRACT_TEXT, ImageKind.PHOTO, 0, 0.0, Tier.LOW),
        (ImageTask.CHART, ImageKind.CHART, 15, 0.97, Tier.STANDARD),
        (ImageTask.CHART, ImageKind.PHOTO, 0, 0.0, Tier.LOW),
        (ImageTask.DESCRIBE, ImageKind.SCREENSHOT, 40, 0.97, Tier.LOW),
        (ImageTask.CLASSIFY, ImageKind.SCREENSHOT, 40, 0.97, Tier.NONE),
    ],
)
def test_tier_follows_kind_and_task(
    task: ImageTask, image_kind: ImageKind, words: int, conf: float, tier: Tier
) -> None:
    chosen, reason = choose_tier(kind(image_kind), text(words, conf), task, ImageOptions())
    assert chosen is tier and reason


def test_an_unsure_classifier_asks_the_model_at_low_detail() -> None:
    chosen, _ = choose_tier(
        kind(ImageKind.PHOTO, 0.52), text(0), ImageTask.CLASSIFY, ImageOptions()
    )
    assert chosen is Tier.LOW


def test_cost_report_lists_every_family_and_every_detail_without_a_provider() -> None:
    lines = cost_lines(1600, 1200)
    table = price_table()
    assert {line.family for line in lines} == {"openai", "anthropic", "gemini"}
    assert {line.model for line in lines} == set(table.models)
    gpt4o = {line.detail: line for line in lines if line.model == "gpt-4o"}
    assert gpt4o["low"].image_tokens == 85
    assert gpt4o["high"].image_tokens == model_image_tokens("gpt-4o", 1600, 1200, "high") == 765
    assert all(line.cost_usd > 0 for line in lines)


def test_plan_sends_chart_at_standard_tier_fitted_in_1024_px() -> None:
    options = ImageOptions(task=ImageTask.CHART)
    plan = plan_image(page(1000, 3000), text(12), kind(ImageKind.CHART), options=options)
    assert (plan.tier, plan.detail) == (Tier.STANDARD, "high")
    assert (plan.send_width, plan.send_height) == (341, 1024)
    assert plan.image_tokens == 85 + 170 * 2 < plan.full_high_tokens == 85 + 170 * 8
    assert {c.family for c in plan.costs_planned} == {"openai", "anthropic", "gemini"}


def test_plan_without_a_vision_call_still_reports_every_cost() -> None:
    options = ImageOptions(task=ImageTask.EXTRACT_TEXT)
    plan = plan_image(page(), text(60), kind(ImageKind.DOCUMENT), options=options)
    assert plan.tier is Tier.NONE and plan.image_tokens == 0
    assert {c.family for c in plan.costs_full} == {"openai", "anthropic", "gemini"}


@pytest.fixture(scope="module")
def sign_photo() -> tuple[Image.Image, list[Word]]:
    image = photo_image(4, sign_text="PLATFORM 7 EXIT")
    return image, ocr_image(image, 1).words


@pytest.mark.slow
def test_crop_of_the_text_region_contains_the_text(
    sign_photo: tuple[Image.Image, list[Word]],
) -> None:
    image, words = sign_photo
    plan = text_region(words, image.width, image.height)
    assert plan is not None and plan.area_share < 0.2
    read = ocr_image(crop_image(image, plan), 1).text.upper()
    assert "PLATFORM" in read and "EXIT" in read


@pytest.mark.slow
def test_fine_tier_sends_only_the_crop(sign_photo: tuple[Image.Image, list[Word]]) -> None:
    image, words = sign_photo
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    img_page = ImagePage(width=image.width, height=image.height, image_png=buffer.getvalue())
    unsure = ImageText(text="", words=words, mean_conf=0.5, engine="rapidocr")
    options = ImageOptions(task=ImageTask.EXTRACT_TEXT)
    plan = plan_image(img_page, unsure, kind(ImageKind.PHOTO), options=options)
    assert plan.tier is Tier.FINE and plan.crop is not None
    sent = planned_image(img_page, plan)
    assert sent.size == (plan.send_width, plan.send_height)
    assert plan.image_tokens < plan.full_high_tokens
    assert "PLATFORM" in ocr_image(sent, 1).text.upper()


def test_crop_follows_the_words_matching_a_target() -> None:
    words = [
        Word(text="Header", bbox=(10, 10, 100, 30)),
        Word(text="Invoice", bbox=(900, 700, 980, 720)),
        Word(text="42", bbox=(990, 700, 1010, 720)),
    ]
    plan = text_region(words, 1200, 900, target="invoice 42")
    assert plan is not None
    x0, y0, x1, y1 = plan.bbox
    assert x0 <= 900 and x1 >= 1010 and y0 <= 700 and y1 >= 720 and x0 > 100
