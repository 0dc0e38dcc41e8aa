"""`speech_found`: no words is a clean result only for a quiet recording."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmflow.tasks.audio.models import NormalisedAudio, Segment, WordTiming
from mmflow.tasks.audio.normalise import normalise_audio
from mmflow.tasks.audio.speech_checks import speech_found_check, voice_band_seconds
from mmflow.tasks.models import CheckStatus


@pytest.fixture
def audio_data(shared_data: Path) -> Path:
    return shared_data / "audio"


def test_no_words_over_sustained_voice_band_sound_is_a_warning(audio_data: Path) -> None:
    """trn01: four people talking quietly and far away; no speech is detected in it."""
    audio = normalise_audio(audio_data / "ami-train" / "trn01.wav")
    assert voice_band_seconds(audio) >= 2.0
    check = speech_found_check(audio, [])
    assert check.status is CheckStatus.WARN
    assert "voice-band" in check.detail


def test_no_words_in_silence_passes(audio_data: Path) -> None:
    audio = normalise_audio(audio_data / "edge" / "silent_1s.wav")
    assert speech_found_check(audio, []).status is CheckStatus.PASS


def test_words_found_pass_without_looking_at_the_audio() -> None:
    segment = Segment(
        start=0.0, end=1.0, text="hello", words=[WordTiming(text="hello", start=0.0, end=1.0)]
    )
    check = speech_found_check(None, [segment])
    assert check.status is CheckStatus.PASS and check.detail == "1 words"


def test_a_repaired_recording_warns_naming_each_repair_and_an_intact_one_passes() -> None:
    from mmflow.tasks.audio.speech_checks import samples_repaired_check

    intact = samples_repaired_check(0, 0, False)
    assert (intact.name, intact.status) == ("samples_repaired", CheckStatus.PASS)
    damaged = samples_repaired_check(12, 3, True)
    assert damaged.status is CheckStatus.WARN
    for said in ("12 NaN/Inf", "3 samples far beyond full scale", "phase-inverted"):
        assert said in damaged.detail


def test_voice_band_seconds_of_a_long_recording_holds_no_float64_copy_of_it() -> None:
    """Room tone with no words reaches this check whole (normalise keeps what sounds): 20
    minutes took 400 MB of float64 frames and spectra at once (1.2 GB an hour). Per chunk, the
    peak stays a few MB above the samples themselves (tracemalloc sees numpy's buffers)."""
    import tracemalloc

    rng = np.random.default_rng(15)
    minutes = 20
    tone = (rng.standard_normal(minutes * 60 * 16_000) * 0.01).astype(np.float32)
    audio = NormalisedAudio(uri="room-tone.wav", samples=tone, original_duration_s=minutes * 60)
    tracemalloc.start()
    try:
        seconds = voice_band_seconds(audio)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seconds < 60  # steady noise: nothing clearly above its own floor
    assert peak < 32 * 2**20, f"{peak / 2**20:.0f} MB"
