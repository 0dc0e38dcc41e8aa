"""WER with Whisper's normalisation and DER with pyannote.metrics."""

from __future__ import annotations

import pytest

from mmflow.tasks.audio.evaluate import diarisation_error_rate, normalise_text, word_error_rate
from mmflow.tasks.audio.models import Diarisation, SpeakerTurn


def test_case_and_punctuation_do_not_count_as_errors() -> None:
    score = word_error_rate(
        ["THE CHILD ALMOST HURT THE SMALL DOG"], ["The child almost hurt the small dog."]
    )
    assert score.wer == 0.0


def test_one_wrong_word_in_eight_is_an_eighth() -> None:
    score = word_error_rate(
        ["drop the tue when you add the figures"], ["drop the two when you add the figures"]
    )
    assert score.wer == pytest.approx(1 / 8)
    assert score.substitutions == 1


def test_normalisation_spells_numbers_like_whisper() -> None:
    assert normalise_text("Ten dollars!") == normalise_text("$10")


def _d(*turns: tuple[float, float, str]) -> Diarisation:
    return Diarisation(
        turns=[SpeakerTurn(start=a, end=b, speaker=s) for a, b, s in turns],
        backend="t",
        num_speakers=len({s for *_, s in turns}),
    )


def test_der_ignores_speaker_names() -> None:
    reference = _d((0, 5, "alice"), (5, 10, "bob")).to_annotation()
    hypothesis = _d((0, 5, "SPEAKER_01"), (5, 10, "SPEAKER_00")).to_annotation()
    score = diarisation_error_rate(reference, hypothesis)
    assert score.full == 0.0 and score.forgiving == 0.0


def test_der_counts_a_wrong_half() -> None:
    reference = _d((0, 5, "alice"), (5, 10, "bob")).to_annotation()
    hypothesis = _d((0, 10, "SPEAKER_00")).to_annotation()
    assert diarisation_error_rate(reference, hypothesis).full == pytest.approx(0.5)


def test_the_forgiving_collar_forgives_small_boundary_shifts() -> None:
    reference = _d((0, 5, "alice"), (5, 10, "bob")).to_annotation()
    hypothesis = _d((0, 5.1, "A"), (5.1, 10, "B")).to_annotation()
    score = diarisation_error_rate(reference, hypothesis)
    assert score.full > 0.0
    assert score.forgiving == 0.0
