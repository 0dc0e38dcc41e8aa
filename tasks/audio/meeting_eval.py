"""Score a folder of meeting outputs against references: what `mmflow eval meeting` prints.

References come as RTTM (one file holding many recordings, or a folder of `<stem>.rttm`), an
optional UEM (the scored part of each recording), STM transcripts with speakers (cpWER) and
a JSON of plain transcripts (WER). Recordings are matched by their stem (the RTTM/STM uri).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from mmflow.tasks.audio.evaluate import (
    CpWerScore,
    DerScore,
    DiarisationMetrics,
    WerScore,
    cp_word_error_rate,
    load_rttm,
    load_stm,
    load_uem,
    word_error_rate,
)
from mmflow.tasks.audio.models import MeetingResult


class RecordingScore(BaseModel):
    recording: str
    der: DerScore | None = None
    cpwer: CpWerScore | None = None
    wer: WerScore | None = None
    hypothesis: str = ""
    flagged_words: dict[str, int] = Field(default_factory=dict)  # flag → words carrying it
    flagged_segments: dict[str, int] = Field(default_factory=dict)
    words: int = 0


class MeetingEvaluation(BaseModel):
    recordings: list[RecordingScore]
    der_total: dict[str, float] | None = None  # full, forgiving, jer, count_right, recordings
    cpwer_total: float | None = None
    wer_total: WerScore | None = None


def load_references(path: Path) -> dict[str, Any]:
    """An RTTM file, or every `*.rttm` of a folder → {uri: Annotation}."""
    files = sorted(path.glob("*.rttm")) if path.is_dir() else [path]
    references: dict[str, Any] = {}
    for file in files:
        references.update(load_rttm(file))
    return references


def _result(outputs: Path, stem: str) -> MeetingResult | None:
    path = outputs / f"{stem}.json"
    if not path.is_file():
        return None
    return MeetingResult.model_validate_json(path.read_text(encoding="utf-8"))


def _stems(outputs: Path) -> list[str]:
    return sorted(
        {p.stem for p in outputs.glob("*.json")} | {p.stem for p in outputs.glob("*.rttm")}
    )


def evaluate_outputs(
    outputs: Path,
    references: dict[str, Any] | None = None,
    uem: dict[str, Any] | None = None,
    stm: dict[str, dict[str, str]] | None = None,
    transcripts: dict[str, dict[str, Any]] | None = None,
) -> MeetingEvaluation:
    """Every output with a matching reference scored, plus totals over them."""
    from pyannote.core import Annotation

    metrics = DiarisationMetrics()
    scores: dict[str, RecordingScore] = {}
    cp_errors, cp_words = 0, 0
    wer_pairs: list[tuple[str, str]] = []
    by_stem = {Path(name).stem: (name, entry) for name, entry in (transcripts or {}).items()}
    for stem in _stems(outputs):
        result = _result(outputs, stem)
        # Named as the references name it: a transcripts key is a file name ("jfk.flac").
        score = RecordingScore(recording=by_stem.get(stem, (stem, None))[0])
        if result is not None:
            score.hypothesis = " ".join(s.text.strip() for s in result.segments if s.text.strip())
            score.words = sum(len(s.words) for s in result.segments)
            score.flagged_words = dict(
                Counter(f for s in result.segments for w in s.words for f in w.flags)
            )
            score.flagged_segments = dict(Counter(f for s in result.segments for f in s.flags))
        if references and stem in references:
            hypotheses = (
                load_rttm(outputs / f"{stem}.rttm") if (outputs / f"{stem}.rttm").is_file() else {}
            )
            hypothesis = next(iter(hypotheses.values()), Annotation(uri=stem))
            score.der = metrics.add(references[stem], hypothesis, (uem or {}).get(stem))
        if stm and stem in stm and result is not None:
            spoken: dict[str, list[str]] = {}
            for segment in result.segments:
                spoken.setdefault(segment.speaker or "?", []).append(segment.text.strip())
            score.cpwer = cp_word_error_rate(stm[stem], {k: " ".join(v) for k, v in spoken.items()})
            cp_errors += score.cpwer.errors
            cp_words += score.cpwer.reference_words
        entry = by_stem.get(stem, (stem, None))[1]
        if entry and not entry.get("exclude_from_wer") and result is not None:
            score.wer = word_error_rate([str(entry["text"])], [score.hypothesis])
            wer_pairs.append((str(entry["text"]), score.hypothesis))
        if score.der or score.cpwer or score.wer:
            scores[stem] = score
    return MeetingEvaluation(
        recordings=list(scores.values()),
        der_total=metrics.total() if metrics.counts else None,
        cpwer_total=cp_errors / cp_words if cp_words else None,
        wer_total=(
            word_error_rate([r for r, _ in wer_pairs], [h for _, h in wer_pairs])
            if wer_pairs
            else None
        ),
    )


def evaluate_paths(
    outputs: Path,
    reference_rttm: Path | None = None,
    uem: Path | None = None,
    stm: Path | None = None,
    transcripts: Path | None = None,
) -> MeetingEvaluation:
    """`evaluate_outputs` from reference files (an STM folder: every `*.stm` in it)."""
    import json

    stm_refs: dict[str, dict[str, str]] = {}
    if stm is not None:
        for file in sorted(stm.glob("*.stm")) if stm.is_dir() else [stm]:
            stm_refs.update(load_stm(file))
    return evaluate_outputs(
        outputs,
        references=load_references(reference_rttm) if reference_rttm else None,
        uem=load_uem(uem) if uem else None,
        stm=stm_refs or None,
        transcripts=json.loads(transcripts.read_text(encoding="utf-8")) if transcripts else None,
    )
