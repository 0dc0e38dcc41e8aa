"""Named speakers from reference clips: synthetic espeak-ng voices and real voices cut from the
public recordings (a profile from one part, tested on another)."""

from __future__ import annotations

import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from mmflow.tasks.audio.diarise import DiarisationSettings, diarise
from mmflow.tasks.audio.evaluate import load_rttm
from mmflow.tasks.audio.normalise import decode_audio, normalise_audio
from mmflow.tasks.audio.profiles import load_profiles
from mmflow.tasks.audio.vad import detect_speech

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMFLOW_MODEL_CACHE", str(tmp_path / "models"))


def _write_wav(path: Path, samples: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16_000)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def _solo_speech(recording: Path, rttm: Path, uri: str, speaker: str) -> np.ndarray:
    """The stretches where `speaker` talks alone, per the reference, joined."""
    reference = load_rttm(rttm)[uri]
    others = reference.subset([s for s in reference.labels() if s != speaker]).get_timeline()
    alone = reference.label_timeline(speaker).support().extrude(others.support())
    samples = decode_audio(recording)[0]
    return np.concatenate(
        [samples[int(s.start * 16_000) : int(s.end * 16_000)] for s in alone if s.duration > 0.3]
    )


def _espeak(path: Path, voice: list[str], text: str) -> Path:
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", *voice, "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", str(path)], check=True)
    return path


def _names(path: Path, profiles_dir: Path) -> tuple[dict[str, float], list[dict[str, object]]]:
    audio = normalise_audio(path)
    settings = DiarisationSettings(speaker_profiles=load_profiles(profiles_dir))
    result = diarise(audio, detect_speech(audio), settings)
    talk: dict[str, float] = {}
    for turn in result.turns:
        talk[turn.speaker] = talk.get(turn.speaker, 0.0) + turn.duration
    return talk, result.detail["speaker_profiles"]


def test_espeak_voices_are_named_from_clips_of_other_sentences(tmp_path: Path) -> None:
    low = ["-v", "en-us+m3", "-p", "30", "-s", "150"]
    high = ["-v", "en-gb+f2", "-p", "80", "-s", "170"]
    profiles = tmp_path / "profiles"
    (profiles / "Lowell").mkdir(parents=True)
    (profiles / "Helen").mkdir(parents=True)
    _espeak(profiles / "Lowell" / "a.wav", low, "My name is Lowell and I look after the budget.")
    _espeak(profiles / "Helen" / "a.wav", high, "Hello, I am Helen, I run the research team.")
    parts = [
        _espeak(tmp_path / "1.wav", low, "Good morning everyone, let us start the review."),
        _espeak(tmp_path / "2.wav", high, "Thanks. The marketing spend came in under plan."),
        _espeak(tmp_path / "3.wav", low, "Then we move that money into customer research."),
        _espeak(tmp_path / "4.wav", high, "Agreed, I will send the numbers to finance."),
    ]
    meeting = tmp_path / "meeting.wav"
    subprocess.run(["sox", *map(str, parts), str(meeting)], check=True)
    talk, matches = _names(meeting, profiles)
    assert set(talk) == {"Lowell", "Helen"}
    assert all(float(m["score"]) >= 0.55 for m in matches)  # type: ignore[arg-type]
    # Only hashes of the clips are kept: no clip is copied anywhere.
    assert {p.name for p in (tmp_path / "models").rglob("*") if p.is_file()} == {
        f"{d}.npy" for p in load_profiles(profiles) for d in p.clips
    }


def test_a_real_voice_is_named_in_another_recording(tmp_path: Path, shared_data: Path) -> None:
    """FEE083 speaks in two AMI excerpts: her profile comes from trn09, the test is trn06."""
    ami = shared_data / "audio" / "ami-train"
    rttm = ami / "debug.train.rttm"
    clip = _solo_speech(ami / "trn09.wav", rttm, "trn09", "FEE083")
    _write_wav(tmp_path / "profiles" / "FEE083" / "trn09.wav", clip)
    # A second person, who does not speak in trn06, must not take anyone's place.
    other = _solo_speech(ami / "trn00.wav", rttm, "trn00", "MEE068")
    _write_wav(tmp_path / "profiles" / "MEE068" / "trn00.wav", other)
    talk, matches = _names(ami / "trn06.wav", tmp_path / "profiles")
    assert "FEE083" in talk and "MEE068" not in talk
    assert max(talk, key=lambda s: talk[s]) == "FEE083"  # she talks most of trn06
    named = next(m for m in matches if m["profile"] == "FEE083")
    assert float(named["score"]) >= 0.55  # type: ignore[arg-type]


def test_a_profile_from_one_part_names_the_speaker_in_the_other(
    tmp_path: Path, shared_data: Path
) -> None:
    """SpeechBrain's two speakers: profiles from sentences 1-3, a dialogue of sentences 4-6."""
    speech = shared_data / "audio" / "speech"
    for speaker in ("spk1", "spk2"):
        for i in (1, 2, 3):
            target = tmp_path / "profiles" / speaker / f"snt{i}.wav"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((speech / f"{speaker}_snt{i}.wav").read_bytes())
    dialogue = tmp_path / "dialogue.wav"
    order = [speech / f"{s}_snt{i}.wav" for i in (4, 5, 6) for s in ("spk1", "spk2")]
    subprocess.run(["sox", *map(str, order), str(dialogue)], check=True)
    talk, _ = _names(dialogue, tmp_path / "profiles")
    assert set(talk) == {"spk1", "spk2"}
