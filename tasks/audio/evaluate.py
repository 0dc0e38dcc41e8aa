"""Scores against ground truth: WER (jiwer, Whisper's text normalisation), DER and JER
(pyannote.metrics), speaker-count accuracy and speaker-attributed WER (cpWER).

DER is reported twice, as the literature does: "full" (no collar, overlap scored: the figure
pyannote publishes for its pipelines) and "forgiving" (a 0.5 s collar, i.e. 0.25 s either side
of every reference boundary, overlapped speech skipped), both after the optimal speaker
mapping. cpWER (CHiME-6) concatenates each speaker's words, pairs reference and hypothesis
speakers so the total edit distance is least, and divides by the reference words: it counts
recognition and attribution errors together (docs/diarisation.md).
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


FORGIVING_COLLAR_S = 0.5  # pyannote.metrics' collar is the total: half before, half after


class DerScore(BaseModel):
    full: float  # collar 0, overlap scored
    forgiving: float  # collar 0.5 s, overlap skipped
    jer: float | None = None  # Jaccard error rate (DIHARD II), collar 0
    reference_speakers: int
    hypothesis_speakers: int

    @property
    def count_right(self) -> bool:
        return self.reference_speakers == self.hypothesis_speakers


class CpWerScore(BaseModel):
    cpwer: float
    errors: int  # edit operations over the best speaker pairing
    reference_words: int
    pairs: dict[str, str | None]  # reference speaker → hypothesis speaker (None: unmatched)


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


def load_uem(path: str | Path) -> dict[str, Any]:
    """UEM file (`<uri> <channel> <start> <end>` per line) → {uri: pyannote.core.Timeline}."""
    from pyannote.core import Segment, Timeline

    timelines: dict[str, Any] = {}
    for line in Path(path).read_text().splitlines():
        fields = line.split()
        if len(fields) >= 4:
            uri = fields[0]
            timeline = timelines.setdefault(uri, Timeline(uri=uri))
            timeline.add(Segment(float(fields[2]), float(fields[3])))
    return timelines


def load_stm(path: str | Path) -> dict[str, dict[str, str]]:
    """STM file (`<uri> <channel> <speaker> <start> <end> <text…>`) → {uri: {speaker: text}},
    each speaker's utterances joined in time order (what cpWER compares)."""
    rows: dict[str, list[tuple[float, str, str]]] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if len(fields) < 5 or line.startswith(";;"):
            continue
        text = " ".join(f for f in fields[5:] if not (f.startswith("<") and f.endswith(">")))
        rows.setdefault(fields[0], []).append((float(fields[3]), fields[2], text))
    out: dict[str, dict[str, str]] = {}
    for uri, utterances in rows.items():
        speakers: dict[str, list[str]] = {}
        for _, speaker, text in sorted(utterances):
            speakers.setdefault(speaker, []).append(text)
        out[uri] = {speaker: " ".join(texts) for speaker, texts in speakers.items()}
    return out


def _default_uem(reference: Any, hypothesis: Any) -> Any:
    # pyannote would guess the same extent, with a warning: say it explicitly instead.
    from pyannote.core import Timeline

    extent = reference.get_timeline().union(hypothesis.get_timeline()).extent()
    return Timeline([extent], uri=reference.uri)


class DiarisationMetrics:
    """Full DER, forgiving DER and JER accumulated over recordings: `add` scores one, `total`
    gives the figures over all of them (errors summed, then divided by total speech)."""

    def __init__(self) -> None:
        try:
            from pyannote.metrics.diarization import DiarizationErrorRate, JaccardErrorRate
        except ImportError as exc:
            raise MissingDependency("pyannote.metrics", "pip install 'mmflow[audio]'") from exc
        self.full = DiarizationErrorRate(collar=0.0, skip_overlap=False)
        self.forgiving = DiarizationErrorRate(collar=FORGIVING_COLLAR_S, skip_overlap=True)
        self.jer = JaccardErrorRate(collar=0.0, skip_overlap=False)
        self.counts: list[bool] = []

    def add(self, reference: Any, hypothesis: Any, uem: Any | None = None) -> DerScore:
        uem = uem if uem is not None else _default_uem(reference, hypothesis)
        score = DerScore(
            full=float(self.full(reference, hypothesis, uem=uem)),
            forgiving=float(self.forgiving(reference, hypothesis, uem=uem)),
            jer=float(self.jer(reference, hypothesis, uem=uem)),
            reference_speakers=len(reference.labels()),
            hypothesis_speakers=len(hypothesis.labels()),
        )
        self.counts.append(score.count_right)
        return score

    def total(self) -> dict[str, float]:
        return {
            "full": float(abs(self.full)),
            "forgiving": float(abs(self.forgiving)),
            "jer": float(abs(self.jer)),
            "count_right": float(sum(self.counts)),
            "recordings": float(len(self.counts)),
        }


def diarisation_error_rate(reference: Any, hypothesis: Any, uem: Any | None = None) -> DerScore:
    """Full and forgiving DER (and JER) of two `pyannote.core.Annotation`s."""
    return DiarisationMetrics().add(reference, hypothesis, uem)


def cp_word_error_rate(reference: dict[str, str], hypothesis: dict[str, str]) -> CpWerScore:
    """cpWER: the speaker pairing with the fewest word errors (Hungarian algorithm on the
    pairwise edit distances; an unmatched speaker's words all count as errors)."""
    try:
        import jiwer
        from scipy.optimize import linear_sum_assignment
    except ImportError as exc:
        raise MissingDependency("jiwer, scipy", "pip install 'mmflow[audio]'") from exc
    import numpy as np

    ref_names, hyp_names = sorted(reference), sorted(hypothesis)
    ref_words = [normalise_text(reference[n]).split() for n in ref_names]
    hyp_words = [normalise_text(hypothesis[n]).split() for n in hyp_names]
    size = max(len(ref_names), len(hyp_names))
    cost = np.zeros((size, size))
    for i in range(size):
        for j in range(size):
            r = ref_words[i] if i < len(ref_words) else []
            h = hyp_words[j] if j < len(hyp_words) else []
            if not r or not h:
                cost[i, j] = len(r) + len(h)
                continue
            out = jiwer.process_words(" ".join(r), " ".join(h))
            cost[i, j] = out.substitutions + out.deletions + out.insertions
    rows, cols = linear_sum_assignment(cost)
    total = sum(len(w) for w in ref_words)
    if total == 0:
        raise ValueError("no reference words to score against")
    pairs = {
        ref_names[i]: (hyp_names[j] if j < len(hyp_names) else None)
        for i, j in zip(rows, cols, strict=True)
        if i < len(ref_names)
    }
    errors = int(cost[rows, cols].sum())
    return CpWerScore(cpwer=errors / total, errors=errors, reference_words=total, pairs=pairs)
