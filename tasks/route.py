"""Route: choose per page the cheapest way of reading it that is good enough.

The decision comes from measured signals of the page (how much text its text layer carries, how
much of that text is unreadable, how much of the page is images the text layer does not cover),
and it is recorded with a reason a person can read and the estimate of every alternative, so a
reviewer can see what the other ways would have cost.
"""

from __future__ import annotations

import unicodedata
from decimal import Decimal

import numpy as np
from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from mmflow.tasks.estimate import (
    Detail,
    ProviderFamily,
    estimate_page_alternatives,
    estimate_vision_call,
)
from mmflow.tasks.models import Estimate, NormalisedPage, PageRoute, Route, Usd
from mmflow.tasks.pdf_library import pymupdf


class RouteOptions(BaseModel):
    """Thresholds of the router; defaults suit invoices and receipts."""

    min_chars: int = Field(30, ge=0, description="text-layer characters a page needs to be read")
    max_garbled_share: float = Field(
        0.10, ge=0, le=1, description="share of unreadable glyphs above which we OCR instead"
    )
    image_coverage_threshold: float = Field(
        0.08,
        ge=0,
        le=1,
        description=(
            "share of the page that images showing print with no text layer over it may cover "
            "before the page is OCRed (a scan with a tiny text header, a pasted table picture, "
            "company details embedded as a picture); logos stay well below it (1-4% of A4)"
        ),
    )
    # Set by the pipeline, not in forms: the invoice options' one `dpi`, and whether a provider
    # is configured (InvoiceOptions.route).
    render_dpi: SkipJsonSchema[int] = Field(200, gt=0)  # PDF pages rendered for OCR (estimates)
    allow_vision: SkipJsonSchema[bool] = False
    vision_family: ProviderFamily = ProviderFamily.OPENAI
    vision_detail: Detail = "high"
    max_vision_cost_usd: Usd = Field(
        Decimal("0.05"), description="budget per page", json_schema_extra={"default": 0.05}
    )
    force: Route | None = None


# ---------------------------------------------------------------- signals

_GRID = 64  # cells per page side for area measures (~9 x 13 pt cells on A4)
_INK_CONTRAST = 80  # grey levels below the paper at which a rendered pixel counts as print
_UNREAD_INK_SHARE = 0.5  # an image is unread when this share of its print has no text over it
_FULL_PAGE = 0.5  # image coverage from which "a page that is an image" describes it
_EDGE_PUNCT = ".,:;!?()[]{}\"'«»“”‘’<>"
# Punctuation and symbols that legitimately sit inside words on invoices.
_WORD_INNER_OK = set("-./,:'’&@#%+_()*–—−‐‑°º®©™\\")
_VOWELS = set("aeiouy")


def _is_bad_glyph(char: str) -> bool:
    """Replacement char, private-use area, controls and unassigned code points."""
    if char == "\ufffd":
        return True
    return unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn")


def _is_suspicious_word(word: str) -> bool:
    """A word whose shape real text rarely has: what a font without a usable ToUnicode yields."""
    if "(cid:" in word:
        return True
    core = word.strip(_EDGE_PUNCT)
    if len(core) < 3:
        return False
    letters = [c for c in core if c.isalpha()]
    alnum = sum(c.isalnum() for c in core)
    if alnum / len(core) < 0.5 and len(set(core)) > 1:
        return True  # "3+(/," — symbols standing in for letters
    if len(letters) >= 2 and any(
        not c.isalnum() and not c.isspace() and c not in _WORD_INNER_OK for c in core
    ):
        return True  # "tot£l", "num∂er": symbols inside words
    if len(core) >= 5 and core.isalpha() and not core.isupper():
        ascii_form = unicodedata.normalize("NFKD", core).encode("ascii", "ignore").decode()
        if len(ascii_form) == len(core) and not (_VOWELS & set(ascii_form.lower())):
            return True  # Latin word with no vowel at all
    return False


def garbled_share(words: list[str]) -> float:
    """Share of characters that are unreadable glyphs or belong to garbled-looking words."""
    total = 0
    bad = 0
    for word in words:
        chars = [c for c in word if not c.isspace()]
        total += len(chars)
        if _is_suspicious_word(word):
            bad += len(chars)
        else:
            bad += sum(_is_bad_glyph(c) for c in chars)
    return bad / total if total else 0.0


