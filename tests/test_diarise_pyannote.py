"""The pyannote.audio diarisation backend, end to end and offline.

The pipeline folder is one the test builds (tests/pyannote_checkpoint.py: untrained PyanNet and
WeSpeakerResNet34 checkpoints, a PLDA, config.yaml); loading and running it is pyannote's real
code through our backend. pyannote.audio lives in its own venv (`make .venv-pyannote`); in the
main venv the tests that need it skip, and `MMFLOW_REQUIRE_PYANNOTE=1` (`make test-pyannote`)
turns such a skip into a failure. The option checks and the missing-dependency message run in
both venvs.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import SecretStr, ValidationError
from typer.testing import CliRunner

from mmflow.tasks.audio.diarise import DiarisationBackend, DiarisationSettings, diarise
from mmflow.tasks.audio.diarise_pyannote import (
    PipelineSource,
    PipelineUnavailable,
    load_pipeline,
    pipeline_source,
    require_pyannote,
    speaker_bounds,
)
from mmflow.tasks.audio.models import Diarisation, NormalisedAudio, SpeechRegion
from mmflow.tasks.errors import MissingDependency
from mmflow.tasks.meeting import DIARISE, MeetingOptions
from tests.conversation import write_standup

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),  # numpy on untrained embeddings
]

TOKEN = "hf_mmflowTestTokenThatMustNeverBeWritten"


def _pyannote_missing() -> str | None:
    try:
        require_pyannote()
    except MissingDependency as missing:
        return str(missing)
    return None


@pytest.fixture(scope="module")
def pyannote() -> None:
    """Skip without pyannote.audio, unless MMFLOW_REQUIRE_PYANNOTE=1 says it must be there."""
    missing = _pyannote_missing()
    if missing is None:
        return
    if os.environ.get("MMFLOW_REQUIRE_PYANNOTE") == "1":
        pytest.fail(f"MMFLOW_REQUIRE_PYANNOTE=1 but {missing}", pytrace=False)
    pytest.skip(f"pyannote.audio is not installed here (make test-pyannote runs these): {missing}")


@pytest.fixture(scope="module")
def pipeline_dir(pyannote: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.pyannote_checkpoint import build_pipeline_folder

    return build_pipeline_folder(tmp_path_factory.mktemp("pyannote") / "tiny-pipeline")


@pytest.fixture
def config_only_dir(tmp_path: Path) -> Path:
    """A folder that passes the path checks; what is inside matters only to pyannote."""
    (tmp_path / "config.yaml").write_text("pipeline:\n  name: not.loaded.Here\n")
    return tmp_path


@pytest.fixture
def without_pyannote(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As in the main venv: `import pyannote.audio` fails (None in sys.modules blocks it)."""
    monkeypatch.setitem(sys.modules, "pyannote.audio", None)
    yield


def _speech(audio: NormalisedAudio) -> list[SpeechRegion]:
    from mmflow.tasks.audio.vad import detect_speech

    return detect_speech(audio)


def _inside(diarisation: Diarisation, regions: list[SpeechRegion]) -> bool:
    return all(
        any(r.start - 1e-3 <= t.start and t.end <= r.end + 1e-3 for r in regions)
        for t in diarisation.turns
    )


# ---------------------------------------------------------------- both venvs


def test_without_pyannote_the_backend_says_what_to_install(
    without_pyannote: None, config_only_dir: Path
) -> None:
    audio = NormalisedAudio(
        uri="x.wav", samples=np.zeros(16_000, np.float32), original_duration_s=1.0
    )
    settings = DiarisationSettings(
        backend=DiarisationBackend.PYANNOTE, pyannote_pipeline=str(config_only_dir)
    )
    with pytest.raises(MissingDependency) as missing:
        diarise(audio, [SpeechRegion(start=0.0, end=1.0)], settings)
    message = str(missing.value)
    assert "mmflow[pyannote]" in message
    assert "torch==2.9.1" in message and "torchaudio==2.9.1" in message
    assert "make .venv-pyannote" in message


def test_cli_without_pyannote_exits_2_naming_the_extra_before_reading_files(
    without_pyannote: None, config_only_dir: Path, tmp_path: Path
) -> None:
    from mmflow.cli.app import app

    done = CliRunner().invoke(
        app,
        [
            "run",
            "meeting",
            str(tmp_path / "absent.wav"),
            "--out",
            str(tmp_path / "out"),
            "--diarisation",
            "pyannote",
            "--pyannote-pipeline",
            str(config_only_dir),
        ],
    )
    assert done.exit_code == 2, done.output
    said = " ".join(done.output.split())
    assert "Missing dependency" in said and "'mmflow[pyannote]'" in said
    assert not (tmp_path / "out").exists()


