"""Local speaker segmentation on sliding windows (pyannote segmentation-3.0, overlap-aware).

The model hears 10 s at a time and says, for every ~17 ms frame, which of up to three *local*
speakers talk; two at once is one of its classes, so overlapped speech is found, not guessed.
Windows overlap (a step of a few seconds), so every moment is judged several times, in
different contexts; later steps aggregate those judgements on one global frame grid.

"Local" means the labels of one window say nothing about another's: speaker 0 here may be
speaker 2 there. Linking them is the clustering's job (tasks/audio/diarise_segments.py).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmflow.tasks.audio.models import SAMPLE_RATE
from mmflow.tasks.audio.speaker_models import SegmentationModel, segmentation_model

BATCH_WINDOWS = 16  # ~10 MB of input per forward pass; larger batches are not faster on CPU
MIN_STEP_S = 1.0  # pyannote's own step (10 % of the window): every moment judged ~10 times
MAX_WINDOWS = 720  # beyond this (12 min at 1 s) the step widens: cost stays bounded


def window_step(
    duration_s: float, min_step_s: float = MIN_STEP_S, max_windows: int = MAX_WINDOWS
) -> float:
    """Seconds between windows: `min_step_s`, widened on long recordings so that at most
    `max_windows` windows are segmented and embedded (a 30-minute file: 2.5 s, 4 views a frame)."""
    return max(min_step_s, duration_s / max_windows)


@dataclass(frozen=True)
class LocalSegmentation:
    """Which local speaker is active in each frame of each window; times are relative to the
    first sample of the audio that was segmented."""

    starts: np.ndarray  # (windows,) start of each window, seconds
    activity: np.ndarray  # (windows, frames, local speakers) 0/1 float32
    duration_s: float  # of the audio (the last window may reach past it)
    window_s: float
    frame_step_s: float
    frame_duration_s: float

    @property
    def frames_per_window(self) -> int:
        return int(self.activity.shape[1])

    def window_offsets(self) -> np.ndarray:
        """Index on the global frame grid of each window's first frame."""
        return np.round(self.starts / self.frame_step_s).astype(int)

    @property
    def global_frames(self) -> int:
        """Frames of the global grid that lie inside the audio."""
        return max(1, int(np.floor(self.duration_s / self.frame_step_s)))

    def frame_time(self, index: np.ndarray | int | np.integer[Any]) -> np.ndarray:
        """Middle of global frame `index`, seconds."""
        return np.asarray(index) * self.frame_step_s + self.frame_duration_s / 2

    def spans(self, active: np.ndarray) -> list[tuple[float, float]]:
        """Runs of true global frames as (start, end) seconds, each frame its step wide."""
        edges = np.diff(np.concatenate([[0], active.astype(int), [0]]))
        half = self.frame_step_s / 2
        return [
            (
                max(0.0, float(self.frame_time(first)) - half),
                min(self.duration_s, float(self.frame_time(last - 1)) + half),
            )
            for first, last in zip(
                np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True
            )
        ]

    def aggregate(self, values: np.ndarray, average: bool = True) -> np.ndarray:
        """Per-window frame values (windows, frames, k) → global grid (global frames, k).

        Averaged over the windows that cover each frame (or summed, `average=False`)."""
        frames = self.global_frames
        total = np.zeros((frames + self.frames_per_window, values.shape[2]), dtype=np.float64)
        covered = np.zeros((frames + self.frames_per_window, 1), dtype=np.float64)
        for offset, window in zip(self.window_offsets(), values, strict=True):
            total[offset : offset + len(window)] += window
            covered[offset : offset + len(window)] += 1.0
        total, covered = total[:frames], covered[:frames]
        if not average:
            return total
        out: np.ndarray = np.divide(total, covered, out=np.zeros_like(total), where=covered > 0)
        return out


def window_starts(duration_s: float, window_s: float, step_s: float) -> np.ndarray:
    """Starts of windows `step_s` apart covering the whole audio; the last ends at the end."""
    if duration_s <= window_s:
        return np.zeros(1)
    starts = list(np.arange(0.0, duration_s - window_s, step_s))
    starts.append(duration_s - window_s)
    return np.asarray(starts)


def segment_locally(
    samples: np.ndarray, step_s: float, model: SegmentationModel | None = None
) -> LocalSegmentation:
    """Run segmentation-3.0 on `window_s` windows every `step_s` over 16 kHz mono samples."""
    import torch

    model = model or segmentation_model()
    window = round(model.window_s * SAMPLE_RATE)
    duration = len(samples) / SAMPLE_RATE
    starts = window_starts(duration, model.window_s, step_s)
    padded = samples
    if len(samples) < window:  # one window, zero-padded: the padding reads as silence
        padded = np.pad(samples, (0, window - len(samples)))
    outputs = []
    with torch.inference_mode():
        for i in range(0, len(starts), BATCH_WINDOWS):
            batch = np.stack(
                [
                    padded[round(s * SAMPLE_RATE) : round(s * SAMPLE_RATE) + window]
                    for s in starts[i : i + BATCH_WINDOWS]
                ]
            )
            logits = model.network(torch.from_numpy(batch.astype(np.float32)).unsqueeze(1))
            outputs.append(logits.argmax(dim=-1).numpy())
    classes = np.concatenate(outputs)  # (windows, frames): one powerset class per frame
    return LocalSegmentation(
        starts=starts,
        activity=model.powerset[classes],
        duration_s=duration,
        window_s=model.window_s,
        frame_step_s=model.frame_step_s,
        frame_duration_s=model.frame_duration_s,
    )


_memo: OrderedDict[tuple[str, float], LocalSegmentation] = OrderedDict()
_memo_lock = threading.Lock()


def segment_shared(samples: np.ndarray, step_s: float) -> LocalSegmentation:
    """`segment_locally`, remembered for the last few recordings of this process: speech
    detection and diarisation read the same segmentation, and it is computed once."""
    digest = hashlib.sha1(np.ascontiguousarray(samples).data).hexdigest()  # no 115 MB copy
    key = (digest, round(step_s, 6))
    with _memo_lock:
        if key in _memo:
            _memo.move_to_end(key)
            return _memo[key]
    result = segment_locally(samples, step_s)
    with _memo_lock:
        _memo[key] = result
        while len(_memo) > 2:
            _memo.popitem(last=False)
    return result
