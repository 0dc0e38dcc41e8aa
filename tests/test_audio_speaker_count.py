"""How the default diariser counts speakers, on embeddings built here with known structure
(tasks/audio/diarise_segments.py `cluster_local_speakers`, `cannot_link_clustering`).

Each case is a (windows, 3 local speakers, 192) array as CAM++ would give it: a voice is a
direction, each of its stretches that direction plus noise; NaN where nobody talks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster, linkage

from mmflow.tasks.audio.diarise_segments import (
    cannot_link_clustering,
    cluster_local_speakers,
    clusters_to_keep,
    reconstruct,
)
from mmflow.tasks.audio.segmentation import LocalSegmentation
from mmflow.tasks.audio.speakers import DiarisationSettings

WINDOWS = 12
VIEWS = 10.0  # 10 s windows 1 s apart: every moment is heard by ten windows


def _voice(
    rng: np.random.Generator, near: np.ndarray | None = None, distance: float = 0.9
) -> np.ndarray:
    """A unit direction; `near` another at about `distance` (cosine distance) from it."""
    own = rng.normal(size=192)
    own /= np.linalg.norm(own)
    if near is None:
        return own
    own -= (own @ near) * near  # orthogonal to `near`
    own /= np.linalg.norm(own)
    similarity = 1.0 - distance
    out: np.ndarray = similarity * near + np.sqrt(1 - similarity**2) * own
    return out


def _stretch(rng: np.random.Generator, voice: np.ndarray, noise: float = 0.35) -> np.ndarray:
    """One stretch of `voice`: two stretches of one voice end ~0.1 apart, as on ami-train
    (0.07-0.27 from their centre)."""
    vector = voice + noise * rng.normal(size=192) / np.sqrt(192)
    return vector / np.linalg.norm(vector)


def _empty() -> tuple[np.ndarray, np.ndarray]:
    return np.full((WINDOWS, 3, 192), np.nan), np.zeros((WINDOWS, 3))


def _count(embeddings: np.ndarray, seconds: np.ndarray, **changes: int) -> int:
    settings = DiarisationSettings(**changes)
    labels, _ = cluster_local_speakers(
        embeddings,
        seconds,
        threshold=settings.cluster_threshold,
        num_speakers=settings.num_speakers,
        min_speakers=settings.min_speakers,
        max_speakers=settings.max_speakers,
        min_cluster_s=settings.min_cluster_speech_s,
        min_tree_s=settings.min_tree_speech_s,
        views=VIEWS,
    )
    return len(np.unique(labels[labels >= 0]))


def _quiet_voice_beside_a_loud_one() -> tuple[np.ndarray, np.ndarray]:
    """A talks in every window; B, whose voice embeds only 0.2 from A's, answers in windows 3-8,
    as a second local speaker there: their stretches are ~0.3 apart, one voice's ~0.1."""
    rng = np.random.default_rng(7)
    loud = _voice(rng)
    quiet = _voice(rng, near=loud, distance=0.2)
    embeddings, seconds = _empty()
    for w in range(WINDOWS):
        embeddings[w, 0], seconds[w, 0] = _stretch(rng, loud), 6.0
    for w in range(3, 9):
        embeddings[w, 1], seconds[w, 1] = _stretch(rng, quiet), 1.0
    return embeddings, seconds


def test_two_local_speakers_of_one_window_stay_two_people() -> None:
    """The segmentation says two people talk in windows 3-8: however alike their embeddings,
    they are not merged (unconstrained average linkage joined them at any usable cut)."""
    embeddings, seconds = _quiet_voice_beside_a_loud_one()
    assert _count(embeddings, seconds) == 2


def test_the_count_honours_exact_min_and_max() -> None:
    embeddings, seconds = _quiet_voice_beside_a_loud_one()
    assert _count(embeddings, seconds, num_speakers=1) == 1  # the constraint gives way
    assert _count(embeddings, seconds, max_speakers=1) == 1
    assert _count(embeddings, seconds, num_speakers=3) == 3
    assert _count(embeddings, seconds, min_speakers=3) == 3


