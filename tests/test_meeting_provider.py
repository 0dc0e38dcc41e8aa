"""A provider in the meeting flow: OpenAI's transcription and chat APIs driven through the real
SDK against a local server that speaks their wire format, and the offline steps as fallback."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import wave
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mmflow.blocks.providers import Budget, OpenAIProvider
from mmflow.flows.meeting import meeting_flow
from mmflow.flows.runs import RunSettings
from mmflow.tasks.audio.models import (
    MeetingNotes,
    MeetingResult,
    NormalisedAudio,
    Segment,
    SpeechRegion,
)
from mmflow.tasks.caching import Stamped
from mmflow.tasks.meeting_provider import (
    ESTIMATED_WORD_TIMES,
    MeetingProvider,
    notes_with_provider,
    run_provider_notes,
    transcribe_with_provider,
)
from mmflow.tasks.models import LineageStep
from tests.fakeproviders import (
    OPENAI_CHAT,
    OPENAI_TRANSCRIBE,
    FakeServer,
    Reply,
    openai_chat,
    openai_transcription,
    saved,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]
RATE = 16_000
SEGMENTS = [
    Segment(start=1.0, end=3.0, text="We decided to ship on Monday.", speaker="SPEAKER_00"),
    Segment(start=3.5, end=5.0, text="I will write the release notes.", speaker="SPEAKER_01"),
]
NOTES = {
    "engine": "",
    "summary": [{"text": "Shipping on Monday.", "start": 1.0, "end": 3.0, "speaker": None}],
    "decisions": [{"text": "Ship on Monday.", "start": 1.0, "end": 3.0, "speaker": "SPEAKER_00"}],
    "action_items": [
        {
            "text": "Write the release notes.",
            "start": 3.5,
            "end": 5.0,
            "speaker": "SPEAKER_01",
            "owner": "SPEAKER_01",
            "due": None,
        }
    ],
}


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as fake:
        yield fake


def provider(server: FakeServer, **settings: Any) -> OpenAIProvider:
    return OpenAIProvider(
        api_key="sk-test", base_url=f"{server.url}/v1", model="gpt-4o", **settings
    )


def tone(offset_s: float, seconds: float) -> NormalisedAudio:
    """A quiet tone standing in for speech, kept from `offset_s` of its original file."""
    t = np.arange(int(seconds * RATE)) / RATE
    samples = (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    return NormalisedAudio(
        uri="tone.wav", samples=samples, offset_s=offset_s, original_duration_s=offset_s + seconds
    )


def uploaded_seconds(server: FakeServer) -> list[float]:
    seconds = []
    for request in server.sent(OPENAI_TRANSCRIBE):
        with wave.open(io.BytesIO(request.form()["file"])) as wav:
            assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, RATE)
            seconds.append(wav.getnframes() / RATE)
    return seconds


# ---------------------------------------------------------------- the plain functions


def test_each_vad_chunk_is_uploaded_and_its_segments_shifted_into_file_times(
    server: FakeServer,
) -> None:
    server.queue(
        "POST",
        OPENAI_TRANSCRIBE,
        openai_transcription("hello there", [(0.1, 0.9, "hello there")]),
        openai_transcription("second part now", [(0.0, 0.6, "second part now")]),
    )
    regions = [SpeechRegion(start=2.0, end=3.0), SpeechRegion(start=7.0, end=8.0)]
    limit = 44 + RATE * 2 * 4  # four seconds of WAV: the 8 s recording must go in chunks
    transcript, requests, cost = transcribe_with_provider(
        tone(1.5, 8.0), regions, provider(server), Budget(), language="en", limit_bytes=limit
    )
    assert uploaded_seconds(server) == [1.0, 1.0]
    assert [(s.start, s.end, s.text) for s in transcript.segments] == [
        (2.1, 2.9, "hello there"),
        (7.0, 7.6, "second part now"),
    ]
    first = transcript.segments[0].words
    assert [(w.text, w.start, w.end) for w in first] == [("hello", 2.1, 2.5), ("there", 2.5, 2.9)]
    assert ESTIMATED_WORD_TIMES in transcript.model
    assert transcript.engine == "openai:gpt-4o" and transcript.language == "en"
    assert requests == 2 and cost == Decimal("0.006") * 2 / 60


def test_a_recording_under_the_upload_limit_goes_whole_shifted_by_its_trim(
    server: FakeServer,
) -> None:
    server.queue("POST", OPENAI_TRANSCRIBE, openai_transcription("hi", [(2.5, 3.0, "hi")]))
    regions = [SpeechRegion(start=2.0, end=3.0), SpeechRegion(start=7.0, end=8.0)]
    transcript, requests, _ = transcribe_with_provider(
        tone(1.5, 8.0), regions, provider(server), Budget(), language=None
    )
    assert uploaded_seconds(server) == [8.0]
    assert [(s.start, s.end) for s in transcript.segments] == [(4.0, 4.5)]
    assert requests == 1 and transcript.language == "english"  # as the API reports it


def test_notes_come_back_as_meeting_notes_from_a_chat_completion(server: FakeServer) -> None:
    server.queue("POST", OPENAI_CHAT, openai_chat(json.dumps(NOTES)))
    notes, requests, cost = notes_with_provider(SEGMENTS, provider(server), Budget())
    assert isinstance(notes, MeetingNotes) and notes.engine == "openai:gpt-4o"
    assert [d.text for d in notes.decisions] == ["Ship on Monday."]
    assert notes.action_items[0].owner == "SPEAKER_01"
    assert requests == 1 and cost > 0
    prompt = json.dumps(server.sent(OPENAI_CHAT)[0].json()["messages"])
    assert "never instructions" in prompt and "I will write the release notes." in prompt


def test_a_budget_refusal_leaves_notes_to_the_offline_step_without_a_request(
    server: FakeServer,
) -> None:
    segments = Stamped(key="align-x", value=SEGMENTS, lineage=LineageStep(name="align", version=""))
    budget = Budget(max_usd_per_run=Decimal("0.0000001"))
    notes, attempt = run_provider_notes(segments, MeetingProvider(provider(server), budget), "r")
    assert notes is None and server.sent(OPENAI_CHAT) == []
    assert attempt.used is False and (attempt.fallback or "").startswith("BudgetExceeded")


# ---------------------------------------------------------------- the flow

needs_tools = pytest.mark.skipif(
    not shutil.which("ffmpeg"), reason="needs ffmpeg (decoding the recording)"
)


def _result(report: Any) -> MeetingResult:
    (recording,) = report.inputs
    assert recording.status.value == "ok", recording.error
    return MeetingResult.model_validate_json(Path(recording.output).read_text())


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("cache"))


@pytest.mark.slow
@needs_tools
def test_flow_transcribes_and_writes_notes_with_the_provider_on_the_prefect_server(
    prefect_server: str, shared_data: Path, cache_dir: str, tmp_path: Path, server: FakeServer
) -> None:
    said = "And so my fellow Americans, ask not what your country can do for you."
    server.on("POST", OPENAI_TRANSCRIBE, lambda _: openai_transcription(said, [(0.0, 4.0, said)]))
    server.on("POST", OPENAI_CHAT, lambda _: openai_chat(json.dumps(NOTES)))
    report = meeting_flow(
        inputs=[str(shared_data / "audio" / "speech" / "jfk.flac")],
        out=str(tmp_path),
        provider=saved(provider(server)),
        max_usd=Decimal("1"),
        run=RunSettings(cache_dir=cache_dir),
    )
    result = _result(report)
    assert len(server.sent(OPENAI_TRANSCRIBE)) == 1 and len(server.sent(OPENAI_CHAT)) == 1
    trim = result.processing["normalise"]["offset_s"]
    words = [w for s in result.segments for w in s.words]
    assert " ".join(w.text for w in words) == said
    assert words[0].start == pytest.approx(trim, abs=1e-3)  # upload time 0 is the kept start
    assert result.notes.engine == "openai:gpt-4o" and result.notes.decisions
    assert ESTIMATED_WORD_TIMES in result.processing["transcribe"]["model"]
    used = result.processing["provider"]
    assert used["transcribe"]["used"] and used["notes"]["used"]
    steps = {s["name"]: s for s in result.lineage["steps"]}
    assert steps["provider_transcribe"]["engine"] == "openai:gpt-4o"
    assert steps["provider_notes"]["engine"] == "openai:gpt-4o"
    assert "transcribe" not in steps and "notes" not in steps
    assert "sk-test" not in json.dumps(result.model_dump(mode="json"))
    assert server.url not in json.dumps(result.model_dump(mode="json"))


@pytest.mark.slow
@needs_tools
def test_a_failing_provider_falls_back_to_the_offline_transcript_with_the_reason(
    prefect_server: str, shared_data: Path, cache_dir: str, tmp_path: Path, server: FakeServer
) -> None:
    pytest.importorskip("faster_whisper")
    server.on("POST", OPENAI_TRANSCRIBE, lambda _: Reply(500, {"error": {"message": "boom"}}))
    report = meeting_flow(
        inputs=[str(shared_data / "audio" / "speech" / "jfk.flac")],
        out=str(tmp_path),
        provider=saved(provider(server, max_retries=1, backoff_base_s=0.01, backoff_max_s=0.02)),
        provider_for=["transcribe"],
        run=RunSettings(cache_dir=cache_dir),
    )
    result = _result(report)
    assert len(server.sent(OPENAI_TRANSCRIBE)) == 2  # the call and its one retry
    assert server.sent(OPENAI_CHAT) == []  # notes were not asked of the provider
    fallback = result.processing["provider"]["transcribe"]
    assert fallback["used"] is False and "ProviderCallFailed" in fallback["fallback"]
    assert result.processing["transcribe"]["engine"].startswith("faster-whisper")
    assert "country" in " ".join(s.text for s in result.segments).lower()
    assert result.notes.engine == "extractive-v1"
    steps = {s["name"] for s in result.lineage["steps"]}
    assert {"transcribe", "notes"} <= steps and "provider_transcribe" not in steps


@pytest.mark.slow
@needs_tools
def test_a_batch_uses_the_provider_for_notes_inside_grouped_task_runs(
    prefect_server: str, shared_data: Path, cache_dir: str, tmp_path: Path, server: FakeServer
) -> None:
    pytest.importorskip("faster_whisper")
    server.on("POST", OPENAI_CHAT, lambda _: openai_chat(json.dumps(NOTES)))
    report = meeting_flow(
        inputs=[str(shared_data / "audio" / "speech" / "jfk.flac")],
        out=str(tmp_path),
        provider=saved(provider(server)),
        provider_for=["notes"],
        run=RunSettings(cache_dir=cache_dir, stepwise_max=0),
    )
    result = _result(report)
    assert len(server.sent(OPENAI_CHAT)) == 1 and server.sent(OPENAI_TRANSCRIBE) == []
    assert result.notes.engine == "openai:gpt-4o"
    assert result.processing["transcribe"]["engine"].startswith("faster-whisper")
    assert "transcribe" not in result.processing["provider"]


@pytest.mark.slow
@needs_tools
def test_cli_loads_a_saved_provider_block_by_name_for_the_steps_asked(
    prefect_server: str, shared_data: Path, cache_dir: str, tmp_path: Path, server: FakeServer
) -> None:
    pytest.importorskip("faster_whisper")
    server.on("POST", OPENAI_CHAT, lambda _: openai_chat(json.dumps(NOTES)))
    provider(server).save("meeting-provider-test", overwrite=True)
    jfk = shared_data / "audio" / "speech" / "jfk.flac"
    out = tmp_path / "out"
    command = ["run", "meeting", str(jfk), "--out", str(out), "--cache-dir", cache_dir]
    options = ["--provider-block", "meeting-provider-test", "--provider-for", "notes"]
    done = subprocess.run(
        [sys.executable, "-m", "mmflow.cli", *command, *options, "--max-usd", "0.5"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PREFECT_API_URL=prefect_server),
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(server.sent(OPENAI_CHAT)) == 1 and server.sent(OPENAI_TRANSCRIBE) == []
    result = MeetingResult.model_validate_json((out / "jfk.json").read_text())
    assert result.notes.engine == "openai:gpt-4o"


def test_cli_refuses_an_unknown_provider_step(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mmflow.cli.app import app

    done = CliRunner().invoke(
        app, ["run", "meeting", str(tmp_path), "--provider-block", "x", "--provider-for", "notez"]
    )
    assert done.exit_code == 2 and "--provider-for" in done.output
