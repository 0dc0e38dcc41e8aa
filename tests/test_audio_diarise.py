"""Diarisation checked against exact ground truth: conversations the test builds with espeak-ng."""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from mmflow.tasks.audio.diarise import DiarisationBackend, DiarisationSettings, diarise
from mmflow.tasks.audio.evaluate import diarisation_error_rate, load_rttm
from mmflow.tasks.audio.models import Diarisation, NormalisedAudio, SpeakerTurn
from mmflow.tasks.audio.normalise import normalise_audio
from mmflow.tasks.audio.vad import detect_speech

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "audio"

pytestmark = [
    pytest.mark.skipif(
        not (shutil.which("sox") and shutil.which("espeak-ng")), reason="needs sox and espeak-ng"
    ),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

VOICES = {
    "low": ["-v", "en-us+m3", "-p", "30", "-s", "150"],
    "high": ["-v", "en-gb+f2", "-p", "80", "-s", "170"],
    "mid": ["-v", "en-us+m7", "-p", "55", "-s", "135"],
}
LINES = [
    "Good morning everyone, let us start with the budget review for the third quarter.",
    "Thanks. The marketing spend came in under plan, so we have some room left over.",
    "I think we should move that money into the customer research project next month.",
    "Agreed. I will send the revised numbers to finance by Friday afternoon.",
    "Perfect, that settles it. Is there anything else before we close the meeting?",
    "Yes, the office move. The new lease starts in March and we need movers booked.",
]
GAP_S = 0.5


def _silent_ends(clip: Path, floor_db: float = -45.0) -> tuple[float, float]:
    """Seconds of silence (below `floor_db` of full scale) at the start and end of a WAV."""
    with wave.open(str(clip)) as handle:
        samples = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")
    loud = np.flatnonzero(np.abs(samples) > 32768 * 10 ** (floor_db / 20))
    if loud.size == 0:
        return 0.0, 0.0
    return loud[0] / 16_000, (len(samples) - 1 - loud[-1]) / 16_000


def conversation(tmp_path: Path, voices: list[str]) -> tuple[Path, Diarisation]:
    """Voices take turns saying LINES; returns the file and its exact turns."""
    parts: list[str] = []
    turns: list[SpeakerTurn] = []
    cursor = 0.0
    gap = tmp_path / "gap.wav"
    subprocess.run(
        ["sox", "-n", "-r", "16000", "-c", "1", str(gap), "trim", "0", str(GAP_S)], check=True
    )
    for i, (voice, line) in enumerate(zip(voices, LINES, strict=False)):
        raw, clip = tmp_path / f"raw{i}.wav", tmp_path / f"clip{i}.wav"
        subprocess.run(["espeak-ng", *VOICES[voice], "-w", str(raw), line], check=True)
        subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", str(clip)], check=True)
        seconds = float(subprocess.check_output(["soxi", "-D", str(clip)]))
        # espeak-ng pads its output with silence: the true turn is the speech inside the clip.
        lead, tail = _silent_ends(clip)
        turns.append(SpeakerTurn(start=cursor + lead, end=cursor + seconds - tail, speaker=voice))
        cursor += seconds + GAP_S
        parts += [str(clip), str(gap)]
    path = tmp_path / "conversation.wav"
    subprocess.run(["sox", *parts[:-1], str(path)], check=True)
    truth = Diarisation(turns=turns, backend="truth", num_speakers=len(set(voices)))
    return path, truth


def _run(path: Path, settings: DiarisationSettings | None = None) -> Diarisation:
    audio = normalise_audio(path)
    return diarise(audio, detect_speech(audio), settings)


@pytest.mark.slow
def test_two_voices_are_found_automatically_with_small_error(tmp_path: Path) -> None:
    path, truth = conversation(tmp_path, ["low", "high", "low", "high", "low"])
    result = _run(path)
    assert result.num_speakers == 2
    score = diarisation_error_rate(truth.to_annotation(), result.to_annotation())
    assert score.full < 0.10


@pytest.mark.slow
def test_three_voices_are_found_automatically_with_small_error(tmp_path: Path) -> None:
    path, truth = conversation(tmp_path, ["low", "high", "mid", "low", "high", "mid"])
    result = _run(path)
    assert result.num_speakers == 3
    score = diarisation_error_rate(truth.to_annotation(), result.to_annotation())
    assert score.full < 0.10


@pytest.mark.slow
def test_an_exact_speaker_count_is_obeyed(tmp_path: Path) -> None:
    path, _ = conversation(tmp_path, ["low", "high", "mid", "low", "high", "mid"])
    assert _run(path, DiarisationSettings(num_speakers=3)).num_speakers == 3
    assert _run(path, DiarisationSettings(num_speakers=2)).num_speakers == 2


@pytest.mark.slow
def test_max_speakers_caps_the_automatic_count(tmp_path: Path) -> None:
    path, _ = conversation(tmp_path, ["low", "high", "mid", "low", "high", "mid"])
    assert _run(path, DiarisationSettings(max_speakers=2)).num_speakers == 2
    assert _run(path, DiarisationSettings(max_speakers=1)).num_speakers == 1


@pytest.mark.slow
def test_one_voice_is_one_speaker(tmp_path: Path) -> None:
    path, _ = conversation(tmp_path, ["low", "low", "low", "low"])
    assert _run(path).num_speakers == 1


def test_no_speech_regions_give_no_speakers() -> None:
    audio = NormalisedAudio(
        uri="silence", samples=np.zeros(16_000, dtype=np.float32), original_duration_s=1.0
    )
    result = diarise(audio, [])
    assert result.turns == [] and result.num_speakers == 0


@pytest.mark.slow
def test_speaker_per_channel_stereo_is_diarised_by_channel(tmp_path: Path) -> None:
    path, truth = conversation(tmp_path, ["low", "high", "low"])
    mono = normalise_audio(path, trim=False).samples
    rate = 16_000
    left, right = np.zeros_like(mono), np.zeros_like(mono)
    for turn in truth.turns:
        a, b = int(turn.start * rate), int(turn.end * rate)
        (left if turn.speaker == "low" else right)[a:b] = mono[a:b]
    stereo = tmp_path / "stereo.raw"
    np.stack([left, right], axis=1).astype("<f4").tofile(stereo)
    wav = tmp_path / "stereo.wav"
    subprocess.run(
        ["sox", "-t", "f32", "-r", "16000", "-c", "2", str(stereo), str(wav)], check=True
    )
    result = _run(wav)
    assert result.backend == DiarisationBackend.CHANNELS.value
    assert result.num_speakers == 2
    score = diarisation_error_rate(truth.to_annotation(), result.to_annotation())
    assert score.full < 0.10


@pytest.mark.slow
def test_pyannote_sample_meets_the_der_targets_with_automatic_count() -> None:
    wav = DATA / "pyannote-sample" / "sample.wav"
    if not wav.is_file():
        pytest.skip("../shared/data is not present")
    reference = load_rttm(DATA / "pyannote-sample" / "sample.rttm")["sample"]
    result = _run(wav)
    score = diarisation_error_rate(reference, result.to_annotation("sample"))
    assert result.backend == DiarisationBackend.SEGMENTATION.value
    assert result.num_speakers == 2
    assert score.forgiving <= 0.05
    assert score.full <= 0.15


@pytest.mark.slow
def test_clustering_a_sample_of_windows_finds_the_same_voices(tmp_path: Path) -> None:
    """The embeddings backend on long recordings clusters every n-th window and places the
    rest: the voices it finds match those of clustering them all."""
    path, _ = conversation(tmp_path, ["low", "high", "mid", "low", "high", "mid"])
    every = _run(path, DiarisationSettings(backend=DiarisationBackend.EMBEDDINGS))
    settings = DiarisationSettings(backend=DiarisationBackend.EMBEDDINGS, max_cluster_windows=15)
    result = _run(path, settings)
    assert result.detail["clustered_every"] >= 2
    assert result.num_speakers == every.num_speakers == 3
    score = diarisation_error_rate(every.to_annotation(), result.to_annotation())
    assert score.full < 0.10
