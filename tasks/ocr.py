"""OCR fallback: RapidOCR (embedded default, offline) or Tesseract through PyMuPDF."""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
import threading
from enum import StrEnum
from functools import cache
from typing import Any

import numpy as np
from PIL import Image

from mmflow.tasks.errors import MissingDependency
from mmflow.tasks.models import PageText, Route, Word
from mmflow.tasks.versions import installed_version


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

    if engine is OcrEngine.RAPIDOCR:
        return f"rapidocr {installed_version('rapidocr')}"
    return tesseract_version()


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


def _tesseract() -> str:
    path = shutil.which("tesseract")
    if path is None:
        raise MissingDependency(
            "Tesseract OCR", "install it with `apt-get install tesseract-ocr tesseract-ocr-eng`"
        )
    return path


@cache
def tesseract_version() -> str:
    done = subprocess.run(
        [_tesseract(), "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    first = (done.stdout or done.stderr).strip().splitlines()
    return first[0] if first else "tesseract"


def _tesseract_words(image: Image.Image, language: str) -> list[Word]:
    """Words with Tesseract's own per-word confidence (its TSV output, 0-100 scaled to 0-1)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    done = subprocess.run(
        [_tesseract(), "stdin", "stdout", "-l", language, "tsv"],
        input=buffer.getvalue(),
        capture_output=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"tesseract failed: {done.stderr.decode(errors='replace')[-500:]}")
    words: list[Word] = []
    rows = done.stdout.decode("utf-8", errors="replace").splitlines()[1:]  # after the header
    for row in rows:
        fields = row.split("\t")
        if len(fields) < 12 or fields[0] != "5":  # level 5 is a word
            continue
        block, paragraph, line = (int(fields[i]) for i in (2, 3, 4))
        left, top, width, height = (float(fields[i]) for i in (6, 7, 8, 9))
        text, confidence = fields[11], float(fields[10])
        if not text.strip() or confidence < 0:
            continue
        words.append(
            Word(
                text=text,
                bbox=(left, top, left + width, top + height),
                conf=round(confidence / 100, 4),
                line=(block * 1000 + paragraph) * 1000 + line,
            )
        )
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
