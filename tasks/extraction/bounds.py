"""Bounds on the work one page may cost: an upload must not be able to buy minutes of CPU.

Reading a page pairs words with their neighbours on the same row, so a row's cost grows with
the words on it. Real invoices print at most a few dozen words at one height (a wide table
row); a crafted text layer can print tens of thousands (one line of 30,000 numbers, a row of
28,000 separate text pieces). Words beyond `MAX_WORDS_PER_ROW` at one height, and beyond
`MAX_WORDS_PER_PAGE` on a page, are left unread, and the extraction says so with a
`too_complex` warn check rather than silently reading part of the page.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import median

from mmflow.tasks.models import PageText, Word

MAX_WORDS_PER_ROW = 400
MAX_WORDS_PER_PAGE = 8000


@dataclass(frozen=True)
class BoundedPage:
    page: PageText
    dropped: int  # words left unread
    crowded_rows: int  # rows that held more than MAX_WORDS_PER_ROW words

    @property
    def note(self) -> str | None:
        if not self.dropped:
            return None
        total = len(self.page.words) + self.dropped
        why = (
            f"{self.crowded_rows} row(s) with more than {MAX_WORDS_PER_ROW} words"
            if self.crowded_rows
            else f"more than {MAX_WORDS_PER_PAGE} words"
        )
        return f"page {self.page.page}: {self.dropped} of {total} words left unread ({why})"


def _centre(word: Word) -> float:
    return (word.bbox[1] + word.bbox[3]) / 2


def bound_page(page: PageText) -> BoundedPage:
    """The page with at most MAX_WORDS_PER_ROW words per row and MAX_WORDS_PER_PAGE in all.

    Rows are found by one sweep over the words sorted by their vertical centre (a word joins
    the row when its centre is within half a typical word height of the row's first word), so
    this costs O(n log n) whatever the page holds. A crowded row keeps its leftmost words.
    """
    words = page.words
    if len(words) <= MAX_WORDS_PER_ROW:
        return BoundedPage(page, 0, 0)
    tolerance = 0.5 * max(0.1, median(w.bbox[3] - w.bbox[1] for w in words))
    ordered = sorted(range(len(words)), key=lambda i: _centre(words[i]))
    keep: list[int] = []
    crowded = 0
    start = 0
    while start < len(ordered):
        top = _centre(words[ordered[start]])
        end = start
        while end < len(ordered) and _centre(words[ordered[end]]) - top <= tolerance:
            end += 1
        row = ordered[start:end]
        if len(row) > MAX_WORDS_PER_ROW:
            crowded += 1
            row = sorted(row, key=lambda i: words[i].bbox[0])[:MAX_WORDS_PER_ROW]
        keep.extend(row)
        start = end
    if len(keep) > MAX_WORDS_PER_PAGE:
        keep = sorted(keep, key=lambda i: (_centre(words[i]), words[i].bbox[0]))
        keep = keep[:MAX_WORDS_PER_PAGE]
    if len(keep) == len(words):
        return BoundedPage(page, 0, 0)
    kept = [words[i] for i in sorted(keep)]  # the engine's own reading order
    return BoundedPage(page.model_copy(update={"words": kept}), len(words) - len(kept), crowded)
