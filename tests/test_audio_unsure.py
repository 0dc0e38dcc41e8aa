"""Flags on words and segments the recogniser may have got wrong."""

from __future__ import annotations

from mmflow.tasks.audio.models import SpeechRegion, WordTiming
from mmflow.tasks.audio.unsure import (
    HIGH_NO_SPEECH_PROB,
    LOW_AVG_LOGPROB,
    OUTSIDE_SPEECH,
    REPETITION_LOOP,
    flag_words,
    looping_words,
    segment_flags,
)


def _words(*spans: tuple[str, float, float]) -> list[WordTiming]:
    return [WordTiming(text=t, start=a, end=b) for t, a, b in spans]


def test_a_word_in_a_pause_between_speech_regions_is_flagged_outside_speech() -> None:
    regions = [SpeechRegion(start=0.0, end=1.0), SpeechRegion(start=3.0, end=4.0)]
    words = flag_words(_words(("yes", 0.2, 0.5), ("uh", 1.8, 2.1), ("no", 3.1, 3.4)), regions)
    assert [w.flags for w in words] == [[], [OUTSIDE_SPEECH], []]


def test_a_phrase_said_three_times_in_a_row_is_a_loop() -> None:
    words = ["thank", "you", "thank", "you", "thank", "you", "so", "much"]
    assert looping_words(words) == {0, 1, 2, 3, 4, 5}
    assert looping_words(["we", "will", "we", "will", "go"]) == set()


def test_segment_flags_follow_whispers_own_limits() -> None:
    assert segment_flags("a fine sentence", -0.3, 0.1) == []
    assert segment_flags("a fine sentence", -1.2, 0.7) == [LOW_AVG_LOGPROB, HIGH_NO_SPEECH_PROB]
    assert REPETITION_LOOP in segment_flags("go on " * 30, -0.2, 0.1)


def test_flagged_words_are_kept() -> None:
    words = flag_words(_words(("la", 0.0, 0.2), ("la", 0.2, 0.4), ("la", 0.4, 0.6)), [])
    assert len(words) == 3
    assert all(set(w.flags) == {OUTSIDE_SPEECH, REPETITION_LOOP} for w in words)
