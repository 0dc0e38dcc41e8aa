"""Normalise audio to what the models expect: 16 kHz mono float32, a steady level, no dead air.

Leading and trailing silence is trimmed (pydub) and the leading offset is kept, so every time a
later step reports refers to the original file. A stereo file whose channels carry different
speakers (call recordings, two-mic interviews) is detected and its channels are kept: the
channels themselves then tell who spoke, which beats any voice clustering.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from mmflow.tasks.audio.models import SAMPLE_RATE, ChannelLayout, NormalisedAudio, ValidatedAudio
from mmflow.tasks.audio.validate import require_tool
from mmflow.tasks.errors import MissingDependency, Rejection, RejectionCode

TARGET_DBFS = -20.0
MAX_GAIN_DB = 30.0  # beyond this we would mostly be amplifying the noise floor
PEAK_CEILING = 0.98
FRAME_S = 0.05

# Channels are "different speakers" when they are not copies of each other and, where there is
# sound, one channel is usually far louder than the other.
SPEAKER_CHANNEL_MAX_CORRELATION = 0.5
SPEAKER_CHANNEL_DOMINANCE_DB = 10.0
SPEAKER_CHANNEL_MIN_DOMINANCE = 0.6


def decode_audio(path: str | Path, channels: int = 1, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode any FFmpeg-readable file to float32 samples shaped (channels, n), resampled."""
    result = subprocess.run(
        [
            require_tool("ffmpeg"),
            "-nostdin",
            "-v",
            "error",
            "-i",
            str(path),
            "-map",
            "0:a:0",
            "-ac",
            str(channels),
            "-ar",
            str(sample_rate),
            "-f",
            "f32le",
            "-",
        ],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        raise Rejection(
            RejectionCode.CORRUPT,
            f"FFmpeg could not decode {Path(path).name}: "
            f"{result.stderr.decode(errors='replace').strip()[:200]}",
        )
    samples = np.frombuffer(result.stdout, dtype="<f4").astype(np.float32)
    return samples.reshape(-1, channels).T.copy()


def count_channels(path: str | Path) -> int:
    """Channels of the first audio stream, from ffprobe."""
    result = subprocess.run(
        [
            require_tool("ffprobe"),
            "-v",
            "error",
            "-select_streams",
            "a:0",
            "-show_entries",
            "stream=channels",
            "-of",
            "csv=p=0",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        return int(result.stdout.strip().splitlines()[0])
    except (ValueError, IndexError):
        return 1


def _frame_rms(samples: np.ndarray, frame: int) -> np.ndarray:
    n = len(samples) // frame
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    blocks = samples[: n * frame].reshape(n, frame).astype(np.float64)
    rms: np.ndarray = np.sqrt(np.mean(blocks**2, axis=1))
    return rms


def classify_channels(channels: np.ndarray) -> tuple[ChannelLayout, float | None, float | None]:
    """Tell a stereo mix from two speakers on two channels (correlation + energy dominance)."""
    if channels.shape[0] < 2:
        return ChannelLayout.MONO, None, None
    left, right = channels[0].astype(np.float64), channels[1].astype(np.float64)
    if np.std(left) == 0.0 or np.std(right) == 0.0:
        correlation = 0.0 if np.std(left) != np.std(right) else 1.0
    else:
        correlation = float(np.corrcoef(left, right)[0, 1])
    frame = int(FRAME_S * SAMPLE_RATE)
    rms_l, rms_r = _frame_rms(channels[0], frame), _frame_rms(channels[1], frame)
    loudest = np.maximum(rms_l, rms_r)
    if loudest.size == 0 or loudest.max() <= 0.0:
        return ChannelLayout.STEREO_MIXED, correlation, 0.0
    voiced = loudest > loudest.max() * 10 ** (-35 / 20)
    ratio_db = 20 * np.log10((rms_l[voiced] + 1e-9) / (rms_r[voiced] + 1e-9))
    dominant = np.abs(ratio_db) > SPEAKER_CHANNEL_DOMINANCE_DB
    dominance = float(dominant.mean()) if dominant.size else 0.0
    # Both channels must lead somewhere; a silent or near-silent channel is not a second speaker.
    both_lead = bool((ratio_db > SPEAKER_CHANNEL_DOMINANCE_DB).mean() > 0.05) and bool(
        (ratio_db < -SPEAKER_CHANNEL_DOMINANCE_DB).mean() > 0.05
    )
    if (
        abs(correlation) < SPEAKER_CHANNEL_MAX_CORRELATION
        and dominance >= SPEAKER_CHANNEL_MIN_DOMINANCE
        and both_lead
    ):
        return ChannelLayout.STEREO_SPEAKERS, correlation, dominance
    return ChannelLayout.STEREO_MIXED, correlation, dominance


def _nonsilent_bounds(mono: np.ndarray, silence_dbfs: float) -> tuple[int, int] | None:
    """First and last non-silent sample indices found by pydub's silence detector."""
    try:
        from pydub import AudioSegment
        from pydub.silence import detect_nonsilent
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MissingDependency("pydub", "pip install 'mmflow[audio]'") from exc
    pcm = (np.clip(mono, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    segment = AudioSegment(data=pcm, sample_width=2, frame_rate=SAMPLE_RATE, channels=1)
    ranges = detect_nonsilent(
        segment, min_silence_len=100, silence_thresh=silence_dbfs, seek_step=10
    )
    if not ranges:
        return None
    first_ms, last_ms = ranges[0][0], ranges[-1][1]
    return first_ms * SAMPLE_RATE // 1000, min(len(mono), last_ms * SAMPLE_RATE // 1000)


def loudness_gain_db(mono: np.ndarray, target_dbfs: float = TARGET_DBFS) -> float:
    """Gain that brings the sounding part to `target_dbfs` RMS without clipping the peaks."""
    rms = _frame_rms(mono, int(FRAME_S * SAMPLE_RATE))
    if rms.size == 0 or rms.max() <= 0.0:
        return 0.0
    # Level of the louder half of the frames: speech, not the pauses between it.
    active = rms[rms >= np.quantile(rms, 0.5)]
    level_dbfs = 20 * np.log10(float(np.sqrt(np.mean(active**2))) + 1e-12)
    peak = float(np.max(np.abs(mono)))
    headroom_db = 20 * np.log10(PEAK_CEILING / peak) if peak > 0 else MAX_GAIN_DB
    return float(min(target_dbfs - level_dbfs, headroom_db, MAX_GAIN_DB))


def normalise_audio(
    source: ValidatedAudio | str | Path,
    *,
    target_dbfs: float = TARGET_DBFS,
    trim: bool = True,
    trim_pad_s: float = 0.2,
) -> NormalisedAudio:
    """Decode, mix to mono (keeping speaker channels), level and trim, remembering the offset."""
    path = source.uri if isinstance(source, ValidatedAudio) else str(source)
    probe_channels = source.channels if isinstance(source, ValidatedAudio) else count_channels(path)
    stereo = decode_audio(path, channels=2) if probe_channels >= 2 else None
    notes: list[str] = []
    if stereo is not None:
        layout, correlation, dominance = classify_channels(stereo)
        mono = stereo.mean(axis=0).astype(np.float32)
        if layout is ChannelLayout.STEREO_SPEAKERS:
            # Averaging would halve a lone talker; summing keeps each at its own level.
            mono = stereo.sum(axis=0).astype(np.float32)  # the gain below keeps peaks < 1
            notes.append(
                f"stereo channels carry different speakers (correlation {correlation:.2f}, "
                f"one channel dominates {dominance:.0%} of sounding frames): channels kept"
            )
    else:
        mono = decode_audio(path, channels=1)[0]
        layout, correlation, dominance = ChannelLayout.MONO, None, None
    original_duration = len(mono) / SAMPLE_RATE

    gain_db = loudness_gain_db(mono, target_dbfs)
    factor = np.float32(10 ** (gain_db / 20))
    mono = (mono * factor).astype(np.float32)
    if gain_db:
        notes.append(f"gain {gain_db:+.1f} dB to {target_dbfs:.0f} dBFS speech level")

    start, end = 0, len(mono)
    if trim and len(mono):
        bounds = _nonsilent_bounds(mono, silence_dbfs=target_dbfs - 30.0)
        if bounds is None:
            notes.append("no sound above the silence threshold: nothing trimmed")
        else:
            pad = int(trim_pad_s * SAMPLE_RATE)
            start, end = max(0, bounds[0] - pad), min(len(mono), bounds[1] + pad)
            if start or end < len(mono):
                notes.append(
                    f"trimmed {start / SAMPLE_RATE:.2f} s of leading and "
                    f"{(len(mono) - end) / SAMPLE_RATE:.2f} s of trailing silence"
                )
    channel_samples = None
    if stereo is not None and layout is ChannelLayout.STEREO_SPEAKERS:
        channel_samples = (stereo[:, start:end] * factor).astype(np.float32)
    return NormalisedAudio(
        uri=path,
        samples=mono[start:end].copy(),
        offset_s=start / SAMPLE_RATE,
        original_duration_s=original_duration,
        gain_db=gain_db,
        layout=layout,
        channel_samples=channel_samples,
        channel_correlation=correlation,
        channel_dominance=dominance,
        notes=notes,
    )
