"""The pyannote.audio backend: a pretrained speaker-diarisation pipeline, from a local folder or
from the Hugging Face hub with a token.

pyannote.audio 4 needs torch 2.9.1 (its torchaudio must match torch exactly, and none exists for
the torch 2.13 of `mmflow[audio]`), so it lives in the `pyannote` extra, installed in a venv of
its own. Nothing here imports it until a pipeline is loaded; without it the backend says what to
install. The pipeline hears the whole normalised waveform (passed in memory, so nothing is
decoded twice) and keeps its exclusive diarisation, one speaker at a time, which is what words
are aligned to; its turns are then cut to the speech regions every backend is given, and named
like the other backends' (SPEAKER_00, … in order of first appearance).

The Hugging Face token is a secret, never a parameter: it comes from the caller or `HF_TOKEN`,
reaches only `Pipeline.from_pretrained`, and stays out of cache keys, lineage and outputs.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from mmflow.tasks.audio.models import Diarisation, NormalisedAudio, SpeechRegion
from mmflow.tasks.audio.speakers import DiarisationBackend, DiarisationSettings, named_turns
from mmflow.tasks.errors import MissingDependency, MmflowError
from mmflow.tasks.redaction import register_secret

PYANNOTE_INSTALL = (
    "pip install 'mmflow[pyannote]' in a virtualenv of its own: it pins torch==2.9.1 and "
    "torchaudio==2.9.1, because pyannote.audio cannot import beside the torch 2.13.0 of "
    "mmflow[audio] (from a checkout: `make .venv-pyannote`, then use .venv-pyannote/bin/mmflow)"
)
CONFIG_FILE = "config.yaml"  # what `Pipeline.from_pretrained` reads in a pipeline folder
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")  # owner/name[@revision]


class PipelineUnavailable(MmflowError, ValueError):
    """The pipeline asked for cannot be loaded here (no such folder, not downloadable, offline).

    A ValueError too, so options naming a missing folder fail validation like any bad option.
    """


class PipelineSource(BaseModel, frozen=True):
    """Where a pipeline comes from: a local folder (absolute path) or a hub repository."""

    kind: Literal["local", "hub"]
    location: str  # absolute folder path, or the hub id without revision
    revision: str | None = None

    @property
    def label(self) -> str:
        """For lineage and results: the folder's name or the hub id, never a token."""
        name = Path(self.location).name if self.kind == "local" else self.location
        return f"{name}@{self.revision}" if self.revision else name


def pipeline_source(spec: str) -> PipelineSource:
    """A folder holding config.yaml (or that file itself), else a Hugging Face id; anything
    that looks like a path but is not there is refused here, before any audio is touched."""
    path = Path(spec).expanduser()
    if path.exists():
        folder = path.parent if path.is_file() and path.name == CONFIG_FILE else path
        if not (folder / CONFIG_FILE).is_file():
            raise PipelineUnavailable(
                f"{folder} holds no {CONFIG_FILE}: point --pyannote-pipeline at a pyannote "
                f"pipeline folder (its {CONFIG_FILE} and the checkpoints it names)"
            )
        return PipelineSource(kind="local", location=str(folder.resolve()))
    if HUB_ID.match(spec) and not spec.startswith((".", "~")):
        repo, _, revision = spec.partition("@")
        return PipelineSource(kind="hub", location=repo, revision=revision or None)
    raise PipelineUnavailable(
        f"no pyannote pipeline folder at {spec}: give a folder holding {CONFIG_FILE} (a copy of "
        "a pretrained pipeline), or a Hugging Face id such as "
        "pyannote/speaker-diarization-community-1 with HF_TOKEN set"
    )


def pipeline_label(spec: str) -> str:
    """For lineage: a folder's name or the hub id (with revision), without touching the disk."""
    return Path(spec).name if Path(spec).is_absolute() else spec


