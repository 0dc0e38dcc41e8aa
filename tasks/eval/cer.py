"""Character error rate of OCR against the text a page was rendered from.

The generated scans are rendered from born-digital PDFs, so the PDF's text layer is the gold
text. Both sides are put in one reading order before they are compared — words grouped into
lines by their vertical position, lines top to bottom, words left to right — because OCR and
the text layer list the same words in different orders (columns, table cells), and an order
difference is not a reading error. CER is then the edit distance over the reference length
(jiwer, as for WER), case and punctuation kept: a misread "0"/"O" or "," counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import median

from pydantic import BaseModel

from mmflow.tasks.errors import MissingDependency
from mmflow.tasks.models import PageText, Word


class CerScore(BaseModel):
    cer: float
    errors: int
    reference_chars: int


def reading_order(words: Sequence[Word]) -> str:
    """The words as lines (top to bottom), each left to right, joined by single spaces."""
    if not words:
        return ""
    heights = [max(w.bbox[3] - w.bbox[1], 1e-6) for w in words]
    tolerance = median(heights) / 2
    lines: list[list[Word]] = []
    centres: list[float] = []
    for word in sorted(words, key=lambda w: (w.bbox[1] + w.bbox[3]) / 2):
        centre = (word.bbox[1] + word.bbox[3]) / 2
        if lines and centre - centres[-1] <= tolerance:
            lines[-1].append(word)
            centres[-1] = sum((w.bbox[1] + w.bbox[3]) / 2 for w in lines[-1]) / len(lines[-1])
        else:
            lines.append([word])
            centres.append(centre)
    ordered = (" ".join(w.text for w in sorted(line, key=lambda w: w.bbox[0])) for line in lines)
    return " ".join(" ".join(ordered).split())


def character_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> CerScore:
    """Corpus CER: total character edits over total reference characters."""
    try:
        import jiwer
    except ImportError as exc:
        raise MissingDependency("jiwer (CER)", "pip install 'mmflow[eval]'") from exc
    pairs = [(r, h) for r, h in zip(references, hypotheses, strict=True) if r]
    if not pairs:
        return CerScore(cer=0.0, errors=0, reference_chars=0)
    out = jiwer.process_characters([r for r, _ in pairs], [h for _, h in pairs])
    errors = out.substitutions + out.deletions + out.insertions
    chars = sum(len(r) for r, _ in pairs)
    return CerScore(cer=errors / chars, errors=errors, reference_chars=chars)


def page_cer(reference: PageText, hypothesis: PageText) -> CerScore:
    """CER of one OCR page against the text layer it was rendered from."""
    return character_error_rate([reading_order(reference.words)], [reading_order(hypothesis.words)])