def test_a_voice_heard_once_joins_the_nearest_speaker_and_twice_is_a_speaker() -> None:
    """A far voice (0.9 away) in one window, 0.6 s: 0.06 s of speech once the ten views of each
    moment are accounted for, under the 0.1 s minimum, so it joins the one speaker. Heard in
    two windows (0.12 s) it is a speaker of its own: a 1.2 s remark in a 30 s AMI excerpt is."""
    rng = np.random.default_rng(11)
    main = _voice(rng)
    other = _voice(rng, near=main, distance=0.9)
    embeddings, seconds = _empty()
    for w in range(WINDOWS):
        embeddings[w, 0], seconds[w, 0] = _stretch(rng, main), 6.0
    embeddings[5, 1], seconds[5, 1] = _stretch(rng, other), 0.6
    assert _count(embeddings, seconds) == 1
    embeddings[6, 1], seconds[6, 1] = _stretch(rng, other), 0.6
    assert _count(embeddings, seconds) == 2


@pytest.mark.parametrize("seed", range(20))
def test_without_constraints_it_is_plain_average_linkage(seed: int) -> None:
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(int(rng.integers(2, 30)), 16))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    alone = np.arange(len(points))  # every point in a window of its own
    tree = linkage(points, method="average", metric="cosine")
    for labels, reference in [
        (cannot_link_clustering(points, alone, threshold=0.9), fcluster(tree, 0.9, "distance")),
        (cannot_link_clustering(points, alone, clusters=3), fcluster(tree, 3, "maxclust")),
    ]:
        same = labels[:, None] == labels[None, :]
        assert (same == (reference[:, None] == reference[None, :])).all()


def test_points_of_one_window_never_share_a_cluster() -> None:
    rng = np.random.default_rng(3)
    points = rng.normal(size=(40, 16))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    windows = rng.integers(0, 12, size=40)
    labels = cannot_link_clustering(points, windows, threshold=1.5)
    for cluster in np.unique(labels):
        members = windows[labels == cluster]
        assert len(set(members.tolist())) == len(members)


def _two_windows_three_voices() -> LocalSegmentation:
    """Two 10 s windows 5 s apart. Voices 0 and 1 talk throughout both; voice 2 talks for 2 s
    in the second window only, under them: averaged over the windows it is never among the
    two most active of a frame."""
    frames = 100
    activity = np.zeros((2, frames, 3), dtype=np.float32)
    activity[:, :, 0] = activity[:, :, 1] = 1.0
    activity[1, 40:60, 2] = 1.0
    return LocalSegmentation(
        starts=np.array([0.0, 5.0]),
        activity=activity,
        duration_s=15.0,
        window_s=10.0,
        frame_step_s=0.1,
        frame_duration_s=0.1,
    )


def test_a_given_count_is_honoured_in_the_turns_not_only_in_the_clusters() -> None:
    """A quiet third person the clustering kept (because the user said three) must not vanish
    when the turns are drawn: it gets the frames where it is most active."""
    segmentation = _two_windows_three_voices()
    labels = np.array([[0, 1, -1], [0, 1, 2]])
    assert {c for *_, c in reconstruct(segmentation, labels)} == {0, 1}  # left to itself
    turns = reconstruct(segmentation, labels, keep=3)
    assert {c for *_, c in turns} == {0, 1, 2}
    third = [(start, end) for start, end, c in turns if c == 2]
    assert third and all(start >= 9.0 - 0.2 and end <= 11.0 + 0.2 for start, end in third)
    # Never more than two at once: the third took the weakest one's place.
    grid = np.zeros((150, 3), dtype=bool)
    for start, end, c in turns:
        grid[round(start * 10) : round(end * 10), c] = True
    assert grid.sum(axis=1).max() <= 2


def test_a_cluster_with_half_a_second_of_speech_is_kept_though_it_never_leads_a_frame() -> None:
    """Automatic count: the clustering found three people; the third (0.6 s of speech, under
    two louder voices) is kept in the turns; a 0.3 s cluster must win frames to count."""
    settings = DiarisationSettings()
    assert clusters_to_keep(settings, [13.8, 2.4, 0.6]) == 3
    assert clusters_to_keep(settings, [13.8, 2.4, 0.3]) == 2
    assert clusters_to_keep(DiarisationSettings(num_speakers=4), [13.8, 2.4, 0.3, 0.1]) == 4
    segmentation = _two_windows_three_voices()
    labels = np.array([[0, 1, -1], [0, 1, 2]])
    keep = clusters_to_keep(settings, [15.0, 15.0, 0.6])
    assert {c for *_, c in reconstruct(segmentation, labels, keep=keep)} == {0, 1, 2}
