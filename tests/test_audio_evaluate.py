"""WER with Whisper's normalisation and DER with pyannote.metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmflow.tasks.audio.evaluate import (
    DiarisationMetrics,
    cp_word_error_rate,
    diarisation_error_rate,
    load_stm,
    load_uem,
    normalise_text,
    word_error_rate,
)
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


def test_the_forgiving_collar_is_a_quarter_second_either_side() -> None:
    reference = _d((0, 5, "alice"), (5, 10, "bob")).to_annotation()
    inside = _d((0, 5.2, "A"), (5.2, 10, "B")).to_annotation()
    outside = _d((0, 5.4, "A"), (5.4, 10, "B")).to_annotation()
    assert diarisation_error_rate(reference, inside).forgiving == 0.0
    assert diarisation_error_rate(reference, outside).forgiving > 0.0


def test_jer_is_reported_beside_der() -> None:
    reference = _d((0, 5, "alice"), (5, 10, "bob")).to_annotation()
    score = diarisation_error_rate(reference, _d((0, 10, "A")).to_annotation())
    assert score.jer == pytest.approx(0.75)  # alice 50 % wrong, bob unmatched: 100 %
    assert not score.count_right


def test_metrics_over_recordings_sum_errors_before_dividing() -> None:
    metrics = DiarisationMetrics()
    metrics.add(_d((0, 10, "a")).to_annotation("x"), _d((0, 10, "A")).to_annotation("x"))
    metrics.add(
        _d((0, 30, "a")).to_annotation("y"), _d((0, 15, "A")).to_annotation("y")
    )  # 15 s missed of 30
    total = metrics.total()
    assert total["full"] == pytest.approx(15 / 40)
    assert total["count_right"] == 2.0


def test_cpwer_pairs_speakers_whatever_their_names() -> None:
    reference = {"Diane": "hello there how are you", "Sheila": "fine thanks"}
    hypothesis = {"SPEAKER_01": "hello there how are you", "SPEAKER_00": "fine thanks"}
    score = cp_word_error_rate(reference, hypothesis)
    assert score.cpwer == 0.0
    assert score.pairs == {"Diane": "SPEAKER_01", "Sheila": "SPEAKER_00"}


def test_cpwer_counts_words_given_to_the_wrong_speaker() -> None:
    reference = {"Diane": "hello there how are you", "Sheila": "fine thanks"}
    hypothesis = {"SPEAKER_00": "hello there how are you fine thanks"}
    score = cp_word_error_rate(reference, hypothesis)
    assert score.errors == 4  # two insertions for Diane, two deletions for Sheila
    assert score.cpwer == pytest.approx(4 / 7)


def test_stm_and_uem_files_are_read(tmp_path: Path) -> None:
    stm = tmp_path / "a.stm"
    stm.write_text("m 1 Ann 2.0 3.0 world\nm 1 Bob 1.0 2.0 hi\nm 1 Ann 0.5 1.0 hello\n")
    assert load_stm(stm) == {"m": {"Ann": "hello world", "Bob": "hi"}}
    uem = tmp_path / "a.uem"
    uem.write_text("m NA 0.000 30.000\n")
    assert load_uem(uem)["m"].duration() == 30.0
