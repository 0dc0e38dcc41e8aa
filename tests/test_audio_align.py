"""assign_speakers: every word gets a speaker and no word is dropped."""

from __future__ import annotations

import random

from mmflow.tasks.audio.align import FALLBACK_SPEAKER, assign_speakers
from mmflow.tasks.audio.models import Diarisation, Segment, SpeakerTurn, Transcript, WordTiming


def _transcript(*segments: list[tuple[str, float, float]]) -> Transcript:
    return Transcript(
        language="en",
        language_probability=1.0,
        engine="test",
        model="test",
        segments=[
            Segment(
                start=words[0][1],
                end=words[-1][2],
                text=" ".join(w for w, _, _ in words),
                words=[WordTiming(text=w, start=a, end=b) for w, a, b in words],
            )
            for words in segments
        ],
    )


def _turns(*turns: tuple[float, float, str]) -> Diarisation:
    return Diarisation(
        turns=[SpeakerTurn(start=a, end=b, speaker=s) for a, b, s in turns],
        backend="test",
        num_speakers=len({s for _, _, s in turns}),
    )


def test_a_segment_spoken_by_two_people_is_split_at_the_change() -> None:
    transcript = _transcript(
        [("hello", 0.0, 0.4), ("there.", 0.5, 0.9), ("hi", 1.2, 1.4), ("Anna.", 1.5, 1.9)]
    )
    segments = assign_speakers(transcript, _turns((0.0, 1.0, "A"), (1.1, 2.0, "B")))
    assert [(s.speaker, s.text) for s in segments] == [("A", "hello there."), ("B", "hi Anna.")]


def test_a_word_between_turns_goes_to_the_nearest_turn() -> None:
    transcript = _transcript([("one", 0.0, 0.5), ("two", 3.1, 3.4)])
    segments = assign_speakers(transcript, _turns((0.0, 0.6, "A"), (3.5, 5.0, "B")))
    assert [w.speaker for s in segments for w in s.words] == ["A", "B"]


def test_a_word_straddling_two_turns_goes_to_the_larger_overlap() -> None:
    transcript = _transcript([("straddle", 0.8, 1.4)])
    segments = assign_speakers(transcript, _turns((0.0, 1.0, "A"), (1.0, 2.0, "B")))
    assert segments[0].speaker == "B"


def test_words_without_any_turn_get_the_fallback_speaker() -> None:
    transcript = _transcript([("alone", 0.0, 0.5)])
    segments = assign_speakers(transcript, _turns())
    assert segments[0].words[0].speaker == FALLBACK_SPEAKER


def test_no_word_is_ever_dropped_or_duplicated() -> None:
    rng = random.Random(7)
    words, t = [], 0.0
    for i in range(400):
        start = t + rng.uniform(0.0, 0.6)
        words.append((f"w{i}", start, start + rng.uniform(0.05, 0.5)))
        t = start
    segments = [words[i : i + 13] for i in range(0, len(words), 13)]
    turns, t = [], 0.0
    while t < words[-1][2]:
        length = rng.uniform(0.3, 6.0)
        turns.append((t, t + length, rng.choice("ABC")))
        t += length + rng.uniform(0.0, 2.0)
    aligned = assign_speakers(_transcript(*segments), _turns(*turns))
    out = [(w.text, w.start) for s in aligned for w in s.words]
    assert out == [(w, a) for w, a, _ in words]
    assert all(w.speaker for s in aligned for w in s.words)
    assert all(w.speaker == s.speaker for s in aligned for w in s.words)


def test_a_word_said_while_another_speaker_talks_is_marked_overlap() -> None:
    transcript = _transcript([("yes", 1.0, 1.4), ("right", 2.0, 2.4)])
    segments = assign_speakers(transcript, _turns((1.1, 3.0, "A"), (0.9, 1.5, "B")))
    words = [w for s in segments for w in s.words]
    assert [w.speaker for w in words] == ["B", "A"]  # no word dropped, each one speaker
    first, second = words
    assert first.overlap and first.overlap_speaker == "A"
    assert not second.overlap and second.overlap_speaker is None


def test_a_brief_touch_of_another_turn_is_not_overlap() -> None:
    transcript = _transcript([("hello", 1.0, 2.0)])
    segments = assign_speakers(transcript, _turns((0.0, 3.0, "A"), (1.9, 2.5, "B")))
    (word,) = segments[0].words
    assert word.speaker == "A" and not word.overlap
