"""validate_audio: every accepted format passes, every kind of bad input gets its code."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mmflow.tasks.audio.validate import validate_audio
from mmflow.tasks.errors import Rejection, RejectionCode

pytestmark = pytest.mark.skipif(
    not (shutil.which("ffmpeg") and shutil.which("ffprobe")), reason="FFmpeg not installed"
)


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def tone_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("validate") / "tone.wav"
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-ar", "16000", str(path))
    return path


@pytest.mark.parametrize(
    ("suffix", "codec_args", "media_type"),
    [
        ("wav", [], "audio/wav"),
        ("mp3", [], "audio/mpeg"),
        ("m4a", ["-c:a", "aac"], "audio/mp4"),
        ("flac", [], "audio/flac"),
        ("ogg", ["-c:a", "libvorbis"], "audio/ogg"),
        ("opus", ["-c:a", "libopus"], "audio/ogg"),
        ("webm", ["-c:a", "libopus"], "audio/webm"),
    ],
)
def test_accepts_common_audio_formats(
    tone_wav: Path, tmp_path: Path, suffix: str, codec_args: list[str], media_type: str
) -> None:
    target = tmp_path / f"tone.{suffix}"
    _ffmpeg("-i", str(tone_wav), *codec_args, str(target))
    validated = validate_audio(target)
    assert validated.media_type == media_type
    assert validated.duration_s == pytest.approx(2.0, abs=0.1)
    assert len(validated.sha256) == 64


def test_accepts_the_audio_track_of_an_mp4_video(tone_wav: Path, tmp_path: Path) -> None:
    target = tmp_path / "clip.mp4"
    _ffmpeg(
        "-f", "lavfi", "-i", "color=c=black:s=64x64:d=2", "-i", str(tone_wav),
        "-shortest", "-c:v", "mpeg4", "-c:a", "aac", str(target),
    )  # fmt: skip
    validated = validate_audio(target)
    assert validated.media_type == "audio/mp4"
    assert validated.codec == "aac"


def _code(path: Path, **kwargs: float) -> RejectionCode:
    with pytest.raises(Rejection) as caught:
        validate_audio(path, **kwargs)
    return caught.value.code


def test_rejects_a_zero_byte_file_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    assert _code(path) is RejectionCode.EMPTY


def test_rejects_a_wav_without_samples_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "nothing.wav"
    subprocess.run(["sox", "-n", "-r", "16000", "-c", "1", str(path), "trim", "0", "0"], check=True)
    assert _code(path) is RejectionCode.EMPTY


def test_rejects_text_as_unsupported_format(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp3"  # the name lies; the bytes decide
    path.write_text("minutes of the meeting\n")
    assert _code(path) is RejectionCode.UNSUPPORTED_FORMAT


def test_rejects_an_image_as_unsupported_format(tmp_path: Path) -> None:
    path = tmp_path / "picture.png"
    _ffmpeg("-f", "lavfi", "-i", "color=c=red:s=32x32:d=1", "-frames:v", "1", str(path))
    assert _code(path) is RejectionCode.UNSUPPORTED_FORMAT


def test_rejects_a_truncated_flac_as_corrupt(tone_wav: Path, tmp_path: Path) -> None:
    whole = tmp_path / "whole.flac"
    _ffmpeg("-i", str(tone_wav), str(whole))
    cut = tmp_path / "cut.flac"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert _code(cut) is RejectionCode.CORRUPT


def test_rejects_a_wav_with_a_broken_header_as_corrupt(tone_wav: Path, tmp_path: Path) -> None:
    data = bytearray(tone_wav.read_bytes())
    data[8:12] = b"XXXX"  # "WAVE" tag destroyed, RIFF magic kept
    path = tmp_path / "broken.wav"
    path.write_bytes(bytes(data))
    assert _code(path) is RejectionCode.CORRUPT


def test_rejects_audio_over_the_duration_limit_as_too_long(tone_wav: Path) -> None:
    assert _code(tone_wav, max_duration_s=1.0) is RejectionCode.TOO_LONG


def test_rejects_a_missing_path_as_not_found(tmp_path: Path) -> None:
    assert _code(tmp_path / "absent.wav") is RejectionCode.NOT_FOUND


def test_rejects_a_video_without_sound_as_unsupported_format(tmp_path: Path) -> None:
    path = tmp_path / "silent_film.mp4"
    _ffmpeg("-f", "lavfi", "-i", "color=c=black:s=64x64:d=1", "-c:v", "mpeg4", str(path))
    assert _code(path) is RejectionCode.UNSUPPORTED_FORMAT
