"""Scores against ground truth: WER (jiwer, Whisper's text normalisation) and DER (pyannote).

DER is reported twice, as the literature does: "full" (no collar, overlap scored) and
"forgiving" (0.25 s collar, overlapped speech skipped), both after the optimal speaker mapping.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from mmflow.tasks.errors import MissingDependency


class WerScore(BaseModel):
    wer: float
    substitutions: int
    deletions: int
    insertions: int
    reference_words: int


class DerScore(BaseModel):
    full: float  # collar 0, overlap scored
    forgiving: float  # collar 0.25 s, overlap skipped
    reference_speakers: int
    hypothesis_speakers: int


def normalise_text(text: str) -> str:
    """Whisper's English normaliser (numbers, spellings, fillers, punctuation)."""
    try:
        from whisper_normalizer.english import EnglishTextNormalizer
    except ImportError as exc:
        raise MissingDependency("whisper-normalizer", "pip install 'mmflow[audio]'") from exc
    normalised: str = EnglishTextNormalizer()(text)
    return " ".join(normalised.split())


def word_error_rate(references: list[str], hypotheses: list[str]) -> WerScore:
    """Corpus WER over pairs of texts, both normalised first (empty references are skipped)."""
    try:
        import jiwer
    except ImportError as exc:
        raise MissingDependency("jiwer", "pip install 'mmflow[audio]'") from exc
    pairs = [
        (normalise_text(r), normalise_text(h)) for r, h in zip(references, hypotheses, strict=True)
    ]
    pairs = [(r, h) for r, h in pairs if r]
    if not pairs:
        raise ValueError("no non-empty reference to score against")
    out = jiwer.process_words([r for r, _ in pairs], [h for _, h in pairs])
    reference_words = sum(len(r.split()) for r, _ in pairs)
    return WerScore(
        wer=float(out.wer),
        substitutions=int(out.substitutions),
        deletions=int(out.deletions),
        insertions=int(out.insertions),
        reference_words=reference_words,
    )


def load_rttm(path: str | Path) -> dict[str, Any]:
    """RTTM file → {uri: pyannote.core.Annotation}."""
    from pyannote.core import Annotation, Segment

    annotations: dict[str, Any] = {}
    for line in Path(path).read_text().splitlines():
        fields = line.split()
        if len(fields) < 8 or fields[0] != "SPEAKER":
            continue
        uri, start, duration, speaker = fields[1], float(fields[3]), float(fields[4]), fields[7]
        annotation = annotations.setdefault(uri, Annotation(uri=uri))
        annotation[Segment(start, start + duration), len(annotation)] = speaker
    return annotations


def diarisation_error_rate(reference: Any, hypothesis: Any, uem: Any | None = None) -> DerScore:
    """Full and forgiving DER of two `pyannote.core.Annotation`s."""
    try:
        from pyannote.metrics.diarization import DiarizationErrorRate
    except ImportError as exc:
        raise MissingDependency("pyannote.metrics", "pip install 'mmflow[audio]'") from exc
    if uem is None:
        # pyannote would guess the same extent, with a warning: say it explicitly instead.
        from pyannote.core import Timeline

        extent = reference.get_timeline().union(hypothesis.get_timeline()).extent()
        uem = Timeline([extent], uri=reference.uri)
    full = DiarizationErrorRate(collar=0.0, skip_overlap=False)
    forgiving = DiarizationErrorRate(collar=0.25, skip_overlap=True)
    return DerScore(
        full=float(full(reference, hypothesis, uem=uem)),
        forgiving=float(forgiving(reference, hypothesis, uem=uem)),
        reference_speakers=len(reference.labels()),
        hypothesis_speakers=len(hypothesis.labels()),
    )
