"""Degraded copies of clean inputs for the stress tier: scans turned, blurred, noisy and
low-contrast; speech with noise mixed in at a set signal-to-noise ratio.

Every degradation is drawn from a seed, so a stress set is the same bytes on every machine and
a change in its scores is a change in the code.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from mmflow.tasks.samples import scanned

TURNS = (0, 90, 180, 270)  # clockwise turn a reader must undo


def badly_scanned(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A poor scan: more skew, heavier blur and noise, faded toner, a dark band along an edge."""
    page = scanned(image, rng, skew_deg=float(rng.uniform(-2.5, 2.5)))
    page = page.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.9, 1.4))))
    pixels = np.asarray(page, dtype=np.float32)
    pixels = 255 - (255 - pixels) * float(rng.uniform(0.55, 0.75))  # faded toner
    band = max(8, pixels.shape[1] // 25)
    pixels[:, :band] *= 0.55  # the scanner lid's shadow
    pixels += rng.normal(0.0, 12.0, pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L")


def turned(image: Image.Image, clockwise_deg: int) -> Image.Image:
    """The page stored turned by `clockwise_deg` (what an upright reader must undo)."""
    if clockwise_deg % 360 == 0:
        return image
    return image.rotate(-clockwise_deg, expand=True)


def jpeg_bytes(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def noisy_speech(source: Path, target: Path, snr_db: float, rng: np.random.Generator) -> Path:
    """`source` at 16 kHz mono with pink-ish noise mixed in at `snr_db`, as 16-bit WAV."""
    from scipy.io import wavfile

    from mmflow.tasks.audio.models import SAMPLE_RATE
    from mmflow.tasks.audio.normalise import decode_audio

    speech = decode_audio(source)[0].astype(np.float64)
    white = rng.normal(0.0, 1.0, speech.shape[0] + 1)
    noise = np.cumsum(white)[1:] - np.cumsum(white)[:-1] * 0.98  # leaky: more low frequencies
    noise -= noise.mean()
    speech_power = float(np.mean(speech**2)) or 1e-12
    noise_power = float(np.mean(noise**2)) or 1e-12
    noise *= np.sqrt(speech_power / (noise_power * 10 ** (snr_db / 10)))
    mixed = speech + noise
    peak = float(np.max(np.abs(mixed))) or 1.0
    if peak > 0.99:
        mixed *= 0.99 / peak
    target.parent.mkdir(parents=True, exist_ok=True)
    wavfile.write(target, SAMPLE_RATE, (mixed * 32767).astype(np.int16))
    return target
