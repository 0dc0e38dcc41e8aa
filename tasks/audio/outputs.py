"""The meeting scenario's files: `<stem>.json`, `<stem>.rttm` (standard RTTM), `<stem>.srt`, and
on request `<stem>.vtt` (WebVTT) and `<stem>.txt` (plain transcript)."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path

from mmflow.tasks.audio.models import (
    Diarisation,
    MeetingNotes,
    MeetingResult,
    MeetingSource,
    Segment,
    SpeakerStats,
    ValidatedAudio,
    WordTiming,
)

SRT_MAX_CUE_S = 7.0  # subtitle cues longer than this are split at word boundaries
LINE_CHARS = 42  # the common broadcast guideline: 42 characters a line, two lines a cue
CUE_LINES = 2
SRT_MAX_CUE_CHARS = LINE_CHARS * CUE_LINES
_SENTENCE_END = re.compile(r"[.!?…][\"')\]]*$")
_PHRASE_END = re.compile(r"[,;:–—-][\"')\]]*$")


class OutputFormat(StrEnum):
    """Files the meeting scenario can write per recording (`--format`)."""

    JSON = "json"
    RTTM = "rttm"
    SRT = "srt"
    VTT = "vtt"
    TXT = "txt"


DEFAULT_FORMATS = (OutputFormat.JSON, OutputFormat.RTTM, OutputFormat.SRT)


def parse_formats(text: str) -> tuple[OutputFormat, ...]:
    """`"json,rttm,srt"` → formats in that order, without repeats; unknown names raise."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not names:
        raise ValueError(
            "--format needs at least one of " + ", ".join(f.value for f in OutputFormat)
        )
    unknown = [n for n in names if n not in {f.value for f in OutputFormat}]
    if unknown:
        raise ValueError(
            f"unknown output format(s) {unknown}: choose from json, rttm, srt, vtt, txt"
        )
    return tuple(OutputFormat(n) for n in dict.fromkeys(names))


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


def srt_timestamp(seconds: float, separator: str = ",") -> str:
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _break_at(words: list[WordTiming]) -> int:
    """Where to end a full cue: after its last sentence end, else its last phrase end (if that
    keeps at least a third of it), else before the word that did not fit."""
    for pattern in (_SENTENCE_END, _PHRASE_END):
        for i in range(len(words) - 1, 0, -1):
            if pattern.search(words[i - 1].text) and i >= len(words) / 3:
                return i
    return len(words)


def _cues(segment: Segment, budget: int) -> list[tuple[float, float, str]]:
    """Split a segment into cues of at most `budget` characters and `SRT_MAX_CUE_S` seconds,
    cutting at sentence, then phrase, boundaries where one is near."""
    if not segment.words:
        return [(segment.start, segment.end, segment.text.strip())]
    cues: list[tuple[float, float, str]] = []
    current: list[WordTiming] = []
    for word in segment.words:
        text = " ".join(w.text for w in [*current, word])
        too_long = current and (word.end - current[0].start > SRT_MAX_CUE_S or len(text) > budget)
        if too_long:
            cut = _break_at(current)
            done, current = current[:cut], current[cut:]
            cues.append((done[0].start, done[-1].end, " ".join(w.text for w in done)))
        current.append(word)
        if _SENTENCE_END.search(word.text) and len(" ".join(w.text for w in current)) > LINE_CHARS:
            cues.append((current[0].start, current[-1].end, " ".join(w.text for w in current)))
            current = []
    if current:
        cues.append((current[0].start, current[-1].end, " ".join(w.text for w in current)))
    return cues


def wrap_lines(text: str, width: int = LINE_CHARS) -> list[str]:
    """At most `CUE_LINES` lines of at most `width` characters when the text fits; the break is
    the most balanced one, preferring a break after punctuation."""
    if len(text) <= width:
        return [text]
    words = text.split(" ")
    best: tuple[float, int] | None = None
    for i in range(1, len(words)):
        first, second = " ".join(words[:i]), " ".join(words[i:])
        if len(first) > width or len(second) > width:
            continue
        cost = abs(len(first) - len(second)) - (12 if _PHRASE_END.search(words[i - 1]) else 0)
        cost -= 20 if _SENTENCE_END.search(words[i - 1]) else 0
        if best is None or cost < best[0]:
            best = (cost, i)
    if best is None:  # a single very long word: keep the text whole rather than cut a word
        return [text]
    return [" ".join(words[: best[1]]), " ".join(words[best[1] :])]


