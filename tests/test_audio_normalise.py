"""normalise_audio: 16 kHz mono float32, levelled, trimmed with the offset kept, stereo read."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mmflow.tasks.audio.models import ChannelLayout
from mmflow.tasks.audio.normalise import TARGET_DBFS, normalise_audio
from mmflow.tasks.audio.vad import detect_speech

pytestmark = pytest.mark.skipif(
    not (shutil.which("ffmpeg") and shutil.which("sox") and shutil.which("espeak-ng")),
    reason="needs ffmpeg, sox and espeak-ng",
)


def speak(text: str, path: Path, voice: str = "en-us+m3", pitch: int = 40) -> Path:
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", str(path)], check=True)
    return path


def silence(seconds: float, path: Path, channels: int = 1) -> Path:
    subprocess.run(
        ["sox", "-n", "-r", "16000", "-c", str(channels), str(path), "trim", "0", str(seconds)],
        check=True,
    )
    return path


def test_output_is_16k_mono_float32(tmp_path: Path) -> None:
    speech = speak("The quarterly review starts now.", tmp_path / "s.wav")
    stereo_44k = tmp_path / "s44.wav"
    subprocess.run(["sox", str(speech), "-r", "44100", "-c", "2", str(stereo_44k)], check=True)
    audio = normalise_audio(stereo_44k)
    assert audio.sample_rate == 16_000
    assert audio.samples.dtype == np.float32
    assert audio.samples.ndim == 1


def test_leading_silence_is_trimmed_and_times_stay_in_the_original_file(tmp_path: Path) -> None:
    speech = speak("Please review the budget before Friday.", tmp_path / "s.wav")
    padded = tmp_path / "padded.wav"
    subprocess.run(
        [
            "sox",
            str(silence(3.0, tmp_path / "lead.wav")),
            str(speech),
            str(silence(2.0, tmp_path / "tail.wav")),
            str(padded),
        ],
        check=True,
    )
    audio = normalise_audio(padded)
    assert 2.5 < audio.offset_s < 3.05
    assert audio.original_duration_s == pytest.approx(
        5.0 + len(normalise_audio(speech, trim=False).samples) / 16_000, abs=0.05
    )
    assert audio.end_s < audio.original_duration_s - 1.5  # trailing silence gone too
    regions = detect_speech(audio)
    assert regions and regions[0].start >= 2.7  # the VAD reports original-file times


def test_quiet_speech_is_raised_to_the_target_level(tmp_path: Path) -> None:
    speech = speak("This recording was made far from the microphone.", tmp_path / "s.wav")
    quiet = tmp_path / "quiet.wav"
    subprocess.run(["sox", str(speech), str(quiet), "vol", "0.02"], check=True)
    audio = normalise_audio(quiet)
    assert audio.gain_db > 20
    frames = audio.samples[: len(audio.samples) // 800 * 800].reshape(-1, 800)
    rms = np.sqrt((frames**2).mean(axis=1))
    loud = rms[rms >= np.quantile(rms, 0.5)]
    level = 20 * np.log10(np.sqrt((loud**2).mean()))
    assert level == pytest.approx(TARGET_DBFS, abs=3.0)
    assert np.abs(audio.samples).max() <= 1.0


def test_digital_silence_is_left_alone(tmp_path: Path) -> None:
    audio = normalise_audio(silence(1.0, tmp_path / "silent.wav"))
    assert audio.gain_db == 0.0
    assert audio.duration_s == pytest.approx(1.0, abs=0.01)


def _two_channel_call(tmp_path: Path) -> Path:
    """Speaker A on the left channel, then speaker B on the right: a phone-call recording."""
    a = speak("Hello, this is the support line, how can I help?", tmp_path / "a.wav")
    b = speak("My invoice shows the wrong amount.", tmp_path / "b.wav", "en-gb+f2", 80)
    gap = silence(0.5, tmp_path / "gap.wav")
    left, right = tmp_path / "left.wav", tmp_path / "right.wav"
    b_len = float(subprocess.check_output(["soxi", "-D", str(b)]))
    a_len = float(subprocess.check_output(["soxi", "-D", str(a)]))
    subprocess.run(
        ["sox", str(a), str(gap), str(silence(b_len, tmp_path / "sb.wav")), str(left)], check=True
    )
    subprocess.run(
        ["sox", str(silence(a_len, tmp_path / "sa.wav")), str(gap), str(b), str(right)], check=True
    )
    call = tmp_path / "call.wav"
    subprocess.run(["sox", "-M", str(left), str(right), str(call)], check=True)
    return call


def test_stereo_with_one_speaker_per_channel_is_detected_and_channels_kept(
    tmp_path: Path,
) -> None:
    audio = normalise_audio(_two_channel_call(tmp_path))
    assert audio.layout is ChannelLayout.STEREO_SPEAKERS
    assert audio.channel_samples is not None
    assert audio.channel_samples.shape == (2, len(audio.samples))


def test_stereo_with_the_same_mix_on_both_channels_is_plain_stereo(tmp_path: Path) -> None:
    speech = speak("Both channels carry the same voice.", tmp_path / "s.wav")
    dual = tmp_path / "dual.wav"
    subprocess.run(["sox", str(speech), "-c", "2", str(dual)], check=True)
    audio = normalise_audio(dual)
    assert audio.layout is ChannelLayout.STEREO_MIXED
    assert audio.channel_samples is None


SPEECH_44K = Path(__file__).parents[2] / "shared" / "data" / "audio" / "speech" / "jfk.flac"


def _jfk_float_wav(path: Path, transform: object) -> Path:
    """A real speech clip at its own 44.1 kHz as a float WAV, after `transform(samples)`."""
    import soundfile

    samples, rate = soundfile.read(SPEECH_44K, dtype="float32")
    samples = samples.mean(axis=1) if samples.ndim > 1 else samples
    soundfile.write(path, transform(samples), rate, subtype="FLOAT")  # type: ignore[operator]
    return path


def _with_garbage(samples: np.ndarray) -> np.ndarray:
    damaged = samples.copy()
    damaged[1000::20011] = 1e6  # 25 garbage samples in 11 s: as loud as +120 dBFS
    damaged[5000] = 1e25  # float32 squares of this overflow to Inf
    return damaged


@pytest.mark.skipif(not SPEECH_44K.exists(), reason="needs ../shared/data/audio/speech")
def test_rare_samples_far_beyond_full_scale_are_clipped_and_the_speech_kept(
    tmp_path: Path,
) -> None:
    """A few float samples of 1e6 set the DC offset, the gain (-110 dB) and the trim (0.2 s
    kept of 11 s): the run said `ok` and found no speech. Clipped to full scale before FFmpeg
    resamples them, they cost nothing: the level and length are those of the clean clip."""
    clean = normalise_audio(_jfk_float_wav(tmp_path / "clean.wav", lambda s: s))
    damaged = normalise_audio(_jfk_float_wav(tmp_path / "garbage.wav", _with_garbage))
    assert damaged.out_of_range_samples > 0
    assert damaged.gain_db == pytest.approx(clean.gain_db, abs=1.0)
    assert damaged.duration_s == pytest.approx(clean.duration_s, abs=0.5)
    assert any("clipped" in note and "+24 dBFS" in note for note in damaged.notes)
    speech_s = sum(r.duration for r in detect_speech(damaged))
    assert speech_s > 0.7 * sum(r.duration for r in detect_speech(clean))


@pytest.mark.skipif(not SPEECH_44K.exists(), reason="needs ../shared/data/audio/speech")
def test_a_float_file_holding_integer_scaled_samples_is_levelled_not_clipped(
    tmp_path: Path,
) -> None:
    """Floats holding 16-bit values (×32768) are out of range everywhere: a scaled file, not
    garbage; the gain brings it back and nothing is clipped."""
    clean = normalise_audio(_jfk_float_wav(tmp_path / "clean.wav", lambda s: s))
    scaled = normalise_audio(_jfk_float_wav(tmp_path / "scaled.wav", lambda s: s * 32768))
    assert scaled.out_of_range_samples == 0
    assert not any("clipped" in note for note in scaled.notes)
    level = float(np.sqrt(np.mean(scaled.samples.astype(np.float64) ** 2)))
    reference = float(np.sqrt(np.mean(clean.samples.astype(np.float64) ** 2)))
    assert level == pytest.approx(reference, rel=0.1)
