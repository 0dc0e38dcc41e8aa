"""Normalise audio to what the models expect: 16 kHz mono float32, a steady level, no dead air.

Leading and trailing silence is trimmed and the leading offset is kept, so every time a later
step reports refers to the original file. A stereo file whose channels carry different speakers
(call recordings, two-mic interviews) is detected and its channels are kept: the channels
themselves then tell who spoke, which beats any voice clustering.

Memory is bounded by what is kept, not by how long the file is (docs/bad-inputs.md). FFmpeg's
output is read in blocks of BLOCK_S seconds, twice: the first pass keeps only sums per 10 ms
(levels, channel correlation, peaks, DC offset, non-finite samples), from which gain, layout and
the trim bounds are decided; the second pass writes the kept stretch, already mixed and levelled,
into one float32 array allocated at its final size. Two hours of silence hold a few MB instead
of gigabytes: a file in which nothing sounds keeps only its first MAX_SILENT_KEPT_S seconds.

Hostile samples are made harmless before anything is measured: NaN and ±Inf become silence (and
are counted), a DC offset is removed, and a stereo file whose channels are phase-inverted
copies is mixed with one channel inverted, where the plain average would cancel to silence.
Rare float samples far beyond full scale (decoder garbage: a few samples of 1e6 set the DC
offset, the gain to -110 dB and the trim, and every word was lost) are clipped to full scale
before FFmpeg resamples, where they would ring into their neighbours.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmflow.tasks.audio.models import SAMPLE_RATE, ChannelLayout, NormalisedAudio, ValidatedAudio
from mmflow.tasks.audio.validate import DEFAULT_MAX_DURATION_S, require_tool
from mmflow.tasks.errors import Rejection, RejectionCode

TARGET_DBFS = -20.0
MAX_GAIN_DB = 30.0  # beyond this we would mostly be amplifying the noise floor
PEAK_CEILING = 0.98
FRAME_S = 0.05  # the level is measured on 50 ms frames
STEP = 160  # samples in a 10 ms analysis frame: 5 make a level frame, 10 a silence window
SILENCE_WINDOW = 10  # 100 ms windows at 10 ms steps decide what is silence
BLOCK_S = 20.0  # seconds of decoded audio in memory at a time
MAX_SILENT_KEPT_S = 10.0  # a file in which nothing sounds keeps this much
DC_OFFSET_MIN = 0.01  # a mean below this (-40 dBFS) is left alone
CANCELLATION_DB = 10.0  # the plain stereo mix this much below the channels: they cancel
# A float sample beyond +24 dBFS is no sound a recording chain makes. Confined to a few 10 ms
# frames it is garbage, clipped to full scale; in many frames the whole file is merely scaled
# (floats holding 16-bit integer values) and the gain brings it back unclipped.
OUT_OF_RANGE = 16.0
GARBAGE_FRAMES = 0.1  # share of all 10 ms frames
CLIP_FILTER = "asoftclip=type=hard:threshold=1"  # before resampling; NaN/Inf come out finite

# Channels are "different speakers" when they are not copies of each other and, where there is
# sound, one channel is usually far louder than the other.
SPEAKER_CHANNEL_MAX_CORRELATION = 0.5
SPEAKER_CHANNEL_DOMINANCE_DB = 10.0
SPEAKER_CHANNEL_MIN_DOMINANCE = 0.6


def pcm_blocks(
    path: str | Path,
    channels: int,
    max_duration_s: float,
    sample_rate: int = SAMPLE_RATE,
    clip: bool = False,
) -> Generator[np.ndarray, None, None]:
    """Decoded samples as writable float32 blocks shaped (n, channels), at most BLOCK_S seconds
    each and a whole number of 10 ms frames except the last; decoding stops at
    `max_duration_s`; `clip` clips to full scale at the file's own rate. Closing the iterator
    early stops FFmpeg."""
    command = [
        require_tool("ffmpeg"),
        "-nostdin",
        "-v",
        "error",
        "-i",
        str(path),
        "-map",
        "0:a:0",
        *(["-af", CLIP_FILTER] if clip else []),
        "-ac",
        str(channels),
        "-ar",
        str(sample_rate),
        "-t",
        f"{max_duration_s:.3f}",
        "-f",
        "f32le",
        "-",
    ]
    frame_bytes = 4 * channels * STEP
    block_bytes = int(BLOCK_S * sample_rate) // STEP * frame_bytes
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors)
        assert process.stdout is not None
        finished = False
        try:
            carry = b""
            while chunk := process.stdout.read(block_bytes):
                data = carry + chunk
                usable = len(data) - len(data) % frame_bytes
                carry = data[usable:]
                if usable:
                    yield np.frombuffer(data[:usable], dtype="<f4").reshape(-1, channels).copy()
            whole = len(carry) - len(carry) % (4 * channels)
            if whole:
                yield np.frombuffer(carry[:whole], dtype="<f4").reshape(-1, channels).copy()
            finished = True
        finally:
            if not finished:
                process.kill()
            process.stdout.close()
            code = process.wait()
        if code != 0:
            errors.seek(0)
            detail = errors.read().decode(errors="replace").strip()[:200]
            raise Rejection(
                RejectionCode.CORRUPT, f"FFmpeg could not decode {Path(path).name}: {detail}"
            )


def decode_audio(
    path: str | Path,
    channels: int = 1,
    sample_rate: int = SAMPLE_RATE,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
) -> np.ndarray:
    """Decode any FFmpeg-readable file to float32 samples shaped (channels, n), resampled."""
    blocks = list(pcm_blocks(path, channels, max_duration_s, sample_rate))
    if not blocks:
        return np.zeros((channels, 0), dtype=np.float32)
    return np.concatenate(blocks).T.copy()


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


# ---------------------------------------------------------------- pass 1: sums per 10 ms


def _sanitise(block: np.ndarray) -> int:
    """Replace NaN and ±Inf with silence in place; return how many there were."""
    bad = ~np.isfinite(block)
    count = int(bad.sum())
    if count:
        block[bad] = 0.0
    return count


@dataclass
class _Sums:
    """Per 10 ms frame: samples, Σx and Σx² per channel, Σ left·right; and the extremes."""

    counts: np.ndarray  # (frames,)
    linear: np.ndarray  # (frames, channels)
    squares: np.ndarray  # (frames, channels)
    cross: np.ndarray  # (frames,), zeros for mono
    highest: np.ndarray  # max of [x] (mono) or [l+r, l-r] (stereo)
    lowest: np.ndarray
    non_finite: int
    out_of_range: int = 0  # samples beyond OUT_OF_RANGE
    out_of_range_frames: int = 0  # 10 ms frames holding any

    @property
    def samples(self) -> int:
        return int(self.counts.sum())


def _frame_sums(block: np.ndarray) -> tuple[np.ndarray, ...]:
    frames = -(-len(block) // STEP)
    padded = np.zeros((frames * STEP, block.shape[1]), dtype=np.float32)
    padded[: len(block)] = block
    shaped = padded.reshape(frames, STEP, block.shape[1])
    counts = np.full(frames, STEP, dtype=np.int64)
    counts[-1] = len(block) - (frames - 1) * STEP
    linear = shaped.sum(axis=1, dtype=np.float64)
    wide = shaped.astype(np.float64)  # float32 squares of samples over 1e19 would be Inf
    squares = np.square(wide).sum(axis=1)
    if block.shape[1] == 2:
        cross = (wide[:, :, 0] * wide[:, :, 1]).sum(axis=1)
        mixes = np.stack([block[:, 0] + block[:, 1], block[:, 0] - block[:, 1]], axis=1)
    else:
        cross = np.zeros(frames)
        mixes = block
    return counts, linear, squares, cross, mixes.max(axis=0), mixes.min(axis=0)


def _measure(path: str | Path, channels: int, max_duration_s: float, clip: bool) -> _Sums:
    parts: list[tuple[np.ndarray, ...]] = []
    non_finite = out_of_range = out_of_range_frames = 0
    for block in pcm_blocks(path, channels, max_duration_s, clip=clip):
        non_finite += _sanitise(block)
        beyond = (np.abs(block) > OUT_OF_RANGE).any(axis=1)
        if beyond.any():
            out_of_range += int(beyond.sum())
            out_of_range_frames += len(np.unique(np.flatnonzero(beyond) // STEP))
        parts.append(_frame_sums(block))
    width = 2 if channels == 2 else 1
    if not parts:
        empty = np.zeros((0, channels))
        return _Sums(
            np.zeros(0, np.int64), empty, empty, np.zeros(0), np.zeros(width), np.zeros(width), 0
        )
    counts, linear, squares, cross, highs, lows = (
        list(column) for column in zip(*parts, strict=True)
    )
    return _Sums(
        counts=np.concatenate(counts),
        linear=np.concatenate(linear),
        squares=np.concatenate(squares),
        cross=np.concatenate(cross),
        highest=np.max(np.stack(highs), axis=0),
        lowest=np.min(np.stack(lows), axis=0),
        non_finite=non_finite,
        out_of_range=out_of_range,
        out_of_range_frames=out_of_range_frames,
    )


# ---------------------------------------------------------------- decisions from the sums


@dataclass(frozen=True)
class _Mix:
    """How the kept samples are made: DC removed per channel, then a weighted sum, then gain."""

    means: np.ndarray  # per channel
    weights: np.ndarray  # per channel
    layout: ChannelLayout
    correlation: float | None
    dominance: float | None
    notes: tuple[str, ...] = ()


def _means(sums: _Sums) -> tuple[np.ndarray, list[str]]:
    means = sums.linear.sum(axis=0) / max(sums.samples, 1)
    if np.abs(means).max(initial=0.0) < DC_OFFSET_MIN:
        return np.zeros_like(means), []
    offsets = ", ".join(f"{m:+.3f}" for m in means)
    return means, [f"removed a DC offset of {offsets} (full scale 1.0)"]


def _centred(sums: _Sums, means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame Σ(x-μ)² per channel, and Σ(l-μl)(r-μr) (zeros for mono)."""
    counts = sums.counts[:, None]
    squares = sums.squares - 2 * means * sums.linear + counts * means**2
    cross = sums.cross
    if len(means) == 2:
        cross = (
            sums.cross
            - means[0] * sums.linear[:, 1]
            - means[1] * sums.linear[:, 0]
            + sums.counts * means[0] * means[1]
        )
    return np.maximum(squares, 0.0), cross


