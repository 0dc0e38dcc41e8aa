"""Named speakers: reference clips of known people, matched against the diarised speakers.

`--speaker-profiles DIR` holds one sub-folder per person (`DIR/Alice/*.wav`, any format FFmpeg
reads). Each clip is reduced to one CAM++ embedding of its speech (tasks/audio/speaker_models.py)
and cached by the sha256 of its bytes, so a clip is embedded once, ever; a person's profile is
the mean of their clips'. The clips themselves are only read: nothing of them but the name and
the score reaches the outputs.

A diarised speaker is embedded from the stretches where they talk alone (up to a minute), and
the speakers and profiles are paired one to one for the highest total similarity (Hungarian);
a pair counts only at or above the threshold, otherwise the speaker keeps `SPEAKER_nn`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from mmflow.tasks.audio.models import SAMPLE_RATE, Diarisation, NormalisedAudio, SpeakerTurn
from mmflow.tasks.audio.speaker_models import EMBEDDING_SHA256, embed_speech

# CAM++ cosine similarity at which a speaker is taken to be a profile's person. On the
# development data, pairs of one person's stretches score 0.62-0.88 (medians per recording)
# and different people mostly below 0.55 (docs/diarisation.md).
MATCH_THRESHOLD = 0.55
MAX_SPEAKER_SPEECH_S = 60.0
AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus", ".aac", ".webm", ".mp4"}


class SpeakerProfile(BaseModel):
    """A person's embedding, the mean of their clips' (the clips are known only by hash)."""

    name: str
    embedding: list[float]
    clips: list[str]  # sha256 of each clip's bytes


class ProfileMatch(BaseModel):
    speaker: str  # the diariser's label
    profile: str | None  # the person, when the score reaches the threshold
    score: float  # cosine similarity to the best-paired profile


def _cache_folder() -> Path:
    root = os.environ.get("MMFLOW_MODEL_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "mmflow" / "models"
    return base / "speaker-profiles" / EMBEDDING_SHA256[:12]


def clip_embedding(path: Path) -> tuple[str, np.ndarray]:
    """(sha256 of the clip's bytes, its speech embedding), from the cache when seen before."""
    from mmflow.tasks.audio.normalise import decode_audio
    from mmflow.tasks.audio.segmentation import segment_locally

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    cached = _cache_folder() / f"{digest}.npy"
    if cached.is_file():
        return digest, np.load(cached)
    samples = decode_audio(path)[0]
    # Only the speech of the clip: segmentation-3.0 says where anyone talks.
    segmentation = segment_locally(samples, 5.0)
    heard = segmentation.aggregate(segmentation.activity.max(axis=2, keepdims=True))[:, 0]
    pieces = [
        samples[int(a * SAMPLE_RATE) : int(b * SAMPLE_RATE)]
        for a, b in segmentation.spans(heard >= 0.5)
    ]
    speech = np.concatenate(pieces) if pieces else samples
    vector = embed_speech(speech)
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(f".{os.getpid()}.partial.npy")
    np.save(partial, vector)
    partial.replace(cached)
    return digest, vector


def load_profiles(folder: str | Path) -> list[SpeakerProfile]:
    """One profile per sub-folder of `folder` that holds at least one audio clip."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"--speaker-profiles {root}: not a folder (want one sub-folder a person)")
    profiles = []
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        clips = sorted(p for p in person.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
        if not clips:
            continue
        embedded = [clip_embedding(clip) for clip in clips]
        mean = np.mean([vector for _, vector in embedded], axis=0)
        mean /= np.linalg.norm(mean) + 1e-9
        profiles.append(
            SpeakerProfile(
                name=person.name,
                embedding=[round(float(x), 6) for x in mean],
                clips=[digest for digest, _ in embedded],
            )
        )
    if not profiles:
        raise ValueError(f"--speaker-profiles {root}: no sub-folder holds an audio clip")
    return profiles


def _alone(turns: list[SpeakerTurn], speaker: str) -> list[tuple[float, float]]:
    """The speaker's turns minus every other speaker's turns (overlap mixes two voices)."""
    spans = [(t.start, t.end) for t in turns if t.speaker == speaker]
    for other in (t for t in turns if t.speaker != speaker):
        cut: list[tuple[float, float]] = []
        for a, b in spans:
            if other.end <= a or other.start >= b:
                cut.append((a, b))
                continue
            if other.start > a:
                cut.append((a, other.start))
            if other.end < b:
                cut.append((other.end, b))
        spans = cut
    return spans


def speaker_embeddings(audio: NormalisedAudio, diarisation: Diarisation) -> dict[str, np.ndarray]:
    """One embedding per diarised speaker, from up to a minute of their solo speech."""
    out = {}
    for speaker in diarisation.speakers:
        spans = _alone(diarisation.turns, speaker) or [
            (t.start, t.end) for t in diarisation.turns if t.speaker == speaker
        ]
        pieces, total = [], 0.0
        for a, b in sorted(spans, key=lambda span: span[0] - span[1]):  # longest first
            if total >= MAX_SPEAKER_SPEECH_S:
                break
            pieces.append(audio.between(a, b))
            total += b - a
        samples = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
        if len(samples) >= SAMPLE_RATE // 4:
            out[speaker] = embed_speech(samples)
    return out


def match_profiles(
    embeddings: dict[str, np.ndarray],
    profiles: list[SpeakerProfile],
    threshold: float = MATCH_THRESHOLD,
) -> list[ProfileMatch]:
    """Speakers paired one to one with profiles for the highest total similarity."""
    from scipy.optimize import linear_sum_assignment

    speakers = sorted(embeddings)
    if not speakers or not profiles:
        return [ProfileMatch(speaker=s, profile=None, score=0.0) for s in speakers]
    people = np.array([p.embedding for p in profiles])
    similarity = np.stack([embeddings[s] for s in speakers]) @ people.T
    rows, cols = linear_sum_assignment(-similarity)
    paired = dict(zip(rows.tolist(), cols.tolist(), strict=True))
    matches = []
    for i, speaker in enumerate(speakers):
        j = paired.get(i)
        score = float(similarity[i, j]) if j is not None else float(similarity[i].max())
        name = profiles[j].name if j is not None and score >= threshold else None
        matches.append(ProfileMatch(speaker=speaker, profile=name, score=round(score, 4)))
    return matches


def name_speakers(
    audio: NormalisedAudio,
    diarisation: Diarisation,
    profiles: list[SpeakerProfile],
    threshold: float = MATCH_THRESHOLD,
) -> Diarisation:
    """Turns relabelled with the people matched; `detail["speaker_profiles"]` keeps every
    speaker's best score, named or not."""
    matches = match_profiles(speaker_embeddings(audio, diarisation), profiles, threshold)
    rename = {m.speaker: m.profile for m in matches if m.profile}
    turns = [
        t.model_copy(update={"speaker": rename.get(t.speaker, t.speaker)})
        for t in diarisation.turns
    ]
    detail = {
        **diarisation.detail,
        "speaker_profiles": [m.model_dump() for m in matches],
        "profile_threshold": threshold,
    }
    return diarisation.model_copy(update={"turns": turns, "detail": detail})