def test_missing_pipeline_folder_is_an_invalid_option_with_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"no pyannote pipeline folder at .*config\.yaml"):
        MeetingOptions(diarisation="pyannote", pyannote_pipeline=str(tmp_path / "nowhere"))


def test_folder_without_config_yaml_is_an_invalid_option(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"holds no config\.yaml"):
        MeetingOptions(diarisation="pyannote", pyannote_pipeline=str(tmp_path))


def test_pyannote_backend_without_a_pipeline_is_an_invalid_option() -> None:
    with pytest.raises(ValidationError, match="--pyannote-pipeline"):
        MeetingOptions(diarisation="pyannote")


def test_cli_rejects_a_missing_pipeline_folder_with_exit_2(tmp_path: Path) -> None:
    from mmflow.cli.app import app

    done = CliRunner().invoke(
        app,
        [
            "run",
            "meeting",
            str(tmp_path / "a.wav"),
            "--diarisation",
            "pyannote",
            "--pyannote-pipeline",
            str(tmp_path / "nowhere"),
        ],
    )
    assert done.exit_code == 2
    said = " ".join(done.output.split())
    assert "Invalid options" in said and "no pyannote pipeline folder" in said


def test_hub_ids_are_read_as_hub_sources_with_their_revision() -> None:
    source = pipeline_source("pyannote/speaker-diarization-community-1@v1.0")
    assert source == PipelineSource(
        kind="hub", location="pyannote/speaker-diarization-community-1", revision="v1.0"
    )


def test_speaker_options_become_pyannote_keywords_exact_count_first() -> None:
    exact = MeetingOptions(num_speakers=3, min_speakers=1, max_speakers=8)
    ranged = MeetingOptions(min_speakers=2, max_speakers=4)
    assert speaker_bounds(exact.diarisation_settings()) == {"num_speakers": 3}
    assert speaker_bounds(ranged.diarisation_settings()) == {"min_speakers": 2, "max_speakers": 4}


def test_hf_token_is_never_dumped_nor_part_of_the_cache_key(config_only_dir: Path) -> None:
    with_token = MeetingOptions(
        diarisation="pyannote", pyannote_pipeline=str(config_only_dir), hf_token=TOKEN
    )
    without = MeetingOptions(diarisation="pyannote", pyannote_pipeline=str(config_only_dir))
    settings = with_token.diarisation_settings()
    assert settings.hf_token == SecretStr(TOKEN)  # it does reach the backend
    for text in (with_token.model_dump_json(), settings.model_dump_json(), repr(settings)):
        assert TOKEN not in text
    key = DIARISE.key(["up"], {"settings": settings})
    assert key == DIARISE.key(["up"], {"settings": without.diarisation_settings()})


def test_new_weights_in_the_same_folder_change_the_cache_key(config_only_dir: Path) -> None:
    options = MeetingOptions(diarisation="pyannote", pyannote_pipeline=str(config_only_dir))
    before = DIARISE.key(["up"], {"settings": options.diarisation_settings()})
    (config_only_dir / "segmentation").mkdir()
    (config_only_dir / "segmentation" / "pytorch_model.bin").write_bytes(b"new weights")
    assert DIARISE.key(["up"], {"settings": options.diarisation_settings()}) != before


# ---------------------------------------------------------------- pyannote venv


