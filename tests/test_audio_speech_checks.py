"""`speech_found`: no words is a clean result only for a quiet recording."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmflow.tasks.audio.models import Segment, WordTiming
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