def _level_rms(energy: np.ndarray, sums: _Sums) -> np.ndarray:
    """RMS of whole 50 ms frames (a trailing partial frame is left out)."""
    per = int(FRAME_S * SAMPLE_RATE) // STEP
    whole = sums.samples // (per * STEP)
    grouped = energy[: whole * per].reshape(whole, per).sum(axis=1)
    rms: np.ndarray = np.sqrt(np.maximum(grouped, 0.0) / (per * STEP))
    return rms


def _classify(
    squares: np.ndarray, cross: np.ndarray, sums: _Sums
) -> tuple[ChannelLayout, float, float]:
    """Tell a stereo mix from two speakers on two channels (correlation + energy dominance)."""
    var_l, var_r = squares[:, 0].sum(), squares[:, 1].sum()
    if var_l == 0.0 or var_r == 0.0:
        correlation = 0.0 if var_l != var_r else 1.0
    else:
        correlation = float(cross.sum() / np.sqrt(var_l * var_r))
    rms_l, rms_r = _level_rms(squares[:, 0], sums), _level_rms(squares[:, 1], sums)
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


def _choose_mix(sums: _Sums, channels: int) -> tuple[_Mix, np.ndarray]:
    """The mix and its energy per 10 ms frame."""
    means, notes = _means(sums)
    squares, cross = _centred(sums, means)
    if channels == 1:
        mix = _Mix(means, np.ones(1), ChannelLayout.MONO, None, None, tuple(notes))
        return mix, squares[:, 0]
    layout, correlation, dominance = _classify(squares, cross, sums)
    weights = np.array([1.0, 1.0] if layout is ChannelLayout.STEREO_SPEAKERS else [0.5, 0.5])
    if layout is ChannelLayout.STEREO_SPEAKERS:
        # Averaging would halve a lone talker; summing keeps each at its own level.
        notes.append(
            f"stereo channels carry different speakers (correlation {correlation:.2f}, "
            f"one channel dominates {dominance:.0%} of sounding frames): channels kept"
        )
    else:
        channel_energy = squares.sum() / 2
        mixed = 0.25 * (squares.sum() + 2 * cross.sum())
        if correlation < 0 and mixed < channel_energy * 10 ** (-CANCELLATION_DB / 10):
            weights = np.array([0.5, -0.5])
            loss = max(-99.0, 10 * np.log10(max(mixed, 1e-30) / channel_energy))
            notes.append(
                f"the channels are phase-inverted copies (correlation {correlation:.2f}; their "
                f"plain mix cancels to {loss:.0f} dB): the right channel was inverted first"
            )
    a, b = weights
    energy = a * a * squares[:, 0] + 2 * a * b * cross + b * b * squares[:, 1]
    return _Mix(means, weights, layout, correlation, dominance, tuple(notes)), np.maximum(
        energy, 0.0
    )


