"""RTTM, SRT and the per-input JSON of the meeting scenario."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mmflow.tasks.audio.evaluate import load_rttm
from mmflow.tasks.audio.models import (
    Diarisation,
    MeetingNotes,
    Segment,
    SpeakerTurn,
    ValidatedAudio,
    WordTiming,
)
from mmflow.tasks.audio.outputs import (
    OutputFormat,
    build_meeting_result,
    parse_formats,
    rttm_lines,
    srt_text,
    srt_timestamp,
    vtt_text,
    write_meeting_outputs,
)

DIARISATION = Diarisation(
    turns=[
        SpeakerTurn(start=0.5, end=2.25, speaker="SPEAKER_00"),
        SpeakerTurn(start=2.5, end=3661.5, speaker="SPEAKER_01"),
    ],
    backend="test",
    num_speakers=2,
)


def _segment(speaker: str, words: list[tuple[str, float, float]]) -> Segment:
    timed = [WordTiming(text=w, start=a, end=b, speaker=speaker) for w, a, b in words]
    return Segment(
        start=timed[0].start,
        end=timed[-1].end,
        text=" ".join(w for w, _, _ in words),
        speaker=speaker,
        words=timed,
    )


SEGMENTS = [
    _segment("SPEAKER_00", [("Hello", 0.5, 0.9), ("there.", 1.0, 1.4)]),
    _segment("SPEAKER_01", [("Hi.", 2.6, 3.0)]),
]


def test_rttm_lines_have_the_ten_standard_fields() -> None:
    lines = rttm_lines(DIARISATION, "team meeting")
    assert lines[0] == "SPEAKER team_meeting 1 0.500 1.750 <NA> <NA> SPEAKER_00 <NA> <NA>"
    assert all(len(line.split()) == 10 for line in lines)


def test_rttm_round_trips_through_the_reader(tmp_path: Path) -> None:
    path = tmp_path / "m.rttm"
    path.write_text("\n".join(rttm_lines(DIARISATION, "m")) + "\n")
    annotation = load_rttm(path)["m"]
    assert annotation == DIARISATION.to_annotation("m")


def test_srt_timestamps_use_hours_minutes_seconds_and_milliseconds() -> None:
    assert srt_timestamp(3661.5) == "01:01:01,500"
    assert srt_timestamp(0.0) == "00:00:00,000"


def test_srt_cues_are_numbered_timed_and_labelled() -> None:
    text = srt_text(SEGMENTS)
    blocks = text.strip().split("\n\n")
    assert blocks[0] == "1\n00:00:00,500 --> 00:00:01,400\n[SPEAKER_00] Hello there."
    assert blocks[1] == "2\n00:00:02,600 --> 00:00:03,000\n[SPEAKER_01] Hi."


def test_long_segments_are_split_into_short_cues() -> None:
    words = [(f"word{i}", i * 0.5, i * 0.5 + 0.4) for i in range(40)]
    blocks = srt_text([_segment("SPEAKER_00", words)]).strip().split("\n\n")
    assert len(blocks) > 2
    for block in blocks:
        timing = block.split("\n")[1]
        start, end = (
            sum(float(x) * f for x, f in zip(re.split("[:,]", t)[:3], (3600, 60, 1), strict=True))
            for t in timing.split(" --> ")
        )
        assert end - start <= 7.5


def test_json_has_the_contract_shape(tmp_path: Path) -> None:
    source = ValidatedAudio(
        uri="m.wav",
        sha256="0" * 64,
        size=10,
        media_type="audio/wav",
        container="wav",
        codec="pcm_s16le",
        duration_s=4.0,
        sample_rate=16000,
        channels=1,
    )
    result = build_meeting_result(
        source, SEGMENTS, DIARISATION, MeetingNotes(engine="test"), language="en"
    )
    paths = write_meeting_outputs(result, DIARISATION, tmp_path, "m")
    data = json.loads(paths["json"].read_text())
    assert set(data) >= {"segments", "speakers", "notes"}
    segment = data["segments"][0]
    assert set(segment) >= {"start", "end", "speaker", "text", "words"}
    assert set(segment["words"][0]) >= {"text", "start", "end", "speaker"}
    talk = {s["speaker"]: s["talk_time_s"] for s in data["speakers"]}
    assert talk == {"SPEAKER_00": 1.75, "SPEAKER_01": 3659.0}
    assert paths["rttm"].read_text().count("\n") == 2
    assert paths["srt"].read_text().startswith("1\n")


def _sentence_words(text: str, start: float = 0.0, step: float = 0.3) -> list[WordTiming]:
    return [
        WordTiming(text=w, start=start + i * step, end=start + i * step + 0.25, speaker="S")
        for i, w in enumerate(text.split())
    ]


LONG = (
    "We looked at the numbers for the third quarter yesterday. The marketing spend came in "
    "under plan, so there is room left, and we should decide today what to do with it."
)


def test_subtitle_cues_have_at_most_two_lines_of_42_characters() -> None:
    words = _sentence_words(LONG)
    segment = Segment(start=0.0, end=words[-1].end, text=LONG, speaker="SPEAKER_00", words=words)
    for text in (srt_text([segment]), vtt_text([segment])):
        for block in text.strip().split("\n\n"):
            lines = [x for x in block.split("\n") if "-->" not in x and not x.isdigit()]
            lines = [x for x in lines if x != "WEBVTT"]
            if not lines:
                continue
            assert 1 <= len(lines) <= 2
            assert all(len(re.sub(r"^<v [^>]+>", "", line)) <= 42 for line in lines)


def test_cues_end_at_sentence_boundaries_when_one_is_near() -> None:
    words = _sentence_words(LONG)
    segment = Segment(start=0.0, end=words[-1].end, text=LONG, speaker="SPEAKER_00", words=words)
    blocks = srt_text([segment]).strip().split("\n\n")
    first_text = " ".join(blocks[0].split("\n")[2:])
    assert first_text.endswith("yesterday.")


def test_vtt_names_the_speaker_as_a_voice() -> None:
    text = vtt_text(SEGMENTS)
    assert text.startswith("WEBVTT\n")
    assert "00:00:00.500 --> 00:00:01.400\n<v SPEAKER_00>Hello there." in text


def test_formats_are_parsed_in_order_and_unknown_ones_refused() -> None:
    assert parse_formats("json, vtt,txt,json") == (
        OutputFormat.JSON,
        OutputFormat.VTT,
        OutputFormat.TXT,
    )
    with pytest.raises(ValueError, match="docx"):
        parse_formats("json,docx")


def test_only_the_formats_asked_for_are_written(tmp_path: Path) -> None:
    source = ValidatedAudio(
        uri="m.wav",
        sha256="0" * 64,
        size=10,
        media_type="audio/wav",
        container="wav",
        codec="pcm_s16le",
        duration_s=4.0,
        sample_rate=16000,
        channels=1,
    )
    result = build_meeting_result(source, SEGMENTS, DIARISATION, MeetingNotes(engine="t"))
    paths = write_meeting_outputs(
        result, DIARISATION, tmp_path, "m", (OutputFormat.TXT, OutputFormat.VTT)
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.txt", "m.vtt"]
    assert paths["txt"].read_text() == "[00:00] SPEAKER_00: Hello there.\n[00:02] SPEAKER_01: Hi.\n"
