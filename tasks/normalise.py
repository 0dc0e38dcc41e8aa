"""Normalise: turn a validated input into pages a reader can trust the geometry of.

Raster inputs become upright 8-bit RGB or greyscale PNG pages: EXIF orientation applied, alpha
composited on white, CMYK/palette/1-bit/16-bit converted, every TIFF frame a page, scaled into a
resolution tier, and turned upright when the scan is sideways or upside down. PDF pages keep
their vector form here (geometry in points); the OCR step renders the ones it needs with
`render_page` and turns them upright with `upright`.

Resolution tiers (long side in pixels) — what routing and vision-cost estimates see:
  low ≤ 1024 (thumbnails, small receipts), standard ≤ 2048 (A4 at ~170 dpi, phone photos
  after downscale), high ≤ 3072 (A4 at ~260 dpi). Larger scans are downscaled to `max_tier`:
  OCR gains nothing above ~300 dpi and every extra pixel costs time. Small images are upscaled
  at most `max_upscale` times, to `min_long_side`: RapidOCR's detector misses text under
  ~10 px tall, and upscaling further invents no detail.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps
from pydantic import BaseModel, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from mmflow.tasks.errors import Rejection, RejectionCode
from mmflow.tasks.models import NormalisedDocument, NormalisedPage, ValidatedInput
from mmflow.tasks.pdf_library import pymupdf
from mmflow.tasks.validate import PDF_MEDIA_TYPE, PILLOW_PLUGINS, RASTER_FORMATS

DEFAULT_TIERS: dict[str, int] = {"low": 1024, "standard": 2048, "high": 3072}
MAX_RENDER_PIXELS = 89_478_485  # same guard as ValidationLimits.max_pixels


class NormaliseOptions(BaseModel):
    """How pages are prepared; part of the normalise step's cache key."""

    # PDF rendering resolution (tier of PDF pages is judged at it); set from the scenario's dpi.
    dpi: SkipJsonSchema[int] = 200
    tiers: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_TIERS))
    max_tier: str = "high"  # raster pages above this tier's long side are downscaled to it
    min_long_side: int = 1000  # raster pages smaller than this are upscaled towards it ...
    max_upscale: float = 2.0  # ... by at most this factor
    fix_orientation: bool = True  # detect 90/180/270° scans and turn them upright (RapidOCR)
    png_compress_level: int = 1  # page PNGs are transient; fast beats small

    @model_validator(mode="after")
    def _max_tier_is_a_tier(self) -> NormaliseOptions:
        if self.max_tier not in self.tiers:
            raise ValueError(f"max_tier {self.max_tier!r} is not one of {sorted(self.tiers)}")
        return self


DEFAULT_OPTIONS = NormaliseOptions()


def normalise_document(
    data: bytes, source: ValidatedInput, options: NormaliseOptions = DEFAULT_OPTIONS
) -> NormalisedDocument:
    """Pages of a validated input: PDF geometry, or upright normalised raster images."""
    if source.media_type == PDF_MEDIA_TYPE:
        pages = _pdf_pages(data, options)
    elif source.media_type in RASTER_FORMATS.values():
        pages = _raster_pages(data, source, options)
    else:
        raise Rejection(
            RejectionCode.UNSUPPORTED_FORMAT,
            f"{source.uri} has media type {source.media_type}, which normalise cannot read; "
            "submit a PDF or image.",
        )
    return NormalisedDocument(source=source, pages=pages)


# ---------------------------------------------------------------- tiers


def tier_of(long_side: float, tiers: dict[str, int]) -> str:
    """Smallest tier whose limit holds `long_side`; "oversize" above them all."""
    for name, limit in sorted(tiers.items(), key=lambda item: item[1]):
        if long_side <= limit:
            return name
    return "oversize"


def _rescale(image: Image.Image, options: NormaliseOptions, notes: list[str]) -> Image.Image:
    long_side = max(image.size)
    ceiling = options.tiers[options.max_tier]
    if long_side > ceiling:
        factor = ceiling / long_side
        verb = "downscaled"
    elif long_side < options.min_long_side:
        factor = min(options.max_upscale, options.min_long_side / long_side)
        verb = "upscaled"
    else:
        return image
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    why = (
        f"to the '{options.max_tier}' tier: more pixels cost OCR time and add nothing"
        if verb == "downscaled"
        else "so small text reaches the height OCR detects"
    )
    notes.append(f"{verb} {image.width}×{image.height} → {size[0]}×{size[1]} px {why}")
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


# ---------------------------------------------------------------- PDF


