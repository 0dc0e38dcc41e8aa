"""Checks on what the meeting pipeline heard, reported in `<stem>.json` under `checks`.

A recording normalise had to repair (NaN/Inf or garbage samples made silence, channels that
cancel each other in a plain mix) gets a `warn` check saying so: its status stays `ok`, since
the speech was recovered, but the file itself is damaged and someone may want the original.

"No speech found" is a clean result only when the recording is quiet. When it holds sustained
sound in the voice band (300-3400 Hz, where speech carries its energy), the speech may have
been too quiet or too far from the microphone for the detector: that ends as a `warn` check,
never as a silent, clean `ok` with nothing in it.
"""

from __future__ import annotations

import numpy as np

from mmflow.tasks.audio.models import NormalisedAudio, Segment
from mmflow.tasks.models import Check, CheckStatus

FRAME_S = 0.05
VOICE_BAND_HZ = (300.0, 3400.0)
# A frame "has voice-band sound" when its band level is above an absolute floor (after
# normalise's levelling) and clearly above the recording's own quietest frames.
MIN_LEVEL_DBFS = -55.0
ABOVE_FLOOR_DB = 12.0
SUSTAINED_S = 2.0
CHUNK_FRAMES = 1200  # one minute of 50 ms frames per spectrum


def voice_band_seconds(audio: NormalisedAudio) -> float:
    """Seconds of frames with voice-band sound clearly above the recording's noise floor.

    The spectra are taken CHUNK_FRAMES at a time: at once, an hour of room tone with no words
    (the only case that reaches here with a long recording) cost 1.2 GB of float64 frames and
    their spectra (docs/bad-inputs.md); per chunk it costs a few MB.
    """
    frame = int(FRAME_S * audio.sample_rate)
    n = len(audio.samples) // frame
    if n == 0:
        return 0.0
    window = np.hanning(frame)
    freqs = np.fft.rfftfreq(frame, 1 / audio.sample_rate)
    band = (freqs >= VOICE_BAND_HZ[0]) & (freqs <= VOICE_BAND_HZ[1])
    power = np.empty(n)
    for first in range(0, n, CHUNK_FRAMES):
        last = min(n, first + CHUNK_FRAMES)
        frames = audio.samples[first * frame : last * frame].reshape(-1, frame)
        spectrum = np.abs(np.fft.rfft(frames.astype(np.float64) * window, axis=1)) ** 2
        # Parseval: mean power of the band-limited frame, as dBFS of a full-scale sine's power.
        power[first:last] = 2 * spectrum[:, band].sum(axis=1) / (frame * np.sum(window**2))
    level = 10 * np.log10(power + 1e-12) + 3.0
    floor = np.percentile(level, 10)
    loud = (level >= MIN_LEVEL_DBFS) & (level >= floor + ABOVE_FLOOR_DB)
    return float(loud.sum() * FRAME_S)


def speech_found_check(audio: NormalisedAudio | None, segments: list[Segment]) -> Check:
    """`pass` when words were found; without words, `warn` if voice-band sound was sustained
    (`audio` is needed only then)."""
    words = sum(len(s.words) or bool(s.text.strip()) for s in segments)
    if words:
        return Check(name="speech_found", status=CheckStatus.PASS, detail=f"{words} words")
    if audio is None:
        raise ValueError("no words: the samples are needed to tell quiet from missed speech")
    seconds = voice_band_seconds(audio)
    if seconds >= SUSTAINED_S:
        return Check(
            name="speech_found",
            status=CheckStatus.WARN,
            detail=(
                f"no speech found, but {seconds:.1f} s of sustained voice-band sound: quiet or "
                "far-field speech may have been missed (or it is music or noise); listen to it, "
                "or try --denoise on"
            ),
        )
    return Check(
        name="speech_found",
        status=CheckStatus.PASS,
        detail="no speech found, and the recording holds no sustained voice-band sound",
    )


def samples_repaired_check(non_finite: int, out_of_range: int, phase_inverted: bool) -> Check:
    """`warn` naming each repair normalise made to the samples, `pass` when none was needed."""
    repairs = []
    if non_finite:
        repairs.append(f"{non_finite:,} NaN/Inf samples made silence")
    if out_of_range:
        repairs.append(f"{out_of_range:,} samples far beyond full scale made silence")
    if phase_inverted:
        repairs.append(
            "the channels are phase-inverted copies that cancel in a plain mix: one was "
            "inverted before mixing"
        )
    if not repairs:
        return Check(name="samples_repaired", status=CheckStatus.PASS, detail="none needed")
    return Check(
        name="samples_repaired",
        status=CheckStatus.WARN,
        detail="; ".join(repairs) + " (the recording itself is damaged; check its source)",
    )
