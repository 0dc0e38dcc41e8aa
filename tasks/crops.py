"""Coarse-to-fine: find the region that holds the text from OCR boxes, and crop it.

Fine text costs the most in a vision call (OpenAI bills 170 tokens per 512-px tile at high
detail), yet it usually fills a small part of a photo, chart or screen. The coarse pass is the
OCR that already ran; its boxes locate the text, and only that region, padded, is sent at high
detail. The crop is fitted back into the image's bounds, and not cropped at all when the text
already covers most of the image (nothing would be saved).
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from pydantic import BaseModel

from mmflow.tasks.models import BBox, Word

PAD_SHARE = 0.04  # padding around the text region, as a share of the image's long side
MIN_PAD_PX = 12
WORTH_CROPPING = 0.6  # crop only when the region is at most this share of the image area


class CropPlan(BaseModel):
    """The region to send (pixel box in the normalised image) and why."""

    bbox: BBox
    width: int
    height: int
    area_share: float
    words: int
    reason: str


def _words_matching(words: list[Word], target: str) -> list[Word]:
    wanted = [t for t in target.casefold().split() if t]
    return [w for w in words if any(t in w.text.casefold() for t in wanted)]


def _main_cluster(words: list[Word], gap: float) -> list[Word]:
    """Words linked by boxes closer than `gap`; the cluster with the most text area wins.

    Stray OCR hits far from the text (a texture read as a letter) are left out that way.
    """
    boxes = np.array([w.bbox for w in words], dtype=np.float64)
    n = len(words)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        dx = np.maximum(0, np.maximum(boxes[:, 0] - boxes[i, 2], boxes[i, 0] - boxes[:, 2]))
        dy = np.maximum(0, np.maximum(boxes[:, 1] - boxes[i, 3], boxes[i, 1] - boxes[:, 3]))
        for j in np.flatnonzero((dx <= gap) & (dy <= gap)):
            parent[find(int(j))] = find(i)
    areas: dict[int, float] = {}
    for i in range(n):
        x0, y0, x1, y1 = boxes[i]
        areas[find(i)] = areas.get(find(i), 0.0) + (x1 - x0) * (y1 - y0)
    best = max(areas, key=lambda root: areas[root])
    return [w for i, w in enumerate(words) if find(i) == best]


def text_region(
    words: list[Word], width: int, height: int, target: str | None = None
) -> CropPlan | None:
    """The padded box around the main text cluster (or around words matching `target`).

    None when there is no text, or the text already fills most of the image.
    """
    chosen = _words_matching(words, target) if target else []
    if not chosen:
        readable = [w for w in words if w.text.strip() and w.conf >= 0.5]
        if not readable:
            return None
        heights = [w.bbox[3] - w.bbox[1] for w in readable]
        chosen = _main_cluster(readable, gap=3.0 * float(np.median(heights)))
    pad = max(MIN_PAD_PX, PAD_SHARE * max(width, height))
    x0 = max(0.0, min(w.bbox[0] for w in chosen) - pad)
    y0 = max(0.0, min(w.bbox[1] for w in chosen) - pad)
    x1 = min(float(width), max(w.bbox[2] for w in chosen) + pad)
    y1 = min(float(height), max(w.bbox[3] for w in chosen) + pad)
    share = (x1 - x0) * (y1 - y0) / max(1.0, width * height)
    if share > WORTH_CROPPING:
        return None
    how = f"words matching {target!r}" if target and chosen else "the main text cluster"
    return CropPlan(
        bbox=(round(x0), round(y0), round(x1), round(y1)),
        width=round(x1) - round(x0),
        height=round(y1) - round(y0),
        area_share=round(share, 4),
        words=len(chosen),
        reason=f"{how}: {len(chosen)} words in {share:.0%} of the image",
    )


def crop_image(image: Image.Image, plan: CropPlan) -> Image.Image:
    """The planned region of the image (the box is in this image's pixels)."""
    x0, y0, x1, y1 = (int(v) for v in plan.bbox)
    return image.crop((x0, y0, x1, y1))