def _mark(grid: np.ndarray, rect: pymupdf.Rect, page_rect: pymupdf.Rect) -> None:
    """Set the cells whose area the rectangle touches."""
    clipped = rect & page_rect
    if clipped.is_empty:
        return
    cell_w = page_rect.width / _GRID
    cell_h = page_rect.height / _GRID
    x0 = int((clipped.x0 - page_rect.x0) / cell_w)
    x1 = int(np.ceil((clipped.x1 - page_rect.x0) / cell_w))
    y0 = int((clipped.y0 - page_rect.y0) / cell_h)
    y1 = int(np.ceil((clipped.y1 - page_rect.y0) / cell_h))
    grid[max(0, y0) : min(_GRID, y1), max(0, x0) : min(_GRID, x1)] = True


def _image_masks(page: pymupdf.Page) -> list[np.ndarray]:
    """One cell mask per image placed on the page."""
    rect = page.rect
    masks = []
    for info in page.get_image_info():
        box = pymupdf.Rect(info["bbox"])
        # Count only the inner cells an image really covers, not every cell its edge grazes.
        inner = pymupdf.Rect(
            box.x0 + rect.width / _GRID / 2,
            box.y0 + rect.height / _GRID / 2,
            box.x1 - rect.width / _GRID / 2,
            box.y1 - rect.height / _GRID / 2,
        )
        grid = np.zeros((_GRID, _GRID), dtype=bool)
        if not inner.is_empty:
            _mark(grid, inner, rect)
            masks.append(grid)
    return masks


def _ink_mask(page: pymupdf.Page) -> np.ndarray:
    """Cells where a small greyscale render of the page shows print (a pixel well below paper).

    Invisible text (the OCR layer of a "sandwich" scan) is not rendered, visible text is; both
    are judged against the text mask by the caller, so only print that no text covers counts.
    """
    side = _GRID * 4
    matrix = pymupdf.Matrix(side / page.rect.width, side / page.rect.height)
    pix = page.get_pixmap(matrix=matrix, colorspace=pymupdf.csGRAY, alpha=False)
    pixels = np.frombuffer(pix.samples, dtype=np.uint8).reshape(pix.height, pix.stride)
    pixels = pixels[:side, :side]
    if pixels.shape != (side, side):  # rounding can leave a row short: pad with paper
        padded = np.full((side, side), 255, dtype=np.uint8)
        padded[: pixels.shape[0], : pixels.shape[1]] = pixels
        pixels = padded
    darkest = pixels.reshape(_GRID, 4, _GRID, 4).min(axis=(1, 3))
    paper = float(np.percentile(pixels, 90))  # grey or yellowed scans have darker paper
    return np.asarray(darkest < paper - _INK_CONTRAST)


def _text_mask(page: pymupdf.Page, boxes: list[pymupdf.Rect]) -> np.ndarray:
    """Cells with text, grown by one cell so the gaps between lines count as text area."""
    grid = np.zeros((_GRID, _GRID), dtype=bool)
    for box in boxes:
        _mark(grid, box, page.rect)
    grown = grid.copy()
    grown[1:, :] |= grid[:-1, :]
    grown[:-1, :] |= grid[1:, :]
    grown[:, 1:] |= grid[:, :-1]
    grown[:, :-1] |= grid[:, 1:]
    return grown


def _font_signals(page: pymupdf.Page) -> tuple[int, int]:
    """(Type3 fonts, fonts with no ToUnicode map and a non-standard encoding) on the page."""
    doc = page.parent
    type3 = 0
    no_unicode = 0
    standard = {"WinAnsiEncoding", "MacRomanEncoding", "StandardEncoding", "MacExpertEncoding"}
    for xref, _ext, ftype, _base, _name, encoding, *_ in page.get_fonts(full=True):
        if ftype == "Type3":
            type3 += 1
        if xref <= 0:
            continue
        has_map = doc.xref_get_key(xref, "ToUnicode")[0] != "null"
        if not has_map and (ftype in ("Type0", "Type3") or encoding not in standard):
            no_unicode += 1
    return type3, no_unicode


