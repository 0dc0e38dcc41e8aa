"""denoise_audio: clean speech is left alone, noisy speech is cleaned, the decision recorded."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mmflow.tasks.audio.denoise import denoise_audio, estimate_snr_db
from mmflow.tasks.audio.normalise import normalise_audio

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "audio"

pytestmark = pytest.mark.skipif(
    not (shutil.which("sox") and shutil.which("espeak-ng")), reason="needs sox and espeak-ng"
)


@pytest.fixture
def jfk() -> Path:
    path = DATA / "speech" / "jfk.flac"
    if not path.is_file():
        pytest.skip("../shared/data is not present")
    return path


def _noisy_speech(tmp_path: Path) -> Path:
    raw, speech = tmp_path / "raw.wav", tmp_path / "speech.wav"
    text = "The delivery is late again, so we need to call the supplier this afternoon."
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", str(speech)], check=True)
    seconds = subprocess.check_output(["soxi", "-D", str(speech)]).decode().strip()
    noise, noisy = tmp_path / "noise.wav", tmp_path / "noisy.wav"
    subprocess.run(
        [
            "sox",
            "-n",
            "-r",
            "16000",
            "-c",
            "1",
            str(noise),
            "synth",
            seconds,
            "whitenoise",
            "vol",
            "0.2",
        ],
        check=True,
    )
    subprocess.run(["sox", "-m", str(speech), str(noise), str(noisy)], check=True)
    return noisy


def test_clean_speech_is_not_denoised(jfk: Path) -> None:
    audio = normalise_audio(jfk)
    result, decision = denoise_audio(audio)
    assert decision.applied is False
    assert decision.snr_db >= decision.threshold_db
    assert result.samples is audio.samples


def test_noisy_speech_is_denoised_and_its_snr_rises(tmp_path: Path) -> None:
    audio = normalise_audio(_noisy_speech(tmp_path))
    result, decision = denoise_audio(audio)
    assert decision.applied is True
    assert decision.snr_db < decision.threshold_db
    assert decision.snr_db_after is not None and decision.snr_db_after > decision.snr_db + 3
    assert len(result.samples) == len(audio.samples)
    assert result.offset_s == audio.offset_s


def test_digital_silence_counts_as_noiseless() -> None:
    assert estimate_snr_db(np.zeros(16_000, dtype=np.float32), 16_000) == 99.0