def _subtitle_cues(
    segments: list[Segment], label_width: int
) -> list[tuple[float, float, str, str]]:
    """(start, end, speaker, text) per cue, in time order."""
    cues = []
    for segment in segments:
        speaker = segment.speaker or ""
        budget = SRT_MAX_CUE_CHARS - (label_width if speaker else 0)
        for start, end, text in _cues(segment, budget):
            if text:
                cues.append((start, max(end, start + 0.001), speaker, text))
    return sorted(cues, key=lambda cue: cue[0])


def srt_text(segments: list[Segment]) -> str:
    """SubRip subtitles, `[SPEAKER] text` wrapped to two lines of 42 characters."""
    blocks: list[str] = []
    for start, end, speaker, text in _subtitle_cues(segments, label_width=14):
        labelled = f"[{speaker}] {text}" if speaker else text
        timing = f"{srt_timestamp(start)} --> {srt_timestamp(end)}"
        blocks.append(f"{len(blocks) + 1}\n{timing}\n" + "\n".join(wrap_lines(labelled)) + "\n")
    return "\n".join(blocks)


def vtt_text(segments: list[Segment]) -> str:
    """WebVTT subtitles; the speaker is a voice span (`<v SPEAKER_00>`), which players show."""
    blocks = ["WEBVTT\n"]
    for start, end, speaker, text in _subtitle_cues(segments, label_width=0):
        lines = wrap_lines(text)
        if speaker:
            lines[0] = f"<v {speaker}>{lines[0]}"
        timing = f"{srt_timestamp(start, '.')} --> {srt_timestamp(end, '.')}"
        blocks.append(f"{timing}\n" + "\n".join(lines) + "\n")
    return "\n".join(blocks)


def transcript_text(segments: list[Segment]) -> str:
    """Plain text: one paragraph per speaker stretch, `[mm:ss] SPEAKER: text`."""
    lines = []
    for segment in segments:
        if not segment.text.strip():
            continue
        minutes, seconds = divmod(int(segment.start), 60)
        who = f"{segment.speaker}: " if segment.speaker else ""
        lines.append(f"[{minutes:02d}:{seconds:02d}] {who}{segment.text.strip()}")
    return "\n".join(lines) + ("\n" if lines else "")


def speaker_stats(diarisation: Diarisation, segments: list[Segment]) -> list[SpeakerStats]:
    """Talk time from the turns; word counts from the aligned segments."""
    names = sorted(set(diarisation.speakers) | {s.speaker for s in segments if s.speaker})
    scores = {
        m.get("profile") or m["speaker"]: m["score"]
        for m in diarisation.detail.get("speaker_profiles", [])
    }
    stats = []
    for name in names:
        turns = [t for t in diarisation.turns if t.speaker == name]
        stats.append(
            SpeakerStats(
                speaker=name,
                talk_time_s=round(sum(t.duration for t in turns), 3),
                turns=len(turns),
                words=sum(len(s.words) for s in segments if s.speaker == name),
                match_score=scores.get(name),
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


def render_outputs(
    result: MeetingResult,
    diarisation: Diarisation,
    stem: str,
    formats: tuple[OutputFormat, ...] = DEFAULT_FORMATS,
) -> dict[OutputFormat, str]:
    """The text of each requested file, in the order asked."""
    rendered: dict[OutputFormat, str] = {}
    for kind in formats:
        if kind is OutputFormat.JSON:
            rendered[kind] = result.model_dump_json(indent=2) + "\n"
        elif kind is OutputFormat.RTTM:
            lines = rttm_lines(diarisation, stem)
            rendered[kind] = "\n".join(lines) + ("\n" if lines else "")
        elif kind is OutputFormat.SRT:
            rendered[kind] = srt_text(result.segments)
        elif kind is OutputFormat.VTT:
            rendered[kind] = vtt_text(result.segments)
        else:
            rendered[kind] = transcript_text(result.segments)
    return rendered


def write_meeting_outputs(
    result: MeetingResult,
    diarisation: Diarisation,
    out_dir: str | Path,
    stem: str,
    formats: tuple[OutputFormat, ...] = DEFAULT_FORMATS,
) -> dict[str, Path]:
    """Write `<stem>.<format>` for each format (default json, rttm, srt); paths by format."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for kind, text in render_outputs(result, diarisation, stem, formats).items():
        paths[kind.value] = folder / f"{stem}.{kind.value}"
        paths[kind.value].write_text(text, encoding="utf-8")
    return paths