def _peak(sums: _Sums, mix: _Mix) -> float:
    """Largest |sample| of the mix, from the extremes pass 1 kept."""
    if len(mix.weights) == 1:
        centre, scale, which = mix.means[0], 1.0, 0
    else:
        a, b = mix.weights
        which = 0 if a == b else 1  # l+r or l-r
        centre = mix.means[0] + (mix.means[1] if a == b else -mix.means[1])
        scale = abs(a)
    return float(scale * max(sums.highest[which] - centre, centre - sums.lowest[which], 0.0))


def _gain_db(level_rms: np.ndarray, peak: float, target_dbfs: float) -> float:
    """Gain that brings the sounding part to `target_dbfs` RMS without clipping the peaks."""
    if level_rms.size == 0 or level_rms.max() <= 0.0:
        return 0.0
    # Level of the louder half of the frames: speech, not the pauses between it.
    active = level_rms[level_rms >= np.quantile(level_rms, 0.5)]
    level_dbfs = 20 * np.log10(float(np.sqrt(np.mean(active**2))) + 1e-12)
    headroom_db = 20 * np.log10(PEAK_CEILING / peak) if peak > 0 else MAX_GAIN_DB
    return float(min(target_dbfs - level_dbfs, headroom_db, MAX_GAIN_DB))


