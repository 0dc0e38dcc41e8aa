"""Image steps at the boundary: a PDF given to the image flow is read from its first page (and
flagged when it has more); animated or multi-frame images are read from their first frame."""

from __future__ import annotations

import io
from pathlib import Path

import pymupdf
from PIL import Image

from mmflow.tasks.image import (
    FLAG_FIRST_FRAME,
    FLAG_PDF_FIRST_PAGE,
    ImageOptions,
    normalise_image,
    validate_image,
)
from mmflow.tasks.inputs import read_input, sha256_of
from mmflow.tasks.models import ValidatedInput


def _validated(path: Path) -> ValidatedInput:
    uri = str(path)
    return validate_image(sha256_of(read_input(uri)), uri=uri, limits=ImageOptions().limits)


def test_a_pdf_is_read_from_its_first_page_and_flagged_when_longer(tmp_path: Path) -> None:
    doc = pymupdf.open()
    for text in ("first page", "second page"):
        doc.new_page(width=300, height=200).insert_text((30, 100), text, fontsize=20)
    path = tmp_path / "two.pdf"
    doc.save(path)
    page = normalise_image(_validated(path), options=ImageOptions().normalise, pdf_dpi=144)
    assert (page.width, page.height) == (600, 400)
    assert FLAG_PDF_FIRST_PAGE in page.flags
    assert any("page 1 of 2" in note for note in page.notes)


def test_a_multi_frame_tiff_is_read_from_its_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (400, 300), colour) for colour in ("white", "black")]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="TIFF", save_all=True, append_images=frames[1:])
    path = tmp_path / "two.tiff"
    path.write_bytes(buffer.getvalue())
    page = normalise_image(_validated(path), options=ImageOptions().normalise, pdf_dpi=144)
    assert FLAG_FIRST_FRAME in page.flags
    assert page.open().convert("L").getpixel((10, 10)) == 255