def _pdf_pages(data: bytes, options: NormaliseOptions) -> list[NormalisedPage]:
    pages = []
    with pymupdf.open(stream=data, filetype="pdf") as doc:
        for page in doc:
            rect = page.rect  # already reflects the page's /Rotate
            scale = options.dpi / 72
            width_px, height_px = round(rect.width * scale), round(rect.height * scale)
            notes = [f"vector page; renders at {options.dpi} dpi as {width_px}×{height_px} px"]
            if page.rotation:
                notes.append(f"page carries /Rotate {page.rotation}; geometry is as displayed")
            pages.append(
                NormalisedPage(
                    index=page.number,
                    width=rect.width,
                    height=rect.height,
                    unit="pt",
                    tier=tier_of(max(width_px, height_px), options.tiers),
                    notes=notes,
                )
            )
    return pages


def render_page(
    doc: pymupdf.Document, index: int, dpi: int, max_pixels: int = MAX_RENDER_PIXELS
) -> Image.Image:
    """Render one PDF page to RGB at `dpi` (annotations included), refusing pixel bombs."""
    page = doc.load_page(index)
    scale = dpi / 72
    pixels = page.rect.width * scale * page.rect.height * scale
    if pixels > max_pixels:
        raise Rejection(
            RejectionCode.DECOMPRESSION_BOMB,
            f"page {index + 1} would render to {pixels / 1e6:.0f} megapixels at {dpi} dpi "
            f"(limit {max_pixels / 1e6:.0f}); render at a lower dpi or fix the page size.",
        )
    pix = page.get_pixmap(dpi=dpi, alpha=False, colorspace=pymupdf.csRGB)
    return Image.frombytes("RGB", (pix.width, pix.height), pix.samples)


# ---------------------------------------------------------------- raster


def _raster_pages(
    data: bytes, source: ValidatedInput, options: NormaliseOptions
) -> list[NormalisedPage]:
    pages = []
    with Image.open(io.BytesIO(data), formats=PILLOW_PLUGINS) as image:
        # validate counted the pages (every TIFF frame; the first frame of anything else)
        for index in range(source.pages):
            image.seek(index)
            pages.append(_raster_page(image, index, options))
    return pages


def _raster_page(frame: Image.Image, index: int, options: NormaliseOptions) -> NormalisedPage:
    notes: list[str] = []
    orientation = frame.getexif().get(0x0112, 1)
    # No copy of an upright frame: it is done with before the next frame is read, and a copy
    # of an 89-megapixel scan is another 270 MB.
    image = ImageOps.exif_transpose(frame) if orientation != 1 else frame
    if orientation != 1:
        notes.append(f"applied EXIF orientation {orientation}")
    image = to_8bit(image, notes)
    image = _rescale(image, options, notes)
    rotation = 0
    if options.fix_orientation:
        image, rotation = upright(image)
        if rotation:
            notes.append(f"turned {rotation}° clockwise: text was not upright")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=options.png_compress_level)
    return NormalisedPage(
        index=index,
        width=image.width,
        height=image.height,
        unit="px",
        rotation=rotation,
        tier=tier_of(max(image.size), options.tiers),
        image_png=buffer.getvalue(),
        notes=notes,
    )


def to_8bit(image: Image.Image, notes: list[str]) -> Image.Image:
    """8-bit "L" or "RGB": transparency composited on white, other modes converted.

    16-bit and 32-bit greyscale are scaled, not clipped (Pillow's convert("L") clips values
    above 255, which turns a 16-bit scan white).
    """
    mode = image.mode
    if mode in ("L", "RGB"):
        return image
    if mode == "1":
        notes.append("1-bit bilevel → 8-bit greyscale")
        return image.convert("L")
    if mode == "P" and "transparency" not in image.info:
        notes.append("palette → RGB")
        return image.convert("RGB")
    if mode in ("P", "PA", "LA", "La", "RGBA", "RGBa"):
        grey = mode in ("LA", "La")
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        canvas.alpha_composite(rgba)
        notes.append(f"{mode} → {'L' if grey else 'RGB'}: transparency composited on white")
        return canvas.convert("L" if grey else "RGB")
    if mode == "CMYK":
        notes.append("CMYK → RGB")
        return image.convert("RGB")
    if mode.startswith(("I", "F")):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") else float(values.max() or 1.0)
        if mode == "F" and top <= 1.0:
            top = 1.0
        scaled = np.clip(values * (255.0 / top), 0, 255).astype(np.uint8)
        notes.append(f"{mode} → 8-bit greyscale (scaled by 255/{top:g})")
        return Image.fromarray(scaled, mode="L")
    notes.append(f"{mode} → RGB")
    return image.convert("RGB")


