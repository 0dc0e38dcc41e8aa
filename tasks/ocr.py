"""OCR fallback: RapidOCR (embedded default, offline) or Tesseract through PyMuPDF."""

from __future__ import annotations

import io
import logging
import shutil
import threading
from enum import StrEnum
from functools import cache
from typing import Any

import numpy as np
from PIL import Image

from mmflow.tasks.errors import MissingDependency
from mmflow.tasks.models import PageText, Route, Word


class OcrEngine(StrEnum):
    RAPIDOCR = "rapidocr"
    TESSERACT = "tesseract"


_rapidocr_lock = threading.Lock()


@cache
def _rapidocr() -> Any:
    """One RapidOCR per process: loading its three ONNX models takes about a second."""
    from rapidocr import RapidOCR

    logging.getLogger("RapidOCR").setLevel(logging.WARNING)
    return RapidOCR(params={"Global.log_level": "warning"})


def engine_version(engine: OcrEngine) -> str:
    from importlib.metadata import version

    if engine is OcrEngine.RAPIDOCR:
        return f"rapidocr {version('rapidocr')}"
    return f"tesseract via pymupdf {version('pymupdf')}"


def ocr_image(
    image: Image.Image,
    page_number: int,
    engine: OcrEngine = OcrEngine.RAPIDOCR,
    scale: float = 1.0,
    language: str = "eng",
) -> PageText:
    """OCR one upright page image into words with boxes and confidences.

    `scale` converts image pixels into the page's unit (72/dpi for a rendered PDF page,
    1.0 for a raster input), so boxes from OCR and the text layer compare directly.
    """
    if engine is OcrEngine.RAPIDOCR:
        words = _rapidocr_words(image)
    else:
        words = _tesseract_words(image, language)
    unit = "px" if scale == 1.0 else "pt"
    if scale != 1.0:
        words = [w.model_copy(update={"bbox": tuple(v * scale for v in w.bbox)}) for w in words]
    return PageText(
        page=page_number,
        width=image.width * scale,
        height=image.height * scale,
        unit=unit,
        route=Route.OCR,
        engine=engine.value,
        words=words,
    )


def _rapidocr_words(image: Image.Image) -> list[Word]:
    array = np.asarray(image.convert("RGB"))[:, :, ::-1]  # RapidOCR expects BGR like cv2
    with _rapidocr_lock:
        # No per-line direction classifier: on an upside-down page it would flip every line
        # and hide the problem; low confidence is the signal `looks_upright` reads instead.
        result = _rapidocr()(array, return_word_box=True, use_cls=False)
    if result.boxes is None:
        return []
    words: list[Word] = []
    for line_no, (line_words, line_text, line_score) in enumerate(
        zip(result.word_results, result.txts, result.scores, strict=True)
    ):
        pieces = [(t, s, q) for t, s, q in line_words if t.strip()]
        if not pieces:  # no per-word boxes: keep the whole line as one word
            quad = result.boxes[line_no]
            pieces = [(line_text, line_score, quad)]
        for text, score, quad in pieces:
            xs = [float(p[0]) for p in quad]
            ys = [float(p[1]) for p in quad]
            words.append(
                Word(
                    text=text,
                    bbox=(min(xs), min(ys), max(xs), max(ys)),
                    conf=float(score),
                    line=line_no,
                )
            )
    return words


def _tesseract_words(image: Image.Image, language: str) -> list[Word]:
    if shutil.which("tesseract") is None:
        raise MissingDependency(
            "Tesseract OCR", "install it with `apt-get install tesseract-ocr tesseract-ocr-eng`"
        )
    import pymupdf

    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    pix = pymupdf.Pixmap(buffer.getvalue())
    doc = pymupdf.open()
    page = doc.new_page(width=pix.width, height=pix.height)
    page.insert_image(page.rect, pixmap=pix)
    textpage = page.get_textpage_ocr(language=language, dpi=72, full=True)
    words = [
        Word(text=t, bbox=(x0, y0, x1, y1), conf=1.0, line=b * 1000 + ln)
        for x0, y0, x1, y1, t, b, ln, _ in page.get_text("words", textpage=textpage, sort=True)
        if t.strip()
    ]
    doc.close()
    return words


def looks_upright(page: PageText, min_confidence: float = 0.9) -> bool:
    """Whether OCR read the page the right way up: words mostly wide and read with confidence.

    Sideways text comes back as tall boxes, upside-down text as low-confidence garbage (mean
    word confidence ≥ 0.97 upright vs ≤ 0.82 upside down on the shared receipts and invoices);
    either sends the page through orientation detection and a second OCR pass. Upright pages —
    most of them — pay nothing extra.
    """
    words = [w for w in page.words if len(w.text) >= 3]
    if len(words) < 5:
        return True  # too little text to judge, and too little to lose
    tall = sum((w.bbox[3] - w.bbox[1]) > (w.bbox[2] - w.bbox[0]) for w in words)
    confidence = sum(w.conf for w in words) / len(words)
    return tall < len(words) / 2 and confidence >= min_confidence