def test_offline_hub_id_without_a_local_copy_is_a_clear_error(
    pyannote: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = pipeline_source("pyannote/speaker-diarization-community-1")
    with pytest.raises(PipelineUnavailable, match="HF_HUB_OFFLINE is set") as unavailable:
        load_pipeline(source, token=TOKEN, cache_dir=str(tmp_path / "empty-hf-cache"))
    assert "--pyannote-pipeline" in str(unavailable.value)
    assert TOKEN not in str(unavailable.value)


def test_the_built_folder_loads_as_a_speaker_diarisation_pipeline(pipeline_dir: Path) -> None:
    from pyannote.audio.pipelines import SpeakerDiarization

    pipeline = load_pipeline(pipeline_source(str(pipeline_dir)))
    assert isinstance(pipeline, SpeakerDiarization)


@pytest.fixture(scope="module")
def sample_run(
    pipeline_dir: Path, shared_data: Path
) -> tuple[NormalisedAudio, list[SpeechRegion], Diarisation]:
    from mmflow.tasks.audio.normalise import normalise_audio
    from mmflow.tasks.audio.validate import validate_audio

    audio = normalise_audio(validate_audio(shared_data / "audio/pyannote-sample/sample.wav"))
    regions = _speech(audio)
    options = MeetingOptions(diarisation="pyannote", pyannote_pipeline=str(pipeline_dir))
    return audio, regions, diarise(audio, regions, options.diarisation_settings())


@pytest.mark.slow
def test_pyannote_sample_diarises_into_named_turns_inside_its_speech(
    sample_run: tuple[NormalisedAudio, list[SpeechRegion], Diarisation],
) -> None:
    audio, regions, diarisation = sample_run
    assert diarisation.backend == "pyannote"
    assert diarisation.turns, diarisation.detail
    assert all(audio.offset_s <= t.start < t.end <= audio.end_s + 1e-3 for t in diarisation.turns)
    assert _inside(diarisation, regions)
    assert diarisation.speakers == [f"SPEAKER_{i:02d}" for i in range(diarisation.num_speakers)]
    assert diarisation.detail["count_method"] == "pyannote"
    assert diarisation.detail["pipeline"] == "tiny-pipeline"


@pytest.mark.slow
def test_pyannote_turns_round_trip_through_a_pyannote_core_annotation(
    sample_run: tuple[NormalisedAudio, list[SpeechRegion], Diarisation],
) -> None:
    _, _, diarisation = sample_run
    annotation = diarisation.to_annotation("sample")
    again = Diarisation.from_annotation(annotation, backend="pyannote")
    assert [(t.start, t.end, t.speaker) for t in again.turns] == [
        (t.start, t.end, t.speaker) for t in diarisation.turns
    ]


# ---------------------------------------------------------------- the meeting CLI


@pytest.fixture(scope="module")
def conversation(pyannote: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One second of silence, then two espeak-ng voices taking turns, as a WAV file."""
    if not (shutil.which("sox") and shutil.which("espeak-ng")):
        pytest.fail("needs sox and espeak-ng (make system-deps)", pytrace=False)
    return write_standup(tmp_path_factory.mktemp("conversation"))


@pytest.fixture(scope="module")
def cli_run(
    prefect_server: str,
    conversation: Path,
    pipeline_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    root = tmp_path_factory.mktemp("cli")
    out, cache = root / "out", root / "cache"
    env = dict(os.environ, PREFECT_API_URL=prefect_server, MMFLOW_CACHE_DIR=str(cache))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mmflow.cli",
            "run",
            "meeting",
            str(conversation),
            "--out",
            str(out),
            "--diarisation",
            "pyannote",
            "--pyannote-pipeline",
            str(pipeline_dir),
            "--speakers",
            "2",
            "--hf-token",
            TOKEN,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    return done, out, cache


@pytest.mark.slow
def test_cli_with_the_pyannote_backend_writes_json_rttm_srt_and_manifest(
    cli_run: tuple[subprocess.CompletedProcess[str], Path, Path],
) -> None:
    done, out, _ = cli_run
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert [m["status"] for m in manifest] == ["ok"]
    assert all((out / f"standup.{kind}").is_file() for kind in ("json", "rttm", "srt"))
    result = json.loads((out / "standup.json").read_text())
    diarise_step = result["processing"]["diarise"]
    assert diarise_step["backend"] == "pyannote"
    assert diarise_step["detail"]["requested"] == {"num_speakers": 2}
    assert diarise_step["num_speakers"] == 2  # the exact count reached the pipeline
    engines = {s["name"]: s["engine"] for s in result["lineage"]["steps"]}
    assert engines["diarise"].startswith("pyannote pyannote.audio 4.")
    rttm = (out / "standup.rttm").read_text().splitlines()
    assert rttm and all(line.split()[0] == "SPEAKER" and len(line.split()) == 10 for line in rttm)
    assert {s["speaker"] for s in result["segments"]} <= {line.split()[7] for line in rttm}


@pytest.mark.slow
def test_the_hf_token_given_to_the_cli_is_in_no_output_cache_or_flow_run(
    cli_run: tuple[subprocess.CompletedProcess[str], Path, Path],
) -> None:
    from prefect import get_client

    done, out, cache = cli_run
    assert done.returncode == 0, done.stderr[-3000:]
    assert TOKEN not in done.stdout + done.stderr
    for path in [*out.rglob("*"), *cache.rglob("*")]:
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path

    async def parameters() -> list[dict[str, Any]]:
        async with get_client() as client:
            return [run.parameters for run in await client.read_flow_runs()]

    recorded = asyncio.run(parameters())
    assert any("options" in p for p in recorded)
    assert all(TOKEN not in json.dumps(p, default=str) for p in recorded)
