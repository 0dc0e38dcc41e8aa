"""Meeting-audio benchmark: DER/JER/speaker count/cpWER per file and overall for every
diarisation backend, WER, edge cases, and the real-time factor and peak memory of the whole
chain on a 30-minute recording.

    nice -n 10 .venv/bin/python benchmarks/audio_eval.py                  # everything
    nice -n 10 .venv/bin/python benchmarks/audio_eval.py --long-minutes 0 # skip the long run

Data: ../shared/data/audio (pyannote-sample and ami-train: DER; pyannote-sample's sample.stm:
cpWER; speech: WER; edge: silence and music). Each file is transcribed once; every backend
diarises the same speech regions. The long recording is real speech from those folders looped
with sox, run in a child process so its peak memory is its own.
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
from mmflow.tasks.audio.diarise import (  # noqa: E402
    DiarisationBackend,
    DiarisationSettings,
    diarise,
)
from mmflow.tasks.audio.evaluate import (  # noqa: E402
    DiarisationMetrics,
    cp_word_error_rate,
    load_rttm,
    load_stm,
    load_uem,
    word_error_rate,
)
from mmflow.tasks.audio.models import (  # noqa: E402
    Diarisation,
    NormalisedAudio,
    Segment,
    SpeechRegion,
    Transcript,
)
from mmflow.tasks.audio.normalise import normalise_audio  # noqa: E402
from mmflow.tasks.audio.notes import extract_notes  # noqa: E402
from mmflow.tasks.audio.transcribe import default_whisper, transcribe_many  # noqa: E402
from mmflow.tasks.audio.vad import chunk_speech, detect_speech, regions_to_diarise  # noqa: E402
from mmflow.tasks.audio.validate import validate_audio  # noqa: E402

T = TypeVar("T")
BACKENDS = (DiarisationBackend.SEGMENTATION, DiarisationBackend.EMBEDDINGS)


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


Heard = tuple[NormalisedAudio, list[SpeechRegion], Transcript]


def hear(paths: list[Path], timer: Timer) -> list[Heard]:
    """validate → normalise → denoise → VAD → transcribe (batched across the files)."""
    prepared = []
    for path in paths:
        validated = timer.run("validate", validate_audio, path)
        audio = timer.run("normalise", normalise_audio, validated)
        audio, _ = timer.run("denoise", denoise_audio, audio)
        regions = timer.run("vad", detect_speech, audio)
        prepared.append((audio, regions))
    transcripts = timer.run(
        "transcribe",
        transcribe_many,
        [(audio, chunk_speech(regions)) for audio, regions in prepared],
    )
    return [(a, r, t) for (a, r), t in zip(prepared, transcripts, strict=True)]


def attribute(
    heard: Heard, timer: Timer, settings: DiarisationSettings
) -> tuple[Diarisation, list[Segment]]:
    """diarise → align → notes, as the meeting flow does."""
    audio, regions, transcript = heard
    spoken = regions_to_diarise(regions, transcript.words)
    diarisation = timer.run("diarise", diarise, audio, spoken, settings)
    segments = timer.run("align", assign_speakers, transcript, diarisation)
    timer.run("notes", extract_notes, segments)
    return diarisation, segments


def _percent(value: float | None) -> str:
    return f"{value:7.2%}" if value is not None else "      —"


def der_tables(data: Path) -> None:
    """Per file and overall, for every backend, on pyannote-sample and ami-train."""
    ami = data / "ami-train"
    references = load_rttm(ami / "debug.train.rttm")
    uems = load_uem(ami / "debug.train.uem")
    files = {uri: ami / f"{uri}.wav" for uri in sorted(references)}
    sample = data / "pyannote-sample"
    references["sample"] = load_rttm(sample / "sample.rttm")["sample"]
    files["sample"] = sample / "sample.wav"
    stm = load_stm(sample / "sample.stm")
    timer = Timer()
    heard = dict(zip(files, hear(list(files.values()), timer), strict=True))
    speech_s = sum(a.duration_s for a, _, _ in heard.values())
    print(f"\n## Diarisation on the public sets ({len(files)} files, {speech_s:.0f} s)")
    print("DER full: collar 0, overlap scored; forgiving: 0.5 s collar, overlap skipped")
    for backend in BACKENDS:
        settings = DiarisationSettings(backend=backend)
        per_set = {"pyannote-sample": DiarisationMetrics(), "ami-train": DiarisationMetrics()}
        backend_timer = Timer()
        print(f"\n### backend {backend.value}")
        print(
            f"{'file':8} {'full':>7} {'forgiv.':>7} {'JER':>7} {'spk':>5} {'cpWER':>7}  "
            "overlapped words   (spk: speakers found/true)"
        )
        for uri, item in heard.items():
            diarisation, segments = attribute(item, backend_timer, settings)
            metrics = per_set["pyannote-sample" if uri == "sample" else "ami-train"]
            score = metrics.add(references[uri], diarisation.to_annotation(uri), uems.get(uri))
            cpwer = None
            if uri in stm:
                spoken: dict[str, list[str]] = {}
                for segment in segments:
                    spoken.setdefault(segment.speaker or "?", []).append(segment.text)
                hypothesis = {k: " ".join(v) for k, v in spoken.items()}
                cpwer = cp_word_error_rate(stm[uri], hypothesis).cpwer
            overlapped = sum(w.overlap for s in segments for w in s.words)
            count = f"{score.hypothesis_speakers:>2}/{score.reference_speakers:<2}"
            print(
                f"{uri:8} {_percent(score.full)} {_percent(score.forgiving)} "
                f"{_percent(score.jer)} {count} {_percent(cpwer)}  {overlapped}"
            )
        for name, metrics in per_set.items():
            total = metrics.total()
            print(
                f"overall {name}: full {total['full']:.2%}  forgiving {total['forgiving']:.2%}  "
                f"JER {total['jer']:.2%}  speaker count right {total['count_right']:.0f}/"
                f"{total['recordings']:.0f}"
            )
        seconds = backend_timer.seconds.get("diarise", 0.0)
        print(
            f"diarise: {seconds:.1f} s wall (RTF {seconds / speech_s:.3f}), "
            f"{backend_timer.cpu.get('diarise', 0.0):.1f} s CPU"
        )
    print("targets: sample full ≤ 15%, forgiving ≤ 5%, 2/2 speakers; ami-train full ≤ 35%,")
    print("         forgiving ≤ 15%, speaker count right on ≥ 7 of 10")


def wer_on_speech(data: Path) -> None:
    folder = data / "speech"
    truth = json.loads((folder / "transcripts.json").read_text())
    names = [n for n, v in truth.items() if not v.get("exclude_from_wer")]
    timer = Timer()
    hypotheses = [t.text for _, _, t in hear([folder / n for n in names], timer)]
    score = word_error_rate([truth[n]["text"] for n in names], hypotheses)
    print(f"\n## WER on audio/speech ({len(names)} files, normalised, excluded entries skipped)")
    print(
        f"WER {score.wer:.2%}  (S={score.substitutions} D={score.deletions} "
        f"I={score.insertions} of {score.reference_words} words)   target ≤ 8%"
    )
    for name, hypothesis in zip(names, hypotheses, strict=True):
        single = word_error_rate([truth[name]["text"]], [hypothesis]).wer
        print(f"  {name:16} {single:6.1%}  {hypothesis}")


def edge_cases(data: Path) -> None:
    print("\n## Edge files (a correct pipeline finds no words and no speakers)")
    paths = sorted((data / "edge").glob("*.wav"))
    for path, heard in zip(paths, hear(paths, Timer()), strict=True):
        for backend in BACKENDS:
            diarisation, segments = attribute(heard, Timer(), DiarisationSettings(backend=backend))
            print(
                f"  {path.name:18} {backend.value:12} words {len(heard[2].words)}  speakers "
                f"{diarisation.num_speakers}  segments {len(segments)}  dropped "
                f"{[d.reason for d in heard[2].dropped]}"
            )


def build_long_recording(data: Path, minutes: float, workdir: Path) -> Path:
    sources = [
        *sorted((data / "ami-train").glob("trn*.wav")),
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
    return long_path


def long_recording(path: Path) -> None:
    """The whole chain on one long file (run in a child process: its peak RSS is its own)."""
    start = time.perf_counter()
    default_whisper()
    load_s = time.perf_counter() - start
    timer = Timer()
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    ((audio, regions, transcript),) = hear([path], timer)
    diarisation, _ = attribute((audio, regions, transcript), timer, DiarisationSettings())
    total = time.perf_counter() - start
    duration = audio.original_duration_s
    cpu = sum(timer.cpu.values())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n## Whole chain on a {duration / 60:.1f}-minute recording (real speech looped)")
    print(
        f"RTF {total / duration:.3f} ({total:.1f} s wall)   target ≤ 0.3   peak memory "
        f"{peak_mb:.0f} MB   target ≤ 3072 MB   (CPU {cpu:.1f} s; Whisper load {load_s:.1f} s "
        f"apart; load average before/after {load_before:.1f}/{os.getloadavg()[0]:.1f})"
    )
    for name, spent in timer.seconds.items():
        print(
            f"  {name:10} {spent:7.1f} s wall  RTF {spent / duration:.4f}   "
            f"CPU {timer.cpu[name]:7.1f} s"
        )
    print(
        f"  words {len(transcript.words)}, speakers {diarisation.num_speakers}, "
        f"windows {diarisation.detail.get('windows')} every "
        f"{diarisation.detail.get('window_step_s')} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "audio")
    parser.add_argument("--long-minutes", type=float, default=30.0)
    parser.add_argument("--long-only", type=Path, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.long_only:
        long_recording(args.long_only)
        return
    der_tables(args.data)
    wer_on_speech(args.data)
    edge_cases(args.data)
    if args.long_minutes > 0:
        with tempfile.TemporaryDirectory() as tmp:
            path = build_long_recording(args.data, args.long_minutes, Path(tmp))
            subprocess.run([sys.executable, __file__, "--long-only", str(path)], check=True)


if __name__ == "__main__":
    main()