# ---------------------------------------------------------------- page orientation

# Measured on 35 pages × 4 turns (the samples, invoice2data PNGs, SROIE
# receipts): detector at 1024 / 640 / 512 px long side all 140/140 right; median CPU per page
# 0.91 / 0.48 / 0.33 s. 640 keeps a margin for dense small print at half the cost of 1024.
DETECT_LONG_SIDE = 1024  # text lines are cropped for the classifiers from a copy this size
DETECT_SIDE = 640  # ... and found by the detector at this long side
CROPS = 12  # longest text lines used to vote
CLS_MARGIN = 0.5  # mean signed classifier confidence below this → ask the recogniser


def upright(image: Image.Image) -> tuple[Image.Image, int]:
    """The image turned so its text reads upright, and the clockwise degrees applied."""
    rotation = detect_rotation(image)
    if rotation == 0:
        return image, 0
    return image.transpose(_CLOCKWISE[rotation]), rotation


_CLOCKWISE = {  # Pillow's ROTATE_n turns counter-clockwise
    90: Image.Transpose.ROTATE_270,
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_90,
}


def detect_rotation(image: Image.Image) -> int:
    """Clockwise degrees (0, 90, 180, 270) that make the page's text upright.

    RapidOCR's detector finds text lines on a copy scaled to 640 px: when the long lines are
    mostly taller than wide the page lies on its side. The 12 longest lines are cropped
    horizontal from a 1024 px copy and the direction classifier votes 0 vs 180; when its vote
    is weak, the recogniser's confidence on the crops as they are vs turned 180° decides (never
    wrong in our measurements, but it costs more than the detector). A page without text is
    left as is. Uses the OCR step's RapidOCR instance under its lock: one model load per
    process, no concurrent calls into it.
    """
    from rapidocr.ch_ppocr_det.utils import DetPreProcess
    from rapidocr.ch_ppocr_rec import TextRecInput
    from rapidocr.utils.process_img import get_rotate_crop_image

    from mmflow.tasks.ocr import _rapidocr, _rapidocr_lock

    small = image.convert("RGB")
    factor = DETECT_LONG_SIDE / max(small.size)
    if factor < 1:
        size = (max(1, round(small.width * factor)), max(1, round(small.height * factor)))
        small = small.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    bgr = np.ascontiguousarray(np.asarray(small)[:, :, ::-1])

    with _rapidocr_lock:
        engine = _rapidocr()
        detector = engine._load_det_model()
        # The detector's own preprocessing upscales the short side to 736 px; lines on a
        # page are found as well at DETECT_SIDE on the long side, at a fraction of the cost.
        prepared = DetPreProcess(DETECT_SIDE, "max", detector.mean, detector.std)(bgr)
        found, _scores = detector.postprocess_op(detector.session(prepared), bgr.shape[:2])
        if len(found) == 0:
            return 0
        boxes = np.asarray(found, dtype=np.float32)
        widths = np.linalg.norm(boxes[:, 0] - boxes[:, 1], axis=1)
        heights = np.linalg.norm(boxes[:, 0] - boxes[:, 3], axis=1)
        wide, tall = widths >= 1.5 * heights, heights >= 1.5 * widths
        sideways = bool(heights[tall].sum() > widths[wide].sum())
        chosen = np.flatnonzero(tall if sideways else wide)
        if chosen.size == 0:
            return 0
        lengths = heights if sideways else widths
        chosen = chosen[np.argsort(-lengths[chosen])][:CROPS]
        # get_rotate_crop_image turns tall crops 90° counter-clockwise to make them horizontal
        crops = [get_rotate_crop_image(bgr, boxes[i].copy()) for i in chosen]
        votes = engine._load_cls_model()(crops).cls_res
        margin = sum(score if label == "180" else -score for label, score in votes) / len(crops)
        if abs(margin) >= CLS_MARGIN:
            flipped = margin > 0
        else:
            recogniser = engine._load_rec_model()
            as_is = recogniser(TextRecInput(img=crops)).scores
            turned = [np.ascontiguousarray(np.rot90(crop, 2)) for crop in crops]
            flipped = float(np.mean(recogniser(TextRecInput(img=turned)).scores)) > float(
                np.mean(as_is)
            )
    if sideways:
        # Crops turned counter-clockwise read upright: the page needs the same turn (270° cw).
        return 90 if flipped else 270
    return 180 if flipped else 0