def pipeline_fingerprint(source: PipelineSource) -> str:
    """Content hash of a local pipeline folder (so edited weights invalidate cached turns), or
    the hub id and revision (the hub pins content by revision)."""
    digest = hashlib.sha256()
    if source.kind == "hub":
        digest.update(f"{source.location}@{source.revision or 'main'}".encode())
        return digest.hexdigest()[:16]
    folder = Path(source.location)
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if not path.is_file() or any(part.startswith(".") for part in relative.parts):
            continue
        digest.update(str(relative).encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def require_pyannote() -> None:
    """Import pyannote.audio, or say exactly what to install; its telemetry stays off."""
    # pyannote.audio 4 reports usage to otel.pyannote.ai unless told not to: a recording's
    # processing must not call out (and offline machines would only wait). A user's explicit
    # choice in the environment wins.
    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")
    try:
        import pyannote.audio  # noqa: F401
    except (ImportError, OSError) as exc:  # OSError: a torch/torchaudio/FFmpeg library mismatch
        raise MissingDependency(
            "pyannote.audio", f"{PYANNOTE_INSTALL} [{type(exc).__name__}: {exc}]"
        ) from exc


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def load_pipeline(
    source: PipelineSource, token: str | None = None, cache_dir: str | None = None
) -> Any:
    """A ready `pyannote.audio.Pipeline` on the CPU; `token` (else HF_TOKEN) only for the hub."""
    require_pyannote()
    from huggingface_hub.errors import HfHubHTTPError
    from pyannote.audio import Pipeline

    if source.kind == "local":
        pipeline = Pipeline.from_pretrained(source.location)
    else:
        secret = token or os.environ.get("HF_TOKEN") or None
        register_secret(secret)  # a hub error quoting it is redacted wherever it goes
        try:
            pipeline = Pipeline.from_pretrained(
                source.location, revision=source.revision, token=secret, cache_dir=cache_dir
            )
        except (HfHubHTTPError, OSError, ValueError) as exc:
            if _hub_offline():
                raise PipelineUnavailable(
                    f"HF_HUB_OFFLINE is set and {source.label} is not in the Hugging Face cache: "
                    "download it once with network access (and HF_TOKEN), or copy the pipeline "
                    "folder here and pass its path to --pyannote-pipeline"
                ) from exc
            raise PipelineUnavailable(
                f"could not download {source.label} from the Hugging Face hub "
                f"({type(exc).__name__}): accept its conditions at "
                f"https://hf.co/{source.location}, then set HF_TOKEN (or --hf-token), or pass "
                "a local pipeline folder to --pyannote-pipeline"
            ) from exc
    if pipeline is None:  # pyannote returns None when a hub download did not happen
        raise PipelineUnavailable(f"pyannote.audio could not load {source.label}")
    return pipeline


_loaded: dict[str, tuple[Any, threading.Lock]] = {}
_loaded_guard = threading.Lock()


def _pipeline_for(
    source: PipelineSource, fingerprint: str, token: str | None
) -> tuple[Any, threading.Lock]:
    """One loaded pipeline per content per process (loading takes seconds, weights memory),
    with a lock: two worker threads must not run one pipeline's models at the same time."""
    with _loaded_guard:
        if fingerprint not in _loaded:
            _loaded[fingerprint] = (load_pipeline(source, token), threading.Lock())
        return _loaded[fingerprint]


def speaker_bounds(settings: DiarisationSettings) -> dict[str, int]:
    """The speaker options as pyannote's keywords: an exact count, else the allowed range."""
    if settings.num_speakers is not None:
        return {"num_speakers": settings.num_speakers}
    return {"min_speakers": settings.min_speakers, "max_speakers": settings.max_speakers}


def exclusive_annotation(output: Any) -> Any:
    """pyannote 4 returns `DiarizeOutput` (its exclusive diarisation has one speaker at a time,
    what words are aligned to); older or custom pipelines return the annotation itself."""
    for name in ("exclusive_speaker_diarization", "speaker_diarization"):
        annotation = getattr(output, name, None)
        if annotation is not None:
            return annotation
    if hasattr(output, "itertracks"):
        return output
    raise TypeError(f"the pyannote pipeline returned {type(output).__name__}, not an annotation")


def turns_within(
    annotation: Any, regions: list[SpeechRegion], offset_s: float
) -> list[tuple[float, float, str]]:
    """The annotation's turns (waveform seconds) cut to the speech regions (file seconds)."""
    from pyannote.core import Segment, Timeline

    speech = Timeline([Segment(r.start - offset_s, r.end - offset_s) for r in regions]).support()
    kept = annotation.crop(speech, mode="intersection")
    return [
        (float(segment.start) + offset_s, float(segment.end) + offset_s, str(label))
        for segment, _, label in kept.itertracks(yield_label=True)
        if segment.end - segment.start > 1e-3
    ]


def diarise_pyannote(
    audio: NormalisedAudio, regions: list[SpeechRegion], settings: DiarisationSettings
) -> Diarisation:
    """Run the configured pyannote pipeline over the recording; turns inside `regions`."""
    if settings.pyannote_pipeline is None:
        raise PipelineUnavailable(
            "the pyannote backend needs --pyannote-pipeline: a pipeline folder or a hub id"
        )
    source = pipeline_source(settings.pyannote_pipeline)
    fingerprint = settings.pyannote_fingerprint or pipeline_fingerprint(source)
    token = settings.hf_token.get_secret_value() if settings.hf_token is not None else None
    pipeline, lock = _pipeline_for(source, fingerprint, token)

    import torch

    waveform = torch.from_numpy(np.ascontiguousarray(audio.samples, dtype=np.float32))[None]
    bounds = speaker_bounds(settings)
    with lock, torch.inference_mode():
        output = pipeline({"waveform": waveform, "sample_rate": audio.sample_rate}, **bounds)
    annotation = exclusive_annotation(output)
    turns = turns_within(annotation, regions, audio.offset_s)
    detail: dict[str, Any] = {
        "count_method": "pyannote",
        "pipeline": source.label,
        "pipeline_fingerprint": fingerprint,
        "requested": bounds,
        "speakers_found": len(annotation.labels()),
        "speech_s_found": round(float(annotation.get_timeline().support().duration()), 3),
    }
    return named_turns(turns, DiarisationBackend.PYANNOTE.value, detail)