def page_signals(page: pymupdf.Page | None, normalised: NormalisedPage) -> dict[str, float]:
    """Measure what routing needs; `page` is None for raster inputs (no text layer at all)."""
    if page is None:
        return {
            "raster": 1.0,
            "text_chars": 0.0,
            "words": 0.0,
            "garbled_share": 0.0,
            "image_coverage": 1.0,
            "image_text_share": 0.0,
            "unread_image_share": 1.0,
            "fonts_type3": 0.0,
            "fonts_without_tounicode": 0.0,
        }
    raw_words = [w for w in page.get_text("words") if w[4].strip()]
    texts = [w[4] for w in raw_words]
    chars = sum(len("".join(t.split())) for t in texts)
    text = _text_mask(page, [pymupdf.Rect(w[:4]) for w in raw_words])
    image_masks = _image_masks(page)
    images = np.zeros((_GRID, _GRID), dtype=bool)
    unread = np.zeros((_GRID, _GRID), dtype=bool)
    if image_masks:
        ink = _ink_mask(page)
        for mask in image_masks:
            images |= mask
            # Print inside the image that no word of the text layer covers: unread content.
            printed = int((mask & ink).sum())
            if printed and (mask & ink & ~text).sum() >= _UNREAD_INK_SHARE * printed:
                unread |= mask
    image_cells = int(images.sum())
    type3, no_unicode = _font_signals(page)
    return {
        "raster": 0.0,
        "text_chars": float(chars),
        "words": float(len(texts)),
        "garbled_share": garbled_share(texts),
        "image_coverage": image_cells / images.size,
        "image_text_share": float((images & text).sum()) / image_cells if image_cells else 0.0,
        "unread_image_share": float(unread.sum()) / unread.size,
        "fonts_type3": float(type3),
        "fonts_without_tounicode": float(no_unicode),
    }


# ---------------------------------------------------------------- decision


def page_pixels(normalised: NormalisedPage, dpi: int) -> tuple[int, int]:
    """Pixel size of the page image an OCR engine or a vision model would receive."""
    if normalised.unit == "px":
        return max(1, round(normalised.width)), max(1, round(normalised.height))
    scale = dpi / 72
    return max(1, round(normalised.width * scale)), max(1, round(normalised.height * scale))


def _text_layer_verdict(signals: dict[str, float], options: RouteOptions) -> str | None:
    """Why the text layer cannot be used, or None when it can."""
    if signals.get("raster", 0.0) >= 1.0:
        return "raster image input has no text layer"
    chars = int(signals.get("text_chars", 0.0))
    if chars == 0:
        if signals.get("image_coverage", 0.0) >= _FULL_PAGE:
            return "page is a full-page image with no text layer"
        return "page has no text layer (text may be drawn as outlines, or the page is blank)"
    if chars < options.min_chars:
        return f"text layer has only {chars:,} characters (minimum {options.min_chars:,})"
    garbled = signals.get("garbled_share", 0.0)
    if garbled > options.max_garbled_share:
        fonts = int(signals.get("fonts_without_tounicode", 0.0))
        font_note = f"; {fonts} font(s) without a Unicode map" if fonts else ""
        return f"text layer is garbled ({garbled:.0%} unreadable glyphs{font_note})"
    unread = signals.get("unread_image_share", 0.0)
    if unread >= options.image_coverage_threshold:
        return (
            f"images with print but no text layer over it cover {unread:.0%} of the page "
            f"(the text layer has {chars:,} chars elsewhere)"
        )
    return None


def _vision_choice(width: int, height: int, options: RouteOptions) -> Estimate | None:
    """The vision call to make within budget, downgrading high to low detail; None if none fits."""
    details: list[Detail] = [options.vision_detail]
    if options.vision_family is ProviderFamily.OPENAI and options.vision_detail == "high":
        details.append("low")
    for detail in details:
        estimate = estimate_vision_call(options.vision_family, width, height, detail)
        if estimate.cost_usd <= options.max_vision_cost_usd:
            return estimate
    return None


def route_page(
    signals: dict[str, float], normalised: NormalisedPage, options: RouteOptions
) -> PageRoute:
    """Text layer when it is present, readable and covers the page; otherwise OCR (or vision)."""
    width, height = page_pixels(normalised, options.render_dpi)
    estimates = estimate_page_alternatives(width, height)
    problem = _text_layer_verdict(signals, options)
    if problem is None:
        route = Route.TEXT_LAYER
        reason = (
            f"text layer: {int(signals.get('text_chars', 0)):,} chars, "
            f"{signals.get('garbled_share', 0.0):.1%} garbled"
        )
    else:
        route = Route.OCR
        reason = f"OCR: {problem}"
        if options.allow_vision:
            choice = _vision_choice(width, height, options)
            if choice is not None:
                route = Route.VISION
                reason = (
                    f"vision: {problem}; {choice.alternative} estimated "
                    f"${choice.cost_usd:.4f} within the ${options.max_vision_cost_usd} budget"
                )
            else:
                reason += f"; vision over the ${options.max_vision_cost_usd} page budget"
    if options.force is not None and options.force is not route:
        reason = f"{options.force.value}: forced by options (the router chose {reason})"
        route = options.force
    return PageRoute(
        page=normalised.index + 1,
        route=route,
        reason=reason,
        signals=signals,
        estimates=estimates,
    )
