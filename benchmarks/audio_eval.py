"""Meeting-audio benchmark: WER, DER, edge cases, real-time factor per step and peak memory.

    .venv/bin/python benchmarks/audio_eval.py                  # everything, 30-minute RTF run
    .venv/bin/python benchmarks/audio_eval.py --long-minutes 0 # skip the long recording

Data: ../shared/data/audio (speech: WER; pyannote-sample: DER; edge: silence and music). The
long recording for the RTF estimate is real speech from those folders looped with sox.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mmflow.tasks.audio.align import assign_speakers  # noqa: E402
from mmflow.tasks.audio.denoise import denoise_audio  # noqa: E402
from mmflow.tasks.audio.diarise import DiarisationSettings, diarise, voice_encoder  # noqa: E402
from mmflow.tasks.audio.evaluate import (  # noqa: E402
    diarisation_error_rate,
    load_rttm,
    word_error_rate,
)
from mmflow.tasks.audio.models import Diarisation, Segment, Transcript  # noqa: E402
from mmflow.tasks.audio.normalise import normalise_audio  # noqa: E402
from mmflow.tasks.audio.notes import extract_notes  # noqa: E402
from mmflow.tasks.audio.transcribe import default_whisper, transcribe_many  # noqa: E402
from mmflow.tasks.audio.vad import chunk_speech, detect_speech, regions_to_diarise  # noqa: E402
from mmflow.tasks.audio.validate import validate_audio  # noqa: E402

T = TypeVar("T")


class Timer:
    """Wall-clock and process-CPU seconds per named step.

    On a shared machine wall time includes waiting for the cores; CPU seconds do not, so both
    are printed (all threads' CPU is counted, so CPU/2 is the floor on this 2-core machine).
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def run(self, name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        start, cpu = time.perf_counter(), time.process_time()
        result = fn(*args, **kwargs)
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
        self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - cpu
        return result


def chain(
    paths: list[Path], timer: Timer, settings: DiarisationSettings | None = None
) -> list[tuple[Transcript, Diarisation, list[Segment]]]:
    """The whole meeting chain over several files, transcription batched across them."""
    prepared = []
    for path in paths:
        validated = timer.run("validate", validate_audio, path)
        audio = timer.run("normalise", normalise_audio, validated)
        audio, _ = timer.run("denoise", denoise_audio, audio)
        regions = timer.run("vad", detect_speech, audio)
        prepared.append((audio, regions, chunk_speech(regions)))
    transcripts = timer.run(
        "transcribe", transcribe_many, [(audio, chunks) for audio, _, chunks in prepared]
    )
    out = []
    for (audio, regions, _), transcript in zip(prepared, transcripts, strict=True):
        spoken = regions_to_diarise(regions, transcript.words)
        diarisation = timer.run("diarise", diarise, audio, spoken, settings)
        segments = timer.run("align", assign_speakers, transcript, diarisation)
        timer.run("notes", extract_notes, segments)
        out.append((transcript, diarisation, segments))
    return out


def wer_on_speech(data: Path) -> None:
    folder = data / "speech"
    truth = json.loads((folder / "transcripts.json").read_text())
    names = [n for n, v in truth.items() if not v.get("exclude_from_wer")]
    timer = Timer()
    results = chain([folder / n for n in names], timer)
    hypotheses = [transcript.text for transcript, _, _ in results]
    score = word_error_rate([truth[n]["text"] for n in names], hypotheses)
    print(f"\n## WER on audio/speech ({len(names)} files, normalised, excluded entries skipped)")
    print(
        f"WER {score.wer:.2%}  (S={score.substitutions} D={score.deletions} "
        f"I={score.insertions} of {score.reference_words} words)   target ≤ 8%"
    )
    for name, hypothesis in zip(names, hypotheses, strict=True):
        single = word_error_rate([truth[name]["text"]], [hypothesis]).wer
        print(f"  {name:16} {single:6.1%}  {hypothesis}")
    print("  time per step (s): " + ", ".join(f"{k} {v:.2f}" for k, v in timer.seconds.items()))


def der_on_sample(data: Path) -> None:
    folder = data / "pyannote-sample"
    reference = load_rttm(folder / "sample.rttm")["sample"]
    print("\n## DER on audio/pyannote-sample (speaker count automatic)")
    timer = Timer()
    ((transcript, diarisation, _),) = chain([folder / "sample.wav"], timer)
    score = diarisation_error_rate(reference, diarisation.to_annotation("sample"))
    print(
        f"full (collar 0) {score.full:.2%}  target ≤ 25%   "
        f"forgiving (collar 0.25, overlap skipped) {score.forgiving:.2%}  target ≤ 15%   "
        f"speakers found {score.hypothesis_speakers} (reference {score.reference_speakers})"
    )
    print(f"  count decision: {diarisation.detail}")
    stm = (folder / "sample.stm").read_text().splitlines()
    stm_text = " ".join(" ".join(line.split()[5:]) for line in stm if line.strip())
    print(
        f"  WER vs sample.stm (reference only, not a target): "
        f"{word_error_rate([stm_text], [transcript.text]).wer:.2%}"
    )

    print("  robustness: the one-speaker cut-off and the window length varied")
    print("  (single-speaker files: jfk.flac, spk1's and spk2's sentences joined; want 1 each)")
    audio = normalise_audio(folder / "sample.wav")
    regions = detect_speech(audio)
    singles = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in (
            data / "speech" / "jfk.flac",
            _joined(data / "speech", "spk1_snt", Path(tmp)),
            _joined(data / "speech", "spk2_snt", Path(tmp)),
        ):
            single = normalise_audio(path)
            singles.append((single, detect_speech(single)))
    for cutoff in (0.25, 0.28, 0.30, 0.32, 0.34, 0.36):
        for window, hop in ((1.5, 0.75), (2.0, 1.0), (1.2, 0.6)):
            settings = DiarisationSettings(
                single_speaker_distance=cutoff, window_s=window, hop_s=hop
            )
            result = diarise(audio, regions, settings)
            s = diarisation_error_rate(reference, result.to_annotation("sample"))
            counts = [diarise(a, r, settings).num_speakers for a, r in singles]
            print(
                f"    cut-off {cutoff:.2f} window {window:.1f}s: speakers {result.num_speakers} "
                f"full {s.full:6.2%} forgiving {s.forgiving:6.2%}   single-speaker files → "
                f"{counts}"
            )


def _joined(folder: Path, prefix: str, workdir: Path) -> Path:
    out = workdir / f"{prefix}.wav"
    subprocess.run(["sox", *map(str, sorted(folder.glob(f"{prefix}*.wav"))), str(out)], check=True)
    return out


def edge_cases(data: Path) -> None:
    print("\n## Edge files (a correct pipeline finds no speech)")
    for path in sorted((data / "edge").glob("*.wav")):
        timer = Timer()
        ((transcript, diarisation, segments),) = chain([path], timer)
        print(
            f"  {path.name:18} words {len(transcript.words)}  speakers "
            f"{diarisation.num_speakers}  segments {len(segments)}  dropped "
            f"{[d.reason for d in transcript.dropped]}"
        )


def long_recording(data: Path, minutes: float, workdir: Path) -> None:
    sources = [
        data / "pyannote-sample" / "sample.wav",
        data / "speech" / "jfk.flac",
        *sorted((data / "speech").glob("spk*.wav")),
    ]
    pieces = []
    for i, source in enumerate(sources):
        piece = workdir / f"piece{i}.wav"
        subprocess.run(["sox", str(source), "-r", "16000", "-c", "1", str(piece)], check=True)
        pieces.append(str(piece))
    once = workdir / "once.wav"
    subprocess.run(["sox", *pieces, str(once)], check=True)
    seconds = float(subprocess.check_output(["soxi", "-D", str(once)]))
    repeats = max(0, round(minutes * 60 / seconds) - 1)
    long_path = workdir / "long.wav"
    subprocess.run(["sox", str(once), str(long_path), "repeat", str(repeats)], check=True)
    duration = float(subprocess.check_output(["soxi", "-D", str(long_path)]))
    default_whisper()  # loading is a once-per-process cost, reported apart
    timer = Timer()
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    ((transcript, diarisation, _),) = chain([long_path], timer)
    total = time.perf_counter() - start
    print(f"\n## Real-time factor on a {duration / 60:.1f}-minute recording (real speech looped)")
    cpu = sum(timer.cpu.values())
    print(
        f"whole chain {total:.1f} s wall → RTF {total / duration:.3f}   target ≤ 0.3   "
        f"(CPU {cpu:.1f} s; load average before/after {load_before:.1f}/{os.getloadavg()[0]:.1f})"
    )
    for name, spent in timer.seconds.items():
        print(
            f"  {name:10} {spent:7.1f} s wall  RTF {spent / duration:.4f}   "
            f"CPU {timer.cpu[name]:7.1f} s"
        )
    print(
        f"  words {len(transcript.words)}, speakers {diarisation.num_speakers}, "
        f"count decision {diarisation.detail.get('count_method')}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "audio")
    parser.add_argument("--long-minutes", type=float, default=30.0)
    args = parser.parse_args()
    start = time.perf_counter()
    default_whisper()
    voice_encoder()
    print(
        f"model load, Whisper + resemblyzer (once per process): {time.perf_counter() - start:.1f} s"
    )
    wer_on_speech(args.data)
    der_on_sample(args.data)
    edge_cases(args.data)
    if args.long_minutes > 0:
        with tempfile.TemporaryDirectory() as tmp:
            long_recording(args.data, args.long_minutes, Path(tmp))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak memory (max RSS of this process): {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
