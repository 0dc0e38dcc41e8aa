"""Classify an image's kind (document/receipt, chart, screenshot, photo) from local signals.

No vision model is available offline (docs/facts.md), and the kind decides what the image flow may
spend on it, so it is judged from what is cheap to measure here:
- text: OCR boxes — how much of the area is text, how many lines, how regular the left edges;
- colour: palette size after quantising, saturation, how much of the image is a few flat
  colours, how much is near-white paper;
- edges: how much of the image is edge, and how much of that lies on long straight
  horizontal/vertical runs (axes, panels, table rules) rather than the ragged edges of nature.

Each kind gets a score from a few transparent rules; the highest wins and the margin over the
runner-up is the confidence. The scores and every signal are kept in the result, so a wrong
call can be explained and the thresholds retuned on real data.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np
from PIL import Image
from pydantic import BaseModel, Field

from mmflow.tasks.models import Word

ANALYSIS_SIDE = 512  # colour and edge statistics are measured on a copy this size
EDGE_THRESHOLD = 40.0  # grey-level step that counts as an edge (0-255 scale)
MAX_WORD_AREA = 0.1  # one OCR box larger than this share of the image is not text
LINE_RUN = 0.25  # a straight run must span this share of the width/height to count as a line


class ImageKind(StrEnum):
    DOCUMENT = "document"  # invoices, receipts, letters, forms: text on paper
    CHART = "chart"
    SCREENSHOT = "screenshot"
    PHOTO = "photo"


class KindResult(BaseModel):
    """The kind, how sure the rules are (0-1), every kind's score and the signals used."""

    kind: ImageKind
    confidence: float
    scores: dict[str, float]
    signals: dict[str, float] = Field(default_factory=dict)
    reason: str = ""


# ---------------------------------------------------------------- signals


def _small(image: Image.Image) -> Image.Image:
    rgb = image.convert("RGB")
    factor = ANALYSIS_SIDE / max(rgb.size)
    if factor < 1:
        size = (max(1, round(rgb.width * factor)), max(1, round(rgb.height * factor)))
        rgb = rgb.resize(size, Image.Resampling.BOX)
    return rgb


def colour_signals(image: Image.Image) -> dict[str, float]:
    """Palette size, dominant-colour share, saturation, paper share, flat and edge fractions."""
    rgb = np.asarray(_small(image), dtype=np.int32)
    pixels = rgb.reshape(-1, 3)
    quantised = (pixels >> 3) @ np.array([1 << 10, 1 << 5, 1])  # 5 bits a channel
    _, counts = np.unique(quantised, return_counts=True)
    counts = np.sort(counts)[::-1]
    total = float(pixels.shape[0])
    maxc, minc = pixels.max(axis=1), pixels.min(axis=1)
    saturation = np.where(maxc > 0, (maxc - minc) / np.maximum(maxc, 1), 0.0)
    grey = rgb @ np.array([299, 587, 114]) / 1000.0
    dx = np.abs(np.diff(grey, axis=1))
    dy = np.abs(np.diff(grey, axis=0))
    flat = (dx[:-1, :] < 2) & (dy[:, :-1] < 2)
    edges_x, edges_y = dx > EDGE_THRESHOLD, dy > EDGE_THRESHOLD
    height, width = grey.shape
    # Long straight runs: a row of horizontal-edge pixels (dy) or a column of vertical ones (dx).
    h_lines = int((edges_y.sum(axis=1) > LINE_RUN * width).sum())
    v_lines = int((edges_x.sum(axis=0) > LINE_RUN * height).sum())
    edge_pixels = float(edges_x.sum() + edges_y.sum())
    straight = float(
        edges_y[edges_y.sum(axis=1) > LINE_RUN * width].sum()
        + edges_x[:, edges_x.sum(axis=0) > LINE_RUN * height].sum()
    )
    # Fine-grained texture: the median absolute Laplacian ignores edges and flat paper alike.
    tint = pixels.min(axis=1).reshape(grey.shape)[:-1, :-1] < 240
    flat_tint = (dx[:-1, :] < 1) & (dy[:, :-1] < 1) & tint
    lap = np.abs(
        4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]
    )
    return {
        "palette_colours": float(len(counts)),
        "top8_share": float(counts[:8].sum() / total),
        "top1_share": float(counts[0] / total),
        # Colours that each fill >= 1.5% of the image: UI panels, chart fills, paper.
        "solid_colours": float((counts / total >= 0.015).sum()),
        # Perfectly flat areas that are not white: panels and bars, never scanned paper.
        "flat_tint_share": float(flat_tint.mean()),
        "mean_saturation": float(saturation.mean()),
        "saturated_share": float((saturation > 0.35).mean()),
        "paper_share": float(((minc > 200) & (saturation < 0.12)).mean()),
        "flat_share": float(flat.mean()),
        "edge_share": edge_pixels / total,
        "straight_edge_share": straight / max(edge_pixels, 1.0),
        "h_lines": float(h_lines),
        "v_lines": float(v_lines),
        "texture": float(np.median(lap)),
        "dark_share": float((maxc < 80).mean()),
    }


