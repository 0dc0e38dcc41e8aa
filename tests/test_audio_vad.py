"""Speech detection and chunking."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from mmflow.tasks.audio.models import NormalisedAudio, SpeechRegion, WordTiming
from mmflow.tasks.audio.normalise import normalise_audio
from mmflow.tasks.audio.vad import (
    chunk_speech,
    detect_speech,
    max_chunk_seconds_for_bytes,
    regions_to_diarise,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "audio"


@pytest.fixture
def data() -> Path:
    if not DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return DATA


def test_silence_has_no_speech() -> None:
    audio = NormalisedAudio(
        uri="silence", samples=np.zeros(16_000 * 3, dtype=np.float32), original_duration_s=3.0
    )
    assert detect_speech(audio) == []


def test_silence_file_has_no_speech(data: Path) -> None:
    assert detect_speech(normalise_audio(data / "edge" / "silent_1s.wav")) == []


def test_speech_is_found_inside_the_recording(data: Path) -> None:
    regions = detect_speech(normalise_audio(data / "speech" / "jfk.flac"))
    assert regions
    assert 0.0 <= regions[0].start < 1.0
    assert regions[-1].end <= 11.1
    assert sum(r.duration for r in regions) > 7.0


def _regions(*spans: tuple[float, float]) -> list[SpeechRegion]:
    return [SpeechRegion(start=a, end=b) for a, b in spans]


def test_chunks_never_exceed_the_bound() -> None:
    regions = _regions(*[(i * 4.0, i * 4.0 + 3.5) for i in range(30)])
    chunks = chunk_speech(regions, max_chunk_s=30.0)
    assert all(c.duration <= 30.0 for c in chunks)
    assert sum(len(c.regions) for c in chunks) == 30


def test_a_long_pause_ends_a_chunk() -> None:
    chunks = chunk_speech(_regions((0.0, 2.0), (2.5, 4.0), (20.0, 22.0)), max_pause_s=3.0)
    assert [(c.start, c.end) for c in chunks] == [(0.0, 4.0), (20.0, 22.0)]


def test_a_region_longer_than_the_bound_is_split() -> None:
    chunks = chunk_speech(_regions((0.0, 70.0)), max_chunk_s=30.0)
    assert len(chunks) == 3
    assert chunks[0].start == 0.0 and chunks[-1].end == 70.0


def test_every_region_is_diarised_once_any_word_was_recognised() -> None:
    regions = _regions((0.0, 2.0), (5.0, 7.0))
    words = [WordTiming(text="hello", start=5.5, end=5.9)]
    assert regions_to_diarise(regions, words) == regions


def test_no_region_is_diarised_when_no_word_was_recognised() -> None:
    assert regions_to_diarise(_regions((0.0, 2.0)), []) == []


def test_a_25_mb_upload_limit_allows_about_13_minutes_of_wav() -> None:
    seconds = max_chunk_seconds_for_bytes(25 * 1024 * 1024)
    assert 810 < seconds < 820
    chunks = chunk_speech(_regions(*[(i * 10.0, i * 10.0 + 9.0) for i in range(200)]), seconds)
    assert all(c.duration * 16_000 * 2 + 44 <= 25 * 1024 * 1024 for c in chunks)


def _reference_speech(uri: str) -> list[tuple[float, float]]:
    from mmflow.tasks.audio.evaluate import load_rttm

    reference = load_rttm(DATA / "ami-train" / "debug.train.rttm")[uri]
    return [(s.start, s.end) for s in reference.get_timeline().support()]


def test_quiet_far_field_speech_is_detected(data: Path) -> None:
    """trn02 (one far-field speaker, 0.7 s of speech in 30 s): Silero found nothing at all."""
    regions = detect_speech(normalise_audio(data / "ami-train" / "trn02.wav"))
    speech = _reference_speech("trn02")
    assert any(r.start < b and r.end > a for r in regions for a, b in speech)
    assert sum(r.duration for r in regions) < 5.0  # and not the whole 30 s of room noise


def test_far_field_meeting_speech_is_mostly_found(data: Path) -> None:
    """trn03: speech almost throughout; at least 90 % of it falls inside a region."""
    regions = detect_speech(normalise_audio(data / "ami-train" / "trn03.wav"))
    speech = _reference_speech("trn03")
    covered = sum(max(0.0, min(b, r.end) - max(a, r.start)) for r in regions for a, b in speech)
    assert covered >= 0.9 * sum(b - a for a, b in speech)


def test_regions_are_ordered_disjoint_and_short_enough_for_whisper(data: Path) -> None:
    regions = detect_speech(normalise_audio(data / "ami-train" / "trn09.wav"))
    assert all(r.duration <= 29.0 + 1e-6 for r in regions)
    assert all(a.end <= b.start for a, b in itertools.pairwise(regions))


def test_silero_stays_available(data: Path) -> None:
    from mmflow.tasks.audio.vad import VadEngine, VadSettings

    audio = normalise_audio(data / "speech" / "jfk.flac")
    assert detect_speech(audio, VadSettings(engine=VadEngine.SILERO))
