"""OCR engines return words with boxes in the page's unit, from real rendered pages."""

from __future__ import annotations

import shutil

import pymupdf
import pytest
from PIL import Image

from mmflow.tasks.errors import MissingDependency
from mmflow.tasks.ocr import OcrEngine, ocr_image
from mmflow.tasks.textlayer import read_text_layer

LINES = ["INVOICE 2024-0117", "Subtotal 1,250.00", "Total due 1,487.50 EUR"]


@pytest.fixture(scope="module")
def rendered() -> tuple[pymupdf.Document, Image.Image]:
    doc = pymupdf.open()
    page = doc.new_page(width=420, height=300)
    for i, line in enumerate(LINES):
        page.insert_text((40, 60 + 50 * i), line, fontsize=16)
    pix = page.get_pixmap(dpi=200)
    image = Image.frombytes("RGB", (pix.width, pix.height), pix.samples)
    return doc, image


def test_text_layer_gives_words_with_boxes_in_points(rendered) -> None:
    doc, _ = rendered
    page = read_text_layer(doc[0], 1)
    assert page.unit == "pt" and page.route == "text_layer"
    total = next(w for w in page.words if w.text == "1,487.50")
    assert 40 < total.bbox[0] < 420 and 150 < total.bbox[3] < 170


def test_rapidocr_reads_the_rendered_page_and_scales_boxes_to_points(rendered) -> None:
    doc, image = rendered
    page = ocr_image(image, 1, OcrEngine.RAPIDOCR, scale=72 / 200)
    text = page.text
    assert "1,487.50" in text and "Subtotal" in text
    assert page.unit == "pt" and abs(page.width - 420) < 1
    layer = {w.text: w.bbox for w in read_text_layer(doc[0], 1).words}
    ocr_box = next(w.bbox for w in page.words if "1,487.50" in w.text)
    assert abs(ocr_box[1] - layer["1,487.50"][1]) < 8  # the same place on the page
    assert all(0 < w.conf <= 1 for w in page.words)


def test_tesseract_reads_the_page_or_says_what_to_install(rendered) -> None:
    _, image = rendered
    if shutil.which("tesseract") is None:
        with pytest.raises(MissingDependency, match="apt-get install tesseract-ocr"):
            ocr_image(image, 1, OcrEngine.TESSERACT)
        return
    page = ocr_image(image, 1, OcrEngine.TESSERACT, scale=72 / 200)
    assert page.engine == "tesseract"
    assert "Subtotal" in page.text and "1,250.00" in page.text


def test_blank_image_gives_no_words() -> None:
    page = ocr_image(Image.new("RGB", (600, 400), "white"), 1)
    assert page.words == []


def test_tesseract_words_carry_tesseract_s_own_confidence(rendered) -> None:
    """Measured, not assumed: a clean render reads with high confidence, noise with low."""
    import numpy as np

    _, image = rendered
    if shutil.which("tesseract") is None:
        pytest.skip("tesseract is not installed")  # CI installs it; the skip fails there
    clean = ocr_image(image, 1, OcrEngine.TESSERACT)
    assert clean.words and all(0 <= w.conf <= 1 for w in clean.words)
    assert len({w.conf for w in clean.words}) > 1  # not one constant for every word
    assert sum(w.conf for w in clean.words) / len(clean.words) > 0.8
    rng = np.random.default_rng(7)
    noisy = np.asarray(image.convert("L"), dtype=np.int16) + rng.normal(0, 110, image.size[::-1])
    smudged = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    words = ocr_image(smudged, 1, OcrEngine.TESSERACT).words
    if words:
        assert sum(w.conf for w in words) / len(words) < sum(w.conf for w in clean.words) / len(
            clean.words
        )