def text_signals(words: list[Word], width: float, height: float) -> dict[str, float]:
    """Text area, word and line counts, numeric share and left-edge regularity of OCR boxes."""
    area = max(width * height, 1.0)
    if not words:
        return {
            "words": 0.0,
            "text_area_share": 0.0,
            "lines": 0.0,
            "numeric_share": 0.0,
            "left_aligned_share": 0.0,
            "text_row_share": 0.0,
            "words_per_mpx": 0.0,
            "mean_conf": 0.0,
        }
    boxes = np.array([w.bbox for w in words], dtype=np.float64)
    box_area = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(
        boxes[:, 3] - boxes[:, 1], 0, None
    )
    # A single "word" over a tenth of the image is OCR reading texture (foliage, cloud).
    box_area = np.where(box_area > MAX_WORD_AREA * area, 0.0, box_area)
    lines: dict[int, list[int]] = {}
    for index, word in enumerate(words):
        lines.setdefault(word.line if word.line is not None else index, []).append(index)
    starts = np.array([boxes[idx, 0].min() for idx in lines.values()])
    # Lines starting within 2% of the width of another line's start: typeset columns.
    tolerance = 0.02 * width
    aligned = sum(int((np.abs(starts - s) < tolerance).sum() > 1) for s in starts)
    rows = np.zeros(max(1, int(height)), dtype=bool)
    for _, y0, _, y1 in boxes:
        rows[max(0, int(y0)) : max(0, int(y1)) + 1] = True
    numeric = sum(any(ch.isdigit() for ch in w.text) for w in words)
    return {
        "words": float(len(words)),
        "text_area_share": float(box_area.sum() / area),
        "lines": float(len(lines)),
        "numeric_share": numeric / len(words),
        "left_aligned_share": aligned / len(lines),
        "text_row_share": float(rows.mean()),
        "words_per_mpx": len(words) / (area / 1e6),
        "mean_conf": float(np.mean([w.conf for w in words])),
    }


# ---------------------------------------------------------------- rules


def _ramp(value: float, low: float, high: float) -> float:
    """0 at or below `low`, 1 at or above `high`, linear between (descending if low > high)."""
    if low == high:
        return float(value >= high)
    return float(np.clip((value - low) / (high - low), 0.0, 1.0))


def kind_scores(s: dict[str, float]) -> dict[str, float]:
    """One score per kind in [0, 1] from the signals; each term is one piece of evidence."""
    texty = _ramp(s["text_area_share"], 0.03, 0.12)
    many_lines = _ramp(s["lines"], 8, 25)
    papery = _ramp(s["paper_share"], 0.35, 0.75)
    grey = _ramp(s["mean_saturation"], 0.2, 0.05)
    no_panels = _ramp(s["flat_tint_share"], 0.12, 0.04)
    panels = _ramp(s["flat_tint_share"], 0.08, 0.18)
    solid = _ramp(s["solid_colours"], 2, 4)
    flat = _ramp(s["flat_share"], 0.5, 0.8)
    rich_palette = _ramp(s["palette_colours"], 300, 1000)
    many_tones = _ramp(s["solid_colours"], 8, 15)  # photos: no colour owns much of the image
    textured = _ramp(s["texture"], 0.5, 2.5)
    little_text = _ramp(s["text_area_share"], 0.03, 0.005)
    sparse_text = _ramp(s["text_area_share"], 0.06, 0.035)
    few_lines = _ramp(s["lines"], 20, 12)
    some_text = _ramp(s["words"], 2, 8)
    screen_text = _ramp(s["lines"], 10, 20)
    aligned = _ramp(s["left_aligned_share"], 0.3, 0.7)
    numeric = _ramp(s["numeric_share"], 0.15, 0.45)
    colourful = _ramp(s["saturated_share"], 0.02, 0.1)
    axes = _ramp(s["h_lines"] + s["v_lines"], 1, 4)

    document = (
        0.3 * texty + 0.2 * many_lines + 0.15 * papery + 0.1 * grey + 0.1 * aligned
    ) + 0.15 * no_panels
    chart = (
        0.25 * sparse_text * few_lines
        + 0.2 * numeric
        + 0.15 * max(colourful, axes)
        + 0.15 * flat
        + 0.15 * some_text
        + 0.1 * (1 - textured)
    )
    screenshot = (
        0.35 * panels + 0.2 * solid + 0.2 * screen_text + 0.15 * flat + 0.1 * (1 - textured)
    )
    photo = 0.3 * rich_palette + 0.25 * textured + 0.2 * many_tones + 0.25 * little_text
    return {
        ImageKind.DOCUMENT.value: round(document, 4),
        ImageKind.CHART.value: round(chart, 4),
        ImageKind.SCREENSHOT.value: round(screenshot, 4),
        ImageKind.PHOTO.value: round(photo, 4),
    }


def classify_image(image: Image.Image, words: list[Word]) -> KindResult:
    """The image's kind from its pixels and the OCR words found in it (same pixel space)."""
    signals = colour_signals(image) | text_signals(words, image.width, image.height)
    scores = kind_scores(signals)
    ranked = sorted(scores.items(), key=lambda item: item[1], reverse=True)
    (best, top), (second, runner_up) = ranked[0], ranked[1]
    confidence = round(float(np.clip(0.5 + (top - runner_up), 0.0, 1.0)), 3)
    reason = (
        f"{best} scored {top:.2f} vs {second} {runner_up:.2f}; text area "
        f"{signals['text_area_share']:.1%}, {signals['lines']:.0f} text lines, paper "
        f"{signals['paper_share']:.0%}, flat {signals['flat_share']:.0%}, palette "
        f"{signals['palette_colours']:.0f}, straight edges {signals['straight_edge_share']:.0%}"
    )
    return KindResult(
        kind=ImageKind(best),
        confidence=confidence,
        scores=scores,
        signals={k: round(v, 4) for k, v in signals.items()},
        reason=reason,
    )
