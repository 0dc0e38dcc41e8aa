"""Image-kind classification from local signals, measured on a labelled set the test builds
(documents rendered with PyMuPDF, matplotlib and Pillow charts, flat-colour screenshots, numpy
photos) plus real invoice renders and scanned receipts from the shared data."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from mmflow.tasks.image_kind import ImageKind, KindResult, classify_image, colour_signals
from mmflow.tasks.ocr import ocr_image
from tests.imagesamples import chart_image, labelled_set, photo_image, screenshot_image

pytestmark = pytest.mark.slow
OCR_SIDE = 1200  # the set is read at this size to keep the test quick; the flow caps at 1600


def _shrunk(image: Image.Image) -> Image.Image:
    factor = OCR_SIDE / max(image.size)
    if factor >= 1:
        return image
    return image.resize((round(image.width * factor), round(image.height * factor)))


def _classify(image: Image.Image) -> KindResult:
    image = _shrunk(image.convert("RGB"))
    return classify_image(image, ocr_image(image, 1).words)


@pytest.fixture(scope="module")
def generated() -> list[tuple[str, str, KindResult]]:
    return [(s.name, s.kind, _classify(s.image)) for s in labelled_set(per_kind=3)]


@pytest.fixture(scope="module")
def shared_documents(shared_data: Path) -> list[tuple[str, KindResult]]:
    paths = sorted((shared_data / "invoices" / "invoice2data").glob("*.png"))[:2]
    paths += sorted((shared_data / "receipts" / "sroie" / "img").glob("*.jpg"))[:3]
    return [(p.name, _classify(Image.open(p))) for p in paths]


def test_generated_set_is_classified_with_at_least_90_percent_accuracy(
    generated: list[tuple[str, str, KindResult]],
) -> None:
    wrong = [(name, truth, r.kind.value) for name, truth, r in generated if r.kind.value != truth]
    accuracy = 1 - len(wrong) / len(generated)
    print(f"image kind accuracy on {len(generated)} generated images: {accuracy:.1%}")
    assert accuracy >= 0.9, wrong


def test_every_kind_is_recognised_at_least_once(
    generated: list[tuple[str, str, KindResult]],
) -> None:
    right = {truth for _, truth, r in generated if r.kind.value == truth}
    assert right == {k.value for k in ImageKind}


def test_shared_invoices_and_receipts_are_documents(
    shared_documents: list[tuple[str, KindResult]],
) -> None:
    wrong = [(name, r.kind.value, r.reason) for name, r in shared_documents if r.kind != "document"]
    assert not wrong


def test_result_explains_itself_with_scores_and_signals(
    generated: list[tuple[str, str, KindResult]],
) -> None:
    _, _, result = generated[0]
    assert set(result.scores) == {k.value for k in ImageKind}
    assert {"text_area_share", "palette_colours", "flat_tint_share"} <= set(result.signals)
    assert 0.0 <= result.confidence <= 1.0 and result.reason


def test_photos_have_richer_palettes_than_screenshots() -> None:
    photo = colour_signals(photo_image(1))
    screen = colour_signals(screenshot_image(1))
    assert photo["palette_colours"] > 3 * screen["palette_colours"]
    assert screen["flat_tint_share"] > 0.15


def test_pillow_chart_is_a_chart_without_matplotlib() -> None:
    assert _classify(chart_image(3, engine="pillow")).kind is ImageKind.CHART
