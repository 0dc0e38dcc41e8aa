"""Pydantic models of the meeting-audio steps; every time is seconds in the ORIGINAL file."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mmflow.tasks.models import Check

SAMPLE_RATE = 16_000
"""Every step after normalise works on 16 kHz mono float32 samples (what Whisper expects)."""


class ChannelLayout(StrEnum):
    MONO = "mono"
    STEREO_MIXED = "stereo_mixed"  # both channels carry the same mix
    STEREO_SPEAKERS = "stereo_speakers"  # each channel is mostly a different speaker


class ValidatedAudio(BaseModel):
    """What validate learned from the bytes (ffprobe + a full decode check)."""

    uri: str
    sha256: str
    size: int
    media_type: str  # e.g. audio/wav, audio/mpeg, audio/mp4
    container: str  # ffprobe's format_name, e.g. "wav", "mov,mp4,m4a,3gp,3g2,mj2"
    codec: str  # e.g. pcm_s16le, mp3, aac, flac, vorbis, opus
    duration_s: float
    sample_rate: int
    channels: int


class NormalisedAudio(BaseModel):
    """16 kHz mono float32 samples of the kept part of the file, and how to map them back.

    `samples[0]` is at `offset_s` in the original file: leading silence was trimmed, and every
    later step adds the offset so its times refer to the original recording.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    uri: str
    samples: np.ndarray
    sample_rate: int = SAMPLE_RATE
    offset_s: float = 0.0
    original_duration_s: float
    gain_db: float = 0.0
    layout: ChannelLayout = ChannelLayout.MONO
    channel_samples: np.ndarray | None = None  # (channels, n), same gain/offset as `samples`
    channel_correlation: float | None = None
    channel_dominance: float | None = None  # share of voiced frames one channel dominates
    non_finite_samples: int = 0  # NaN/Inf samples in the file, replaced by silence
    out_of_range_samples: int = 0  # rare samples beyond +24 dBFS, replaced by silence
    phase_inverted: bool = False  # channels cancelled in a plain mix: one was inverted first
    notes: list[str] = Field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate

    @property
    def end_s(self) -> float:
        return self.offset_s + self.duration_s

    def index(self, t: float) -> int:
        """Sample index of original-file time `t`, clipped to the kept samples."""
        return int(min(max(round((t - self.offset_s) * self.sample_rate), 0), len(self.samples)))

    def between(self, start: float, end: float) -> np.ndarray:
        """Samples between two original-file times."""
        return self.samples[self.index(start) : self.index(end)]

    def with_samples(self, samples: np.ndarray, note: str) -> NormalisedAudio:
        return self.model_copy(update={"samples": samples, "notes": [*self.notes, note]})


class DenoiseDecision(BaseModel):
    """Whether noise reduction ran, and the measurements behind the choice."""

    applied: bool
    snr_db: float  # estimate before
    snr_db_after: float | None = None  # estimate after, when it was tried
    threshold_db: float
    reason: str


class TimeSpan(BaseModel):
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


class SpeechRegion(TimeSpan):
    """A stretch the VAD heard speech in."""


class Chunk(TimeSpan):
    """Consecutive speech regions grouped for one model call (split at pauses, bounded)."""

    regions: list[SpeechRegion]


class WordTiming(BaseModel):
    text: str
    start: float
    end: float
    probability: float = 1.0
    speaker: str | None = None
    # Said while another speaker was talking too: `speaker` overlapped the word most, and
    # `overlap_speaker` is the other one active.
    overlap: bool = False
    overlap_speaker: str | None = None
    flags: list[str] = Field(default_factory=list)  # why the recogniser may be wrong here


class Segment(BaseModel):
    """A run of words: a recogniser segment, or (after align) one speaker's stretch of it."""

    start: float
    end: float
    text: str
    speaker: str | None = None
    words: list[WordTiming] = Field(default_factory=list)
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    flags: list[str] = Field(default_factory=list)  # why the recogniser may be wrong here


class DroppedSegment(BaseModel):
    """A recogniser output removed as likely hallucination; kept for the record."""

    start: float
    end: float
    text: str
    reason: str


class Transcript(BaseModel):
    language: str
    language_probability: float
    segments: list[Segment]
    engine: str  # e.g. "faster-whisper 1.2.1"
    model: str  # folder name + sha256 prefix of model.bin
    dropped: list[DroppedSegment] = Field(default_factory=list)

    @property
    def words(self) -> list[WordTiming]:
        return [w for s in self.segments for w in s.words]

    @property
    def text(self) -> str:
        return " ".join(s.text.strip() for s in self.segments if s.text.strip())


class SpeakerTurn(TimeSpan):
    speaker: str


class Diarisation(BaseModel):
    """Who spoke when; convertible to and from a `pyannote.core.Annotation`."""

    turns: list[SpeakerTurn]
    backend: str
    num_speakers: int
    detail: dict[str, Any] = Field(default_factory=dict)  # e.g. how the count was chosen

    @property
    def speakers(self) -> list[str]:
        return sorted({t.speaker for t in self.turns})

    def to_annotation(self, uri: str = "audio") -> Any:
        from pyannote.core import Annotation
        from pyannote.core import Segment as PSegment

        annotation = Annotation(uri=uri)
        for i, turn in enumerate(self.turns):
            annotation[PSegment(turn.start, turn.end), i] = turn.speaker
        return annotation

    @classmethod
    def from_annotation(
        cls, annotation: Any, backend: str, detail: dict[str, Any] | None = None
    ) -> Diarisation:
        turns = [
            SpeakerTurn(start=float(seg.start), end=float(seg.end), speaker=str(label))
            for seg, _, label in annotation.itertracks(yield_label=True)
        ]
        turns.sort(key=lambda t: (t.start, t.end))
        return cls(
            turns=turns,
            backend=backend,
            num_speakers=len({t.speaker for t in turns}),
            detail=detail or {},
        )


class SpeakerStats(BaseModel):
    speaker: str
    talk_time_s: float
    turns: int
    words: int
    # With --speaker-profiles: cosine similarity to the profile this speaker was paired with
    # (named when it reached the threshold; a SPEAKER_nn keeps its best, too-low score).
    match_score: float | None = None


class NoteItem(BaseModel):
    """One sentence taken from the transcript, with where and by whom it was said."""

    text: str
    start: float
    end: float
    speaker: str | None = None


class Decision(NoteItem):
    pass


class ActionItem(NoteItem):
    owner: str | None = None  # a name said in the sentence, or the speaker for "I will…"
    due: str | None = None  # the due phrase as said, e.g. "by Friday"


class MeetingNotes(BaseModel):
    """Structured notes; the extractive engine and a later LLM backend fill the same model."""

    engine: str
    summary: list[NoteItem] = Field(default_factory=list)
    decisions: list[Decision] = Field(default_factory=list)
    action_items: list[ActionItem] = Field(default_factory=list)


class MeetingSource(BaseModel):
    uri: str
    sha256: str
    media_type: str
    duration_s: float


class MeetingResult(BaseModel):
    """`<stem>.json` of the meeting scenario (docs/contracts.md: only ever add fields)."""

    source: MeetingSource
    language: str | None = None
    segments: list[Segment]
    speakers: list[SpeakerStats]
    notes: MeetingNotes
    # What the pipeline could not vouch for, e.g. no speech found in sound that may hold speech.
    checks: list[Check] = Field(default_factory=list)
    processing: dict[str, Any] = Field(default_factory=dict)  # step decisions, engines
    lineage: dict[str, Any] = Field(default_factory=dict)  # input hash, steps, cache keys
