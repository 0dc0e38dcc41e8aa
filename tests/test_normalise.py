"""normalise: EXIF orientation, colour modes, TIFF pages, tiers, PDF rendering, page orientation."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pymupdf
import pytest
from PIL import Image, ImageOps

from mmflow.tasks.errors import Rejection, RejectionCode
from mmflow.tasks.models import NormalisedPage
from mmflow.tasks.normalise import (
    NormaliseOptions,
    detect_rotation,
    normalise_document,
    render_page,
    tier_of,
    to_8bit,
    upright,
)
from mmflow.tasks.samples import SPECS, invoice_pdf, rasterise
from mmflow.tasks.validate import validate_bytes

NO_ROTATION = NormaliseOptions(fix_orientation=False)


def encode(image: Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def normalised_pages(data: bytes, options: NormaliseOptions = NO_ROTATION) -> list[NormalisedPage]:
    return normalise_document(data, validate_bytes(data, "input"), options).pages


def page_image(page: NormalisedPage) -> Image.Image:
    assert page.image_png is not None
    return Image.open(io.BytesIO(page.image_png))


def marked_page(size: tuple[int, int] = (1200, 1600)) -> Image.Image:
    """White page, black block in the top-left corner: shows where "up" and "left" went."""
    image = Image.new("RGB", size, "white")
    image.paste((0, 0, 0), (0, 0, size[0] // 4, size[1] // 8))
    return image


@pytest.fixture(scope="module")
def invoice_page() -> Image.Image:
    """A real rendered invoice page (Northwind sample) at 100 dpi, upright."""
    return rasterise(invoice_pdf(SPECS["northwind-invoice"]), dpi=100, grey=False)[0]


# ---------------------------------------------------------------- raster modes


def test_exif_orientation_is_applied_before_anything_else() -> None:
    upright_page = marked_page()
    stored = upright_page.transpose(Image.Transpose.ROTATE_90)  # camera frame, landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # "turn 90° clockwise to display"
    [page] = normalised_pages(encode(stored, "JPEG", exif=exif))
    image = page_image(page)
    assert image.size == upright_page.size
    assert image.getpixel((10, 10)) == pytest.approx((0, 0, 0), abs=40)
    assert any("EXIF orientation 6" in note for note in page.notes)


def test_transparent_pixels_become_white_not_black() -> None:
    image = Image.new("RGBA", (1200, 1600), (0, 0, 0, 0))
    image.paste((200, 0, 0, 255), (0, 0, 100, 100))
    [page] = normalised_pages(encode(image))
    result = page_image(page)
    assert result.mode == "RGB"
    assert result.getpixel((600, 800)) == (255, 255, 255)
    assert result.getpixel((50, 50)) == (200, 0, 0)


def test_cmyk_becomes_rgb() -> None:
    image = Image.new("CMYK", (1200, 1600), (0, 0, 0, 0))  # no ink: white paper
    image.paste((0, 0, 0, 255), (0, 0, 100, 100))  # black ink
    [page] = normalised_pages(encode(image, "JPEG", quality=95))
    result = page_image(page)
    assert result.mode == "RGB"
    assert result.getpixel((600, 800)) == pytest.approx((255, 255, 255), abs=3)
    assert result.getpixel((50, 50)) == pytest.approx((0, 0, 0), abs=40)
    assert "CMYK → RGB" in page.notes


def test_palette_with_transparency_is_composited_on_white() -> None:
    image = Image.new("P", (1200, 1600), 0)
    image.putpalette([0, 0, 0, 30, 60, 90] + [0] * 762)
    image.paste(1, (0, 0, 100, 100))
    image.info["transparency"] = 0
    [page] = normalised_pages(encode(image, transparency=0))
    result = page_image(page)
    assert result.getpixel((600, 800)) == (255, 255, 255)
    assert result.getpixel((50, 50)) == (30, 60, 90)


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    values = np.full((1600, 1200), 32768, dtype=np.uint16)
    values[:100, :100] = 0
    image = Image.fromarray(values)
    assert image.mode.startswith("I;16")
    [page] = normalised_pages(encode(image))
    result = page_image(page)
    assert result.mode == "L"
    assert result.getpixel((600, 800)) == 127
    assert result.getpixel((50, 50)) == 0


def test_bilevel_becomes_greyscale() -> None:
    notes: list[str] = []
    result = to_8bit(Image.new("1", (40, 40), 1), notes)
    assert result.mode == "L" and result.getpixel((0, 0)) == 255 and notes


def test_every_tiff_frame_becomes_a_page() -> None:
    frames = [marked_page().convert("L") for _ in range(3)]
    data = encode(frames[0], "TIFF", save_all=True, append_images=frames[1:])
    pages = normalised_pages(data)
    assert [p.index for p in pages] == [0, 1, 2]
    assert all(p.unit == "px" and p.image_png for p in pages)


# ---------------------------------------------------------------- tiers


def test_tier_is_the_smallest_that_holds_the_long_side() -> None:
    tiers = NormaliseOptions().tiers
    assert [tier_of(s, tiers) for s in (800, 1024, 1500, 3000, 5000)] == [
        "low",
        "low",
        "standard",
        "high",
        "oversize",
    ]


def test_max_tier_must_name_a_tier() -> None:
    with pytest.raises(ValueError, match="max_tier"):
        NormaliseOptions(max_tier="huge")


def test_oversize_scan_is_downscaled_to_the_ocr_tier() -> None:
    [page] = normalised_pages(encode(Image.new("L", (3500, 5000), 255)))
    assert (page.width, page.height, page.tier) == (2150, 3072, "high")
    assert any(note.startswith("downscaled 3500×5000") for note in page.notes)


def test_small_image_is_upscaled_at_most_twice() -> None:
    [page] = normalised_pages(encode(Image.new("L", (200, 300), 255)))
    assert (page.width, page.height, page.tier) == (400, 600, "low")
    assert any(note.startswith("upscaled") for note in page.notes)


def test_image_within_tiers_keeps_its_size_and_gets_no_notes() -> None:
    [page] = normalised_pages(encode(Image.new("RGB", (1240, 1754), "white")))
    assert (page.width, page.height, page.tier, page.notes) == (1240, 1754, "standard", [])


# ---------------------------------------------------------------- PDF


def test_pdf_pages_keep_point_geometry_and_no_image() -> None:
    [page] = normalised_pages(invoice_pdf(SPECS["northwind-invoice"]))
    assert (page.width, page.height, page.unit, page.image_png) == (595, 842, "pt", None)
    assert page.tier == "high"  # 1653×2339 px at the default 200 dpi


def test_render_page_size_follows_the_dpi() -> None:
    with pymupdf.open(stream=invoice_pdf(SPECS["northwind-invoice"])) as doc:
        assert render_page(doc, 0, 72).size == (595, 842)
        assert render_page(doc, 0, 144).size == (1190, 1684)
        assert render_page(doc, 0, 144).mode == "RGB"


def test_render_page_refuses_a_page_that_would_be_a_pixel_bomb() -> None:
    doc = pymupdf.open()
    doc.new_page(width=14_400, height=14_400)
    with pytest.raises(Rejection) as caught:
        render_page(doc, 0, 200)
    assert caught.value.code is RejectionCode.DECOMPRESSION_BOMB


# ---------------------------------------------------------------- orientation (RapidOCR)


@pytest.mark.slow
@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_detect_rotation_finds_the_turn_that_makes_text_upright(
    invoice_page: Image.Image, rotation: int
) -> None:
    stored = invoice_page.rotate(rotation, expand=True)  # counter-clockwise by `rotation`
    assert detect_rotation(stored) == rotation


@pytest.mark.slow
def test_upright_returns_the_page_the_right_way_up(invoice_page: Image.Image) -> None:
    turned, rotation = upright(invoice_page.transpose(Image.Transpose.ROTATE_180))
    assert rotation == 180
    difference = np.abs(np.asarray(turned, dtype=int) - np.asarray(invoice_page, dtype=int))
    assert difference.max() == 0


def test_blank_page_is_left_unrotated() -> None:
    assert detect_rotation(Image.new("L", (800, 1100), 255)) == 0


@pytest.mark.slow
def test_sideways_scan_is_normalised_upright(invoice_page: Image.Image) -> None:
    sideways = invoice_page.convert("L").transpose(Image.Transpose.ROTATE_90)
    [page] = normalised_pages(encode(sideways), NormaliseOptions())
    assert page.rotation == 90
    assert (page.width, page.height) == invoice_page.size


@pytest.mark.slow
@pytest.mark.parametrize("receipt", ["288.jpg", "432.jpg"])  # the weakest classifier votes
def test_detect_rotation_is_right_on_real_receipts_at_every_turn(
    shared_data: Path, receipt: str
) -> None:
    with Image.open(shared_data / "receipts" / "sroie" / "img" / receipt) as image:
        page = ImageOps.exif_transpose(image).convert("RGB")
    detected = [detect_rotation(page.rotate(turn, expand=True)) for turn in (0, 90, 180, 270)]
    assert detected == [0, 90, 180, 270]
