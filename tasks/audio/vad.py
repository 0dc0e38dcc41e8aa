"""Speech detection (Silero VAD, the ONNX file inside faster-whisper's wheel) and chunking.

Only detected speech reaches the recogniser and the speaker embedder: that is what keeps
Whisper from writing text over silence and music, and what bounds the work on long recordings.
Chunks are cut at pauses and bounded in length, so each fits one model window or one provider
request (a 25 MB upload limit is about 13 minutes of 16 kHz 16-bit mono WAV).
"""

from __future__ import annotations

from pydantic import BaseModel

from mmflow.tasks.audio.models import Chunk, NormalisedAudio, SpeechRegion, WordTiming
from mmflow.tasks.errors import MissingDependency

WHISPER_WINDOW_S = 30.0


class VadSettings(BaseModel):
    """Silero VAD parameters (see faster_whisper.vad.VadOptions for their meaning)."""

    threshold: float = 0.5
    min_speech_duration_ms: int = 250
    min_silence_duration_ms: int = 500
    speech_pad_ms: int = 200
    max_speech_duration_s: float = WHISPER_WINDOW_S - 1.0  # split long speech at short pauses


def detect_speech(
    audio: NormalisedAudio, settings: VadSettings | None = None
) -> list[SpeechRegion]:
    """Speech regions in original-file seconds; an empty list means no speech at all."""
    settings = settings or VadSettings()
    if len(audio.samples) < audio.sample_rate // 10:
        return []
    try:
        from faster_whisper.vad import VadOptions, get_speech_timestamps
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MissingDependency("Silero VAD", "pip install 'mmflow[audio]'") from exc
    options = VadOptions(
        threshold=settings.threshold,
        min_speech_duration_ms=settings.min_speech_duration_ms,
        min_silence_duration_ms=settings.min_silence_duration_ms,
        speech_pad_ms=settings.speech_pad_ms,
        max_speech_duration_s=settings.max_speech_duration_s,
    )
    stamps = get_speech_timestamps(audio.samples, options, sampling_rate=audio.sample_rate)
    rate = audio.sample_rate
    return [
        SpeechRegion(
            start=round(audio.offset_s + s["start"] / rate, 3),
            end=round(audio.offset_s + s["end"] / rate, 3),
        )
        for s in stamps
        if s["end"] > s["start"]
    ]


def chunk_speech(
    regions: list[SpeechRegion], max_chunk_s: float = WHISPER_WINDOW_S, max_pause_s: float = 3.0
) -> list[Chunk]:
    """Group consecutive regions into chunks no longer than `max_chunk_s`, cut at pauses.

    A pause longer than `max_pause_s` always ends a chunk, so long silences are never sent to
    the recogniser. A single region longer than the bound is split evenly (the VAD setting
    `max_speech_duration_s` normally prevents this by splitting at short pauses first).
    """
    chunks: list[Chunk] = []
    current: list[SpeechRegion] = []
    for region in _split_long(regions, max_chunk_s):
        if current and (
            region.end - current[0].start > max_chunk_s
            or region.start - current[-1].end > max_pause_s
        ):
            chunks.append(Chunk(start=current[0].start, end=current[-1].end, regions=current))
            current = []
        current.append(region)
    if current:
        chunks.append(Chunk(start=current[0].start, end=current[-1].end, regions=current))
    return chunks


def _split_long(regions: list[SpeechRegion], max_s: float) -> list[SpeechRegion]:
    out: list[SpeechRegion] = []
    for region in regions:
        pieces = max(1, int(-(-region.duration // max_s)))
        step = region.duration / pieces
        out.extend(
            SpeechRegion(start=region.start + i * step, end=region.start + (i + 1) * step)
            for i in range(pieces)
        )
    return out


def max_chunk_seconds_for_bytes(
    max_bytes: int, sample_rate: int = 16_000, sample_width: int = 2
) -> float:
    """Longest mono PCM WAV chunk that fits a provider's upload limit (44-byte header)."""
    return (max_bytes - 44) / (sample_rate * sample_width)


def regions_with_words(regions: list[SpeechRegion], words: list[WordTiming]) -> list[SpeechRegion]:
    """Regions the recogniser also found words in: VAD and Whisper must agree before anything
    counts as speech, so music the VAD let through never becomes a speaker."""
    return [r for r in regions if any(w.end > r.start and w.start < r.end for w in words)]
