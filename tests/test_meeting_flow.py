"""The meeting flow on the real Prefect engine and server: steps, contracts, caching, bad input,
and the `mmflow run meeting` / `mmflow eval meeting` commands."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from mmflow.flows.meeting import meeting_flow
from mmflow.flows.runs import RunReport, RunSettings
from mmflow.tasks.audio.models import MeetingResult
from mmflow.tasks.meeting import MeetingOptions
from tests.conversation import write_standup

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (shutil.which("sox") and shutil.which("espeak-ng") and shutil.which("ffmpeg")),
        reason="needs ffmpeg, sox and espeak-ng",
    ),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]
pytest.importorskip("faster_whisper")

STEP_NAMES = {
    "validate",
    "normalise",
    "denoise",
    "vad",
    "transcribe",
    "diarise",
    "align",
    "notes",
}


@pytest.fixture(scope="module")
def conversation(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One second of silence, then two espeak-ng voices taking turns, as a WAV file."""
    return write_standup(tmp_path_factory.mktemp("conversation"))


def _flow_run(inputs: list[str], out: Path, cache_dir: Path) -> tuple[RunReport, Any]:
    state = meeting_flow(
        inputs=inputs, out=str(out), return_state=True, run=RunSettings(cache_dir=str(cache_dir))
    )
    return state.result(), state.state_details.flow_run_id


def _task_run_names(flow_run_id: object) -> list[str]:
    async def read() -> list[str]:
        async with get_client() as client:
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
            return [r.name for r in runs]

    return asyncio.run(read())


