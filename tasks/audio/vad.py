"""Speech detection and chunking.

The default detector is the speaker segmentation model the diariser runs (segmentation-3.0,
tasks/audio/segmentation.py; computed once, shared with diarisation): trained on meetings, it
hears quiet, far-field speech that Silero VAD (the ONNX file inside faster-whisper's wheel, still
available as `engine="silero"`) misses: on two 30 s AMI array excerpts with speech in them Silero
found no speech at all, even after levelling.

Only detected speech reaches the recogniser and the speaker embedder: that is what keeps
Whisper from writing text over silence and music, and what bounds the work on long recordings.
Chunks are cut at pauses and bounded in length, so each fits one model window or one provider
request (a 25 MB upload limit is about 13 minutes of 16 kHz 16-bit mono WAV).
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np
from pydantic import BaseModel

from mmflow.tasks.audio.models import Chunk, NormalisedAudio, SpeechRegion, WordTiming
from mmflow.tasks.errors import MissingDependency

WHISPER_WINDOW_S = 30.0


class VadEngine(StrEnum):
    SEGMENTATION = "segmentation"  # segmentation-3.0: any local speaker active
    SILERO = "silero"


class VadSettings(BaseModel):
    """Speech detection parameters (for Silero, see faster_whisper.vad.VadOptions)."""

    engine: VadEngine = VadEngine.SEGMENTATION
    threshold: float = 0.5  # speech probability (Silero) or share of windows hearing speech
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
    if settings.engine is VadEngine.SEGMENTATION:
        return _segmentation_speech(audio, settings)
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


def _segmentation_speech(audio: NormalisedAudio, settings: VadSettings) -> list[SpeechRegion]:
    """Frames where at least `threshold` of the windows covering them hear someone, as regions:
    pauses shorter than `min_silence_duration_ms` bridged, blips shorter than
    `min_speech_duration_ms` dropped, `speech_pad_ms` added, long ones split at their quietest."""
    from mmflow.tasks.audio.segmentation import segment_shared, window_step

    segmentation = segment_shared(audio.samples, window_step(audio.duration_s))
    heard = segmentation.aggregate(segmentation.activity.max(axis=2, keepdims=True))[:, 0]
    step = segmentation.frame_step_s
    merged: list[list[float]] = []
    for start, end in segmentation.spans(heard >= settings.threshold):
        if merged and start - merged[-1][1] < settings.min_silence_duration_ms / 1000:
            merged[-1][1] = end
        else:
            merged.append([start, end])
    pad = settings.speech_pad_ms / 1000
    regions: list[SpeechRegion] = []
    for start, end in merged:
        if end - start < settings.min_speech_duration_ms / 1000:
            continue
        start, end = max(0.0, start - pad), min(audio.duration_s, end + pad)
        for a, b in _split_at_quietest(start, end, heard, step, settings.max_speech_duration_s):
            regions.append(
                SpeechRegion(start=round(audio.offset_s + a, 3), end=round(audio.offset_s + b, 3))
            )
    return _without_overlaps(regions)


def _split_at_quietest(
    start: float, end: float, heard: np.ndarray, step: float, max_s: float
) -> list[tuple[float, float]]:
    """Cut a region longer than `max_s` where speech is least certain in its second half."""
    if end - start <= max_s:
        return [(start, end)]
    lo, hi = int((start + max_s / 2) / step), int((start + max_s) / step)
    cut = (lo + int(np.argmin(heard[lo:hi]))) * step if hi > lo else start + max_s
    return [(start, cut), *_split_at_quietest(cut, end, heard, step, max_s)]


def _without_overlaps(regions: list[SpeechRegion]) -> list[SpeechRegion]:
    """Padding can make neighbours overlap: join them (chunking expects ordered, disjoint)."""
    out: list[SpeechRegion] = []
    for region in regions:
        if out and region.start <= out[-1].end:
            if region.end - out[-1].start <= WHISPER_WINDOW_S - 1.0:
                out[-1] = SpeechRegion(start=out[-1].start, end=max(out[-1].end, region.end))
                continue
            region = SpeechRegion(start=out[-1].end, end=region.end)
        out.append(region)
    return out


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


def regions_to_diarise(regions: list[SpeechRegion], words: list[WordTiming]) -> list[SpeechRegion]:
    """The speech the diariser may give speakers to. A recording in which the recogniser found
    no word at all has none (music or noise the detector let through never becomes a speaker);
    otherwise every detected region counts, words or not: far-field speech Whisper cannot make
    out is still someone speaking (dropping it cost 1.5 points of full DER on ami-train)."""
    return list(regions) if words else []