def loudness_gain_db(mono: np.ndarray, target_dbfs: float = TARGET_DBFS) -> float:
    """`_gain_db` of samples held in memory."""
    frame = int(FRAME_S * SAMPLE_RATE)
    whole = len(mono) // frame
    blocks = mono[: whole * frame].reshape(whole, frame).astype(np.float64)
    rms = np.sqrt(np.mean(blocks**2, axis=1)) if whole else np.zeros(0)
    return _gain_db(rms, float(np.max(np.abs(mono), initial=0.0)), target_dbfs)


def _sound_bounds(energy: np.ndarray, samples: int, silence_dbfs: float) -> tuple[int, int] | None:
    """First and last sample that is not silence, as pydub's `detect_nonsilent` finds them with
    100 ms windows at 10 ms steps; None when every window is silence."""
    if len(energy) < SILENCE_WINDOW:
        return None if energy.sum() <= 0 else (0, samples)
    running = np.concatenate([[0.0], np.cumsum(energy)])
    windows = running[SILENCE_WINDOW:] - running[:-SILENCE_WINDOW]
    silent = np.sqrt(np.maximum(windows, 0.0) / (SILENCE_WINDOW * STEP)) <= 10 ** (
        silence_dbfs / 20
    )
    starts = np.flatnonzero(silent)
    if starts.size == 0:
        return 0, samples
    # A silent stretch: silent windows whose starts are at most one window apart.
    breaks = np.flatnonzero(np.diff(starts) > SILENCE_WINDOW)
    first_ends = (starts[breaks[0]] if breaks.size else starts[-1]) + SILENCE_WINDOW
    last_begins = starts[breaks[-1] + 1] if breaks.size else starts[0]
    leading = starts[0] == 0
    trailing = starts[-1] == len(windows) - 1
    if leading and trailing and not breaks.size:
        return None
    begin = first_ends * STEP if leading else 0
    end = last_begins * STEP if trailing else samples
    return int(begin), int(min(end, samples))


# ---------------------------------------------------------------- pass 2: the kept stretch


