"""The meeting scenario's files: `<stem>.json`, `<stem>.rttm` (standard RTTM), `<stem>.srt`."""

from __future__ import annotations

import re
from pathlib import Path

from mmflow.tasks.audio.models import (
    Diarisation,
    MeetingNotes,
    MeetingResult,
    MeetingSource,
    Segment,
    SpeakerStats,
    ValidatedAudio,
)

SRT_MAX_CUE_S = 7.0  # subtitle cues longer than this are split at word boundaries
SRT_MAX_CUE_CHARS = 84  # two lines of 42 characters, the common broadcast guideline


def _rttm_token(text: str) -> str:
    """RTTM fields are whitespace-separated: no field may contain whitespace."""
    return re.sub(r"\s+", "_", text.strip()) or "audio"


def rttm_lines(diarisation: Diarisation, uri: str) -> list[str]:
    """`SPEAKER <uri> 1 <onset> <duration> <NA> <NA> <speaker> <NA> <NA>` per turn."""
    file_id = _rttm_token(uri)
    return [
        f"SPEAKER {file_id} 1 {turn.start:.3f} {turn.duration:.3f} <NA> <NA> "
        f"{_rttm_token(turn.speaker)} <NA> <NA>"
        for turn in sorted(diarisation.turns, key=lambda t: (t.start, t.end))
        if turn.duration > 0
    ]


def srt_timestamp(seconds: float) -> str:
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d},{millis:03d}"


def _cues(segment: Segment) -> list[tuple[float, float, str]]:
    """Split a long segment into cues at word boundaries (by duration and by length)."""
    if not segment.words:
        return [(segment.start, segment.end, segment.text.strip())]
    cues: list[tuple[float, float, str]] = []
    current = [segment.words[0]]
    for word in segment.words[1:]:
        text = " ".join(w.text for w in [*current, word])
        if word.end - current[0].start > SRT_MAX_CUE_S or len(text) > SRT_MAX_CUE_CHARS:
            cues.append((current[0].start, current[-1].end, " ".join(w.text for w in current)))
            current = []
        current.append(word)
    cues.append((current[0].start, current[-1].end, " ".join(w.text for w in current)))
    return cues


def srt_text(segments: list[Segment]) -> str:
    """SubRip subtitles, one cue per speaker stretch, `[SPEAKER] text`."""
    blocks: list[str] = []
    for segment in segments:
        for start, end, text in _cues(segment):
            if not text:
                continue
            label = f"[{segment.speaker}] " if segment.speaker else ""
            end = max(end, start + 0.001)
            timing = f"{srt_timestamp(start)} --> {srt_timestamp(end)}"
            blocks.append(f"{len(blocks) + 1}\n{timing}\n{label}{text}\n")
    return "\n".join(blocks)


def speaker_stats(diarisation: Diarisation, segments: list[Segment]) -> list[SpeakerStats]:
    """Talk time from the turns; word counts from the aligned segments."""
    names = sorted(set(diarisation.speakers) | {s.speaker for s in segments if s.speaker})
    stats = []
    for name in names:
        turns = [t for t in diarisation.turns if t.speaker == name]
        stats.append(
            SpeakerStats(
                speaker=name,
                talk_time_s=round(sum(t.duration for t in turns), 3),
                turns=len(turns),
                words=sum(len(s.words) for s in segments if s.speaker == name),
            )
        )
    return stats


def build_meeting_result(
    source: ValidatedAudio,
    segments: list[Segment],
    diarisation: Diarisation,
    notes: MeetingNotes,
    *,
    language: str | None = None,
    processing: dict[str, object] | None = None,
) -> MeetingResult:
    return MeetingResult(
        source=MeetingSource(
            uri=source.uri,
            sha256=source.sha256,
            media_type=source.media_type,
            duration_s=source.duration_s,
        ),
        language=language,
        segments=segments,
        speakers=speaker_stats(diarisation, segments),
        notes=notes,
        processing=dict(processing or {}),
    )


def write_meeting_outputs(
    result: MeetingResult, diarisation: Diarisation, out_dir: str | Path, stem: str
) -> dict[str, Path]:
    """Write `<stem>.json`, `<stem>.rttm` and `<stem>.srt`; return their paths by kind."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": folder / f"{stem}.json",
        "rttm": folder / f"{stem}.rttm",
        "srt": folder / f"{stem}.srt",
    }
    paths["json"].write_text(result.model_dump_json(indent=2), encoding="utf-8")
    lines = rttm_lines(diarisation, stem)
    paths["rttm"].write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    paths["srt"].write_text(srt_text(result.segments), encoding="utf-8")
    return paths
