"""Checks on what the meeting pipeline heard, reported in `<stem>.json` under `checks`.

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


def voice_band_seconds(audio: NormalisedAudio) -> float:
    """Seconds of frames with voice-band sound clearly above the recording's noise floor."""
    frame = int(FRAME_S * audio.sample_rate)
    n = len(audio.samples) // frame
    if n == 0:
        return 0.0
    frames = audio.samples[: n * frame].reshape(n, frame).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(frames * np.hanning(frame), axis=1)) ** 2
    freqs = np.fft.rfftfreq(frame, 1 / audio.sample_rate)
    band = (freqs >= VOICE_BAND_HZ[0]) & (freqs <= VOICE_BAND_HZ[1])
    # Parseval: mean power of the band-limited frame, as dBFS of a full-scale sine's power.
    power = 2 * spectrum[:, band].sum(axis=1) / (frame * np.sum(np.hanning(frame) ** 2))
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