def _kept_samples(
    path: str | Path,
    channels: int,
    max_duration_s: float,
    mix: _Mix,
    factor: np.float32,
    span: tuple[int, int],
    clip: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    start, end = span
    mono = np.empty(end - start, dtype=np.float32)
    keep_channels = mix.layout is ChannelLayout.STEREO_SPEAKERS
    both = np.empty((channels, end - start), dtype=np.float32) if keep_channels else None
    offset = 0
    blocks = pcm_blocks(path, channels, max_duration_s, clip=clip)
    try:
        for block in blocks:
            begin, stop = max(start, offset), min(end, offset + len(block))
            if begin < stop:
                part = block[begin - offset : stop - offset]
                _sanitise(part)
                part -= mix.means.astype(np.float32)
                mono[begin - start : stop - start] = (
                    part @ mix.weights.astype(np.float32)
                ) * factor
                if both is not None:
                    both[:, begin - start : stop - start] = part.T * factor
            offset += len(block)
            if offset >= end:
                break
    finally:
        blocks.close()  # stops FFmpeg once the kept stretch is read
    return mono, both


def normalise_audio(
    source: ValidatedAudio | str | Path,
    *,
    target_dbfs: float = TARGET_DBFS,
    trim: bool = True,
    trim_pad_s: float = 0.2,
) -> NormalisedAudio:
    """Decode, mix to mono (keeping speaker channels), level and trim, remembering the offset."""
    if isinstance(source, ValidatedAudio):
        path, channels = source.uri, source.channels
        max_duration_s = source.duration_s + 1.0  # what validate measured, and no more
    else:
        path, channels, max_duration_s = str(source), count_channels(source), DEFAULT_MAX_DURATION_S
    channels = 2 if channels >= 2 else 1
    sums = _measure(path, channels, max_duration_s, clip=False)
    frames = max(len(sums.counts), 1)
    clip = 0 < sums.out_of_range_frames <= GARBAGE_FRAMES * frames
    out_of_range, garbage_frames = (sums.out_of_range, sums.out_of_range_frames) if clip else (0, 0)
    non_finite = sums.non_finite
    if clip:  # measured again, clipped before resampling
        sums = _measure(path, channels, max_duration_s, clip=True)
    non_finite = max(non_finite, sums.non_finite)
    total = sums.samples
    mix, energy = _choose_mix(sums, channels)
    notes = list(mix.notes)
    if clip:
        notes.insert(
            0,
            f"clipped {out_of_range:,} samples beyond {20 * np.log10(OUT_OF_RANGE):+.0f} dBFS "
            f"(decoder garbage in {garbage_frames:,} of {frames:,} 10 ms frames, "
            "not sound) to full scale",
        )
    if non_finite:
        notes.insert(0, f"replaced {non_finite:,} non-finite samples (NaN/Inf) with silence")

    gain_db = _gain_db(_level_rms(energy, sums), _peak(sums, mix), target_dbfs)
    factor = np.float32(10 ** (gain_db / 20))
    if gain_db:
        notes.append(f"gain {gain_db:+.1f} dB to {target_dbfs:.0f} dBFS speech level")

    start, end = 0, total
    if trim and total:
        bounds = _sound_bounds(energy * float(factor) ** 2, total, target_dbfs - 30.0)
        if bounds is None:
            end = min(total, int(MAX_SILENT_KEPT_S * SAMPLE_RATE))
            notes.append(
                "no sound above the silence threshold"
                + (
                    f": kept only the first {MAX_SILENT_KEPT_S:.0f} s"
                    if end < total
                    else ": nothing trimmed"
                )
            )
        else:
            pad = int(trim_pad_s * SAMPLE_RATE)
            start, end = max(0, bounds[0] - pad), min(total, bounds[1] + pad)
            if start or end < total:
                notes.append(
                    f"trimmed {start / SAMPLE_RATE:.2f} s of leading and "
                    f"{(total - end) / SAMPLE_RATE:.2f} s of trailing silence"
                )
    mono, kept_channels = _kept_samples(
        path, channels, max_duration_s, mix, factor, (start, max(start, end)), clip
    )
    return NormalisedAudio(
        uri=path,
        samples=mono,
        offset_s=start / SAMPLE_RATE,
        original_duration_s=total / SAMPLE_RATE,
        gain_db=gain_db,
        layout=mix.layout,
        channel_samples=kept_channels,
        channel_correlation=mix.correlation,
        channel_dominance=mix.dominance,
        non_finite_samples=non_finite,
        out_of_range_samples=out_of_range,
        phase_inverted=bool(mix.weights[0] * mix.weights[-1] < 0),
        notes=notes,
    )