@pytest.fixture(scope="module")
def first_run(
    prefect_server: str, conversation: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[RunReport, Any, Path, Path]:
    root = tmp_path_factory.mktemp("meeting")
    report, flow_run_id = _flow_run([str(conversation)], root / "out", root / "cache")
    return report, flow_run_id, root / "out", root / "cache"


def test_one_recording_shows_every_step_as_a_task_run(
    first_run: tuple[RunReport, Any, Path, Path],
) -> None:
    report, flow_run_id, _, _ = first_run
    assert [r.status.value for r in report.inputs] == ["ok"]
    names = {name.split(" ")[0] for name in _task_run_names(flow_run_id)}
    assert names >= STEP_NAMES


def test_json_has_segments_with_speaker_words_and_times_speakers_and_notes(
    first_run: tuple[RunReport, Any, Path, Path],
) -> None:
    _, _, out, _ = first_run
    result = MeetingResult.model_validate_json((out / "standup.json").read_text())
    assert result.segments and result.language == "en"
    for segment in result.segments:
        assert segment.speaker and segment.text and segment.start < segment.end
        for word in segment.words:
            assert word.speaker == segment.speaker
            assert segment.start <= word.start <= word.end <= segment.end
    # Times refer to the original file: the first word follows the second of leading silence.
    assert result.segments[0].words[0].start >= 0.8
    assert len(result.speakers) == 2
    assert all(s.talk_time_s > 0 and s.words > 0 for s in result.speakers)
    assert result.notes.action_items and result.notes.action_items[0].due == "tomorrow"
    steps = result.lineage["steps"]
    assert {s["name"] for s in steps} == STEP_NAMES
    assert all(s["cache_key"] and s["version"] and not s["cached"] for s in steps)


def test_rttm_lists_each_speaker_turn_in_standard_fields(
    first_run: tuple[RunReport, Any, Path, Path],
) -> None:
    _, _, out, _ = first_run
    result = MeetingResult.model_validate_json((out / "standup.json").read_text())
    rows = [line.split() for line in (out / "standup.rttm").read_text().splitlines()]
    assert rows and all(len(row) == 10 and row[0] == "SPEAKER" for row in rows)
    assert {row[7] for row in rows} == {s.speaker for s in result.speakers}
    for row in rows:
        assert float(row[3]) >= 0.0 and float(row[4]) > 0.0
    talk = {s.speaker: s.talk_time_s for s in result.speakers}
    for speaker, seconds in talk.items():
        total = sum(float(r[4]) for r in rows if r[7] == speaker)
        assert total == pytest.approx(seconds, abs=0.01)


def test_srt_cues_are_numbered_timed_and_labelled(
    first_run: tuple[RunReport, Any, Path, Path],
) -> None:
    _, _, out, _ = first_run
    blocks = (out / "standup.srt").read_text().strip().split("\n\n")
    timing = re.compile(r"^\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}$")
    for number, block in enumerate(blocks, start=1):
        index, times, text = block.split("\n", 2)
        assert int(index) == number and timing.match(times)
        assert text.startswith("[SPEAKER_")


def test_a_second_run_recomputes_nothing(
    first_run: tuple[RunReport, Any, Path, Path], conversation: Path, tmp_path: Path
) -> None:
    first, _, out, cache = first_run
    second, _ = _flow_run([str(conversation)], tmp_path / "again", cache)
    lineage = json.loads((tmp_path / "again" / "standup.json").read_text())["lineage"]
    assert all(step["cached"] for step in lineage["steps"])
    assert (tmp_path / "again" / "standup.rttm").read_text() == (out / "standup.rttm").read_text()
    assert second.inputs[0].details == first.inputs[0].details


def test_a_new_speaker_count_recomputes_only_diarise_and_the_steps_after_it(
    first_run: tuple[RunReport, Any, Path, Path], conversation: Path, tmp_path: Path
) -> None:
    _, _, _, cache = first_run
    meeting_flow(
        inputs=[str(conversation)],
        out=str(tmp_path / "out"),
        options=MeetingOptions(num_speakers=3),
        run=RunSettings(cache_dir=str(cache)),
    )
    data = json.loads((tmp_path / "out" / "standup.json").read_text())
    cached = {step["name"]: step["cached"] for step in data["lineage"]["steps"]}
    recomputed = {"diarise", "align", "notes"}
    assert cached == {name: name not in recomputed for name in STEP_NAMES}
    # The waveform is not in the cache: diarise re-derived it from the file to find 3 voices.
    assert data["processing"]["diarise"]["num_speakers"] == 3


def test_bad_files_are_rejected_with_typed_codes_beside_good_audio(
    prefect_server: str, shared_data: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(shared_data / "audio" / "speech" / "jfk.flac", folder / "jfk.flac")
    sample = (shared_data / "audio" / "pyannote-sample" / "sample.wav").read_bytes()
    (folder / "cut.wav").write_bytes(sample[:3000])  # a WAV header promising far more data
    (folder / "empty.wav").write_bytes(b"")
    (folder / "readme.wav").write_text("these are meeting notes, not a recording\n")
    report = meeting_flow(
        inputs=[str(folder)],
        out=str(tmp_path / "out"),
        run=RunSettings(cache_dir=str(tmp_path / "cache"), stepwise_max=0),
    )
    lines = [json.loads(x) for x in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    by_name = {Path(line["uri"]).name: line for line in lines}
    assert len(lines) == 4 == len(report.inputs)
    assert by_name["jfk.flac"]["status"] == "ok"
    expected = {"cut.wav": "corrupt", "empty.wav": "empty", "readme.wav": "unsupported_format"}
    for name, code in expected.items():
        assert by_name[name]["status"] == "rejected" and by_name[name]["error"]["code"] == code
        assert by_name[name]["error"]["message"]
    assert (tmp_path / "out" / "jfk.json").is_file()


@pytest.fixture(scope="module")
def cli_run(
    prefect_server: str, shared_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[subprocess.CompletedProcess[str], Path]:
    root = tmp_path_factory.mktemp("cli")
    out = root / "out"
    env = dict(os.environ, PREFECT_API_URL=prefect_server, MMFLOW_CACHE_DIR=str(root / "c"))
    inputs = [
        shared_data / "audio" / "pyannote-sample" / "sample.wav",
        shared_data / "audio" / "speech" / "jfk.flac",
    ]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mmflow.cli",
            "run",
            "meeting",
            *map(str, inputs),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    return done, out


def test_cli_exits_zero_writes_the_contracts_and_prints_the_table(
    cli_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    done, out = cli_run
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sample.wav" in done.stdout and "jfk.flac" in done.stdout
    assert "2 ok, 0 rejected, 0 failed" in done.stdout
    manifest = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert [m["status"] for m in manifest] == ["ok", "ok"]
    for stem in ("sample", "jfk"):
        assert all((out / f"{stem}.{kind}").is_file() for kind in ("json", "rttm", "srt"))


def test_eval_meeting_prints_der_and_wer_against_the_references(
    cli_run: tuple[subprocess.CompletedProcess[str], Path], shared_data: Path
) -> None:
    _, out = cli_run
    audio = shared_data / "audio"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mmflow.cli",
            "eval",
            "meeting",
            str(out),
            "--reference-rttm-dir",
            str(audio / "pyannote-sample"),
            "--transcripts",
            str(audio / "speech" / "transcripts.json"),
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, COLUMNS="200"),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    row = next(line for line in done.stdout.splitlines() if "sample" in line)
    full, forgiving = (float(x) for x in re.findall(r"([\d.]+)%", row)[:2])
    assert forgiving <= full <= 40.0
    assert "jfk.flac" in done.stdout and "corpus WER" in done.stdout


def test_fsspec_input_and_output_urls_work_like_local_paths(
    prefect_server: str, shared_data: Path
) -> None:
    import fsspec

    memory = fsspec.filesystem("memory")
    memory.pipe(
        "/meeting-in/jfk.flac", (shared_data / "audio" / "speech" / "jfk.flac").read_bytes()
    )
    report = meeting_flow(
        inputs=["memory://meeting-in/jfk.flac"],
        out="memory://meeting-out",
        run=RunSettings(cache=False),
    )
    assert [r.status.value for r in report.inputs] == ["ok"]
    written = {Path(p).name for p in memory.ls("/meeting-out", detail=False)}
    assert written == {"jfk.json", "jfk.rttm", "jfk.srt", "manifest.jsonl"}
    result = MeetingResult.model_validate_json(memory.cat("/meeting-out/jfk.json"))
    assert result.source.uri == "memory://meeting-in/jfk.flac"
    assert "ask not what your country" in " ".join(s.text for s in result.segments)


def test_a_meeting_batch_over_a_folder_ends_every_recording_once(
    prefect_server: str, conversation: Path, tmp_path: Path
) -> None:
    from mmflow.flows.batch import batch_flow

    inbox = tmp_path / "calls"
    inbox.mkdir()
    shutil.copy(conversation, inbox / "standup.wav")
    shutil.copy(conversation, inbox / "standup-copy.wav")
    (inbox / "voicemail.mp3").write_bytes(b"ID3 not really audio")
    out = tmp_path / "out"
    report = batch_flow(
        source=str(inbox),
        out=str(out),
        scenario="meeting",
        run=RunSettings(cache_dir=str(tmp_path / "cache")),
    )
    lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    codes = {Path(x["uri"]).name: (x["error"] or {}).get("code") for x in lines}
    assert codes == {
        "standup.wav": "duplicate",
        "standup-copy.wav": None,
        "voicemail.mp3": "corrupt",
    }
    assert (out / "standup-copy.rttm").read_text().strip()
    assert report.processed == 2
