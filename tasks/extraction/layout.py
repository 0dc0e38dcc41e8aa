"""Rows and segments from word geometry: the reading structure labels and values live in.

A *segment* is a run of words that belong together on one line (a phrase or a table cell): the
engine put them on one line and no wide gap separates them. A *row* is every segment whose
vertical centre lines up, so a label and a value far to its right share a row even when the PDF
stores them as separate lines.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from dataclasses import dataclass, field
from functools import cached_property
from itertools import pairwise
from statistics import median

from mmflow.tasks.extraction.text import fold
from mmflow.tasks.models import BBox, PageText, Word

# A gap wider than this many word heights splits a line into two segments (table cells).
_SEGMENT_GAP = 1.2


def union(boxes: list[BBox]) -> BBox:
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


@dataclass
class TextRun:
    """Words that read as one phrase; `text` joins them with single spaces."""

    page: int
    words: list[Word]
    text: str = ""
    folded: str = ""
    starts: list[int] = field(default_factory=list)  # char offset of each word in `text`

    def __post_init__(self) -> None:
        pieces: list[str] = []
        offset = 0
        for word in self.words:
            self.starts.append(offset)
            pieces.append(word.text)
            offset += len(word.text) + 1
        self.text = " ".join(pieces)
        self.folded = fold(self.text)

    @cached_property
    def bbox(self) -> BBox:
        return union([w.bbox for w in self.words])

    @cached_property
    def height(self) -> float:
        return median(w.bbox[3] - w.bbox[1] for w in self.words)

    def words_in(self, start: int, end: int) -> list[Word]:
        """The words that the character range [start, end) touches (found by bisection: a
        segment can be long, and every value found in it asks)."""
        first = max(0, bisect_right(self.starts, start) - 1)
        last = bisect_left(self.starts, end)
        return [
            w
            for w, s in zip(self.words[first:last], self.starts[first:last], strict=True)
            if s < end and s + len(w.text) > start
        ]

    def span_bbox(self, start: int, end: int) -> BBox:
        return union([w.bbox for w in self.words_in(start, end)] or [self.bbox])

    def span_evidence(self, start: int, end: int) -> str:
        return " ".join(w.text for w in self.words_in(start, end)) or self.text


@dataclass
class Row:
    page: int
    segments: list[TextRun]

    # a row is asked for its box, height and text many times and never changes once built
    @cached_property
    def bbox(self) -> BBox:
        return union([s.bbox for s in self.segments])

    @cached_property
    def height(self) -> float:
        return median(s.height for s in self.segments)

    @cached_property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments)


def _split_line(page: int, words: list[Word]) -> list[TextRun]:
    words = sorted(words, key=lambda w: w.bbox[0])
    segments: list[list[Word]] = [[words[0]]]
    for prev, word in pairwise(words):
        height = max(1.0, min(prev.bbox[3] - prev.bbox[1], word.bbox[3] - word.bbox[1]))
        if word.bbox[0] - prev.bbox[2] > _SEGMENT_GAP * height:
            segments.append([word])
        else:
            segments[-1].append(word)
    return [TextRun(page=page, words=ws) for ws in segments]


def _engine_lines(page: PageText) -> list[list[Word]]:
    """Group words by the engine's line id, or by vertical overlap when it gave none."""
    if all(w.line is not None for w in page.words):
        by_id: dict[int, list[Word]] = {}
        for word in page.words:
            by_id.setdefault(word.line or 0, []).append(word)
        return list(by_id.values())
    lines: list[list[Word]] = []
    for word in sorted(page.words, key=lambda w: (w.bbox[1], w.bbox[0])):
        centre = (word.bbox[1] + word.bbox[3]) / 2
        for line in lines:
            top, bottom = line[0].bbox[1], line[0].bbox[3]
            if top <= centre <= bottom:
                line.append(word)
                break
        else:
            lines.append([word])
    return lines


@dataclass
class _OpenRow:
    """A row being gathered: its box, its segments' heights (sorted) and x-spans (sorted by x0,
    disjoint), kept up to date so placing a segment costs O(log n), not O(segments on the row)."""

    segments: list[TextRun]
    box: BBox
    heights: list[float]
    spans: list[tuple[float, float]]

    @classmethod
    def of(cls, segment: TextRun) -> _OpenRow:
        x0, _, x1, _ = segment.bbox
        return cls([segment], segment.bbox, [segment.height], [(x0, x1)])

    def overlaps_x(self, x0: float, x1: float) -> bool:
        at = bisect_left(self.spans, (x0, x1))
        return any(s[0] < x1 and x0 < s[1] for s in self.spans[max(0, at - 1) : at + 1])

    def median_height(self) -> float:
        n = len(self.heights)
        mid = n // 2
        return self.heights[mid] if n % 2 else (self.heights[mid - 1] + self.heights[mid]) / 2

    def add(self, segment: TextRun) -> None:
        self.segments.append(segment)
        self.box = union([self.box, segment.bbox])
        insort(self.heights, segment.height)
        insort(self.spans, (segment.bbox[0], segment.bbox[2]))


def build_rows(page: PageText) -> list[Row]:
    """Segments of a page grouped into rows, top to bottom, each row left to right."""
    segments = [
        segment for line in _engine_lines(page) if line for segment in _split_line(page.page, line)
    ]
    segments.sort(key=lambda s: (s.bbox[1] + s.bbox[3]) / 2)
    rows: list[_OpenRow] = []
    for segment in segments:
        x0, y0, x1, y1 = segment.bbox
        centre = (y0 + y1) / 2
        placed = False
        for row in reversed(rows[-4:]):
            rb = row.box
            row_centre = (rb[1] + rb[3]) / 2
            tolerance = 0.45 * min(y1 - y0, row.median_height())
            if abs(centre - row_centre) <= tolerance and not row.overlaps_x(x0, x1):
                row.add(segment)
                placed = True
                break
        if not placed:
            rows.append(_OpenRow.of(segment))
    return [
        Row(page=page.page, segments=sorted(r.segments, key=lambda s: s.bbox[0]))
        for r in sorted(rows, key=lambda r: r.box[1])
    ]
