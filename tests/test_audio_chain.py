"""The steps composed as the meeting flow will compose them, on a conversation with known turns."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mmflow.tasks.audio.align import assign_speakers
from mmflow.tasks.audio.denoise import denoise_audio
from mmflow.tasks.audio.diarise import diarise
from mmflow.tasks.audio.models import Diarisation, MeetingResult
from mmflow.tasks.audio.normalise import normalise_audio
from mmflow.tasks.audio.notes import extract_notes
from mmflow.tasks.audio.outputs import build_meeting_result, write_meeting_outputs
from mmflow.tasks.audio.transcribe import WhisperEngine, default_whisper, transcribe
from mmflow.tasks.audio.vad import chunk_speech, detect_speech, regions_to_diarise
from mmflow.tasks.audio.validate import validate_audio

os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (shutil.which("sox") and shutil.which("espeak-ng") and shutil.which("ffmpeg")),
        reason="needs ffmpeg, sox and espeak-ng",
    ),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

TURNS = [
    (["-v", "en-us+m3", "-p", "30"], "Good morning everyone, let us review the budget today."),
    (
        ["-v", "en-gb+f2", "-p", "80"],
        "Thanks. The marketing spend came in under plan this quarter.",
    ),
    (
        ["-v", "en-us+m3", "-p", "30"],
        "Great. We decided to move that money into customer research.",
    ),
    (["-v", "en-gb+f2", "-p", "80"], "Agreed. I will send the revised numbers tomorrow."),
]


@pytest.fixture(scope="session")
def whisper() -> WhisperEngine:
    pytest.importorskip("faster_whisper")
    return default_whisper()


@pytest.fixture(scope="module")
def meeting(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[float, float]]]:
    """Two seconds of silence, then two voices alternating, as MP3 (a lossy, real-world format)."""
    folder = tmp_path_factory.mktemp("chain")
    lead = folder / "lead.wav"
    subprocess.run(["sox", "-n", "-r", "16000", "-c", "1", str(lead), "trim", "0", "2"], check=True)
    gap = folder / "gap.wav"
    subprocess.run(
        ["sox", "-n", "-r", "16000", "-c", "1", str(gap), "trim", "0", "0.7"], check=True
    )
    parts, spans, cursor = [str(lead)], [], 2.0
    for i, (voice, text) in enumerate(TURNS):
        raw, clip = folder / f"raw{i}.wav", folder / f"clip{i}.wav"
        subprocess.run(["espeak-ng", *voice, "-w", str(raw), text], check=True)
        subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", str(clip)], check=True)
        seconds = float(subprocess.check_output(["soxi", "-D", str(clip)]))
        spans.append((cursor, cursor + seconds))
        cursor += seconds + 0.7
        parts += [str(clip), str(gap)]
    wav, mp3 = folder / "meeting.wav", folder / "meeting.mp3"
    subprocess.run(["sox", *parts, str(wav)], check=True)
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(wav), str(mp3)], check=True)
    return mp3, spans


@pytest.fixture(scope="module")
def run(
    meeting: tuple[Path, list[tuple[float, float]]], whisper: WhisperEngine
) -> tuple[MeetingResult, Diarisation]:
    source = validate_audio(meeting[0])
    audio, decision = denoise_audio(normalise_audio(source))
    regions = detect_speech(audio)
    transcript = transcribe(audio, chunk_speech(regions), whisper)
    diarisation = diarise(audio, regions_to_diarise(regions, transcript.words))
    segments = assign_speakers(transcript, diarisation)
    result = build_meeting_result(
        source,
        segments,
        diarisation,
        extract_notes(segments),
        language=transcript.language,
        processing={"denoise": decision.model_dump()},
    )
    return result, diarisation


@pytest.fixture(scope="module")
def result(run: tuple[MeetingResult, Diarisation]) -> MeetingResult:
    return run[0]


def test_each_turn_is_attributed_to_one_speaker_and_the_voices_alternate(
    result: MeetingResult, meeting: tuple[Path, list[tuple[float, float]]]
) -> None:
    _, spans = meeting
    owners = []
    for start, end in spans:
        inside = [w for s in result.segments for w in s.words if start - 0.3 <= w.start <= end]
        assert inside, f"no words in the turn at {start:.1f} s"
        speakers = {w.speaker for w in inside}
        assert len(speakers) == 1
        owners.append(speakers.pop())
    assert owners[0] == owners[2] != owners[1] == owners[3]
    assert len(result.speakers) == 2


def test_word_times_refer_to_the_original_file(result: MeetingResult) -> None:
    first = result.segments[0].words[0]
    assert 1.8 <= first.start <= 2.6  # after the two seconds of leading silence


def test_the_decision_and_the_action_item_are_noted(result: MeetingResult) -> None:
    assert any("decided" in d.text.lower() for d in result.notes.decisions)
    actions = result.notes.action_items
    assert actions and actions[0].owner == result.segments[-1].speaker
    assert actions[0].due == "tomorrow"


def test_all_three_files_are_written(
    run: tuple[MeetingResult, Diarisation], tmp_path: Path
) -> None:
    result, diarisation = run
    paths = write_meeting_outputs(result, diarisation, tmp_path, "meeting")
    data = json.loads(paths["json"].read_text())
    assert data["source"]["media_type"] == "audio/mpeg"
    assert len(paths["rttm"].read_text().splitlines()) == len(diarisation.turns)
    assert paths["srt"].read_text().count(" --> ") >= len(result.segments)
