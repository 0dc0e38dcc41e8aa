"""extract_notes: decisions, action items with owner and due phrase, an extractive summary."""

from __future__ import annotations

from mmflow.tasks.audio.models import Segment, WordTiming
from mmflow.tasks.audio.notes import extract_notes, sentences


def _segment(speaker: str, text: str, start: float) -> Segment:
    words = [
        WordTiming(text=w, start=start + i * 0.3, end=start + i * 0.3 + 0.25, speaker=speaker)
        for i, w in enumerate(text.split())
    ]
    return Segment(start=words[0].start, end=words[-1].end, text=text, speaker=speaker, words=words)


MEETING = [
    _segment(
        "SPEAKER_00", "Good morning. Let us review the supplier contract and the budget.", 0.0
    ),
    _segment("SPEAKER_01", "The supplier contract renewal costs more than the budget allows.", 5.0),
    _segment("SPEAKER_00", "We decided to renegotiate the supplier contract this quarter.", 10.0),
    _segment("SPEAKER_01", "I'll draft the new terms by Friday.", 15.0),
    _segment("SPEAKER_00", "Maria will check the budget numbers before next week.", 18.0),
    _segment("SPEAKER_01", "The weather was nice yesterday.", 22.0),
]


def test_sentences_keep_word_times_and_speakers() -> None:
    items = sentences(MEETING[:1])
    assert [i.text for i in items] == [
        "Good morning.",
        "Let us review the supplier contract and the budget.",
    ]
    assert items[1].start == MEETING[0].words[2].start
    assert items[1].speaker == "SPEAKER_00"


def test_a_decision_is_found() -> None:
    notes = extract_notes(MEETING)
    assert [d.text for d in notes.decisions] == [
        "We decided to renegotiate the supplier contract this quarter."
    ]


def test_a_self_commitment_is_owned_by_its_speaker_with_the_due_phrase() -> None:
    items = {a.text: a for a in extract_notes(MEETING).action_items}
    item = items["I'll draft the new terms by Friday."]
    assert item.owner == "SPEAKER_01"
    assert item.due == "by Friday"


def test_a_named_commitment_is_owned_by_the_named_person() -> None:
    items = {a.text: a for a in extract_notes(MEETING).action_items}
    item = items["Maria will check the budget numbers before next week."]
    assert item.owner == "Maria"
    assert item.due == "before next week"


def test_small_talk_is_not_an_action_item() -> None:
    texts = [a.text for a in extract_notes(MEETING).action_items]
    assert "The weather was nice yesterday." not in texts
    assert len(texts) == 2


def test_the_summary_is_made_of_said_sentences_in_order() -> None:
    notes = extract_notes(MEETING)
    said = {i.text for i in sentences(MEETING)}
    assert notes.summary
    assert all(item.text in said for item in notes.summary)
    assert [i.start for i in notes.summary] == sorted(i.start for i in notes.summary)
    assert any("supplier contract" in i.text for i in notes.summary)


def test_no_transcript_gives_empty_notes() -> None:
    notes = extract_notes([])
    assert notes.summary == [] and notes.decisions == [] and notes.action_items == []
