"""The evaluation datasets and tiers: each dataset a declared source of inputs with gold data.

Public sets are read in place from the shared data folder (`--data`, `MMFLOW_EVAL_DATA`, else
`../shared/data` from the working directory; never copied into the repository). Generated sets
are written from a seed into the run's work folder with their truth: the same bytes on every
machine. A dataset that cannot be prepared (its folder is missing) raises `DatasetUnavailable`
with what to do; the run records it as not run, and the gate fails on it.

Tiers (docs/evaluation.md): `core` runs on every change and in CI (minutes on two cores),
`domain` nightly (every public set, the provider-backed image datasets, the judge's agreement
with people), `stress` before a release (bad inputs, turned and degraded scans, noisy speech).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, Field

from mmflow.tasks.eval.results import Tier

if TYPE_CHECKING:
    from mmflow.tasks.samples import InvoiceSpec

DATA_ENV = "MMFLOW_EVAL_DATA"


class DatasetKind(StrEnum):
    """How a dataset is run and scored."""

    INVOICE = "invoice"  # invoice flow → field accuracy, schema compliance
    MEETING = "meeting"  # meeting flow → WER, cpWER, DER, JER
    OCR = "ocr"  # the OCR step on generated scans → CER
    BAD_INPUTS = "bad_inputs"  # invoice flow on the bad-input corpus → expected outcomes
    CHART = "chart"  # image flow (chart task, a provider) → numbers within a tolerance
    DESCRIBE = "describe"  # image flow (describe, a provider) → the judge's rubric score
    JUDGE_AGREEMENT = "judge_agreement"  # the judge on human-labelled pairs → agreement


@dataclass(frozen=True)
class Dataset:
    """One declared dataset: where its inputs and gold come from, and how it is scored."""

    name: str
    kind: DatasetKind
    summary: str
    shared: str | None = None  # folder under the shared data root (public sets)
    inputs: tuple[str, ...] = ()  # globs under that folder
    references: dict[str, str] = field(default_factory=dict)  # rttm/uem/stm/transcripts files
    needs_provider: bool = False  # the image scenario's answers come from a model
    needs_judge: bool = False  # scored by the LLM judge


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            "sample-set",
            DatasetKind.INVOICE,
            "60 generated PDFs in six languages (credit notes, two VAT rates, files of several "
            "documents), truth per document (tasks/samples.py make_sample_set, seed 12)",
        ),
        Dataset(
            "samples",
            DatasetKind.INVOICE,
            "mmflow's five sample inputs: text PDF, scan PDF, sideways phone photo, fax TIFF, "
            "scan stored turned (tasks/samples.py make_samples)",
        ),
        Dataset(
            "invoice2data",
            DatasetKind.INVOICE,
            "11 real invoice PDFs and 4 PNG renders, fields the page shows (invoice2data)",
            shared="invoices/invoice2data",
            inputs=("*.pdf", "*.png"),
        ),
        Dataset(
            "sroie",
            DatasetKind.INVOICE,
            "25 scanned shop receipts: company, date, address, total (ICDAR 2019 SROIE)",
            shared="receipts/sroie",
            inputs=("img/*.jpg",),
        ),
        Dataset(
            "sroie-more",
            DatasetKind.INVOICE,
            "50 more SROIE receipts",
            shared="receipts/sroie-more",
            inputs=("img/*.jpg",),
        ),
        Dataset(
            "scan-text",
            DatasetKind.OCR,
            "first pages of 6 generated documents (one per language) rendered at 150 dpi as "
            "flatbed scans; gold text from the PDF's text layer",
        ),
        Dataset(
            "speech",
            DatasetKind.MEETING,
            "jfk.flac and 12 read sentences from two speakers, reference transcripts",
            shared="audio/speech",
            inputs=("*.wav", "*.flac"),
            references={"transcripts": "transcripts.json"},
        ),
        Dataset(
            "pyannote-sample",
            DatasetKind.MEETING,
            "a 30 s two-speaker call: who spoke when (RTTM) and a speaker-attributed transcript",
            shared="audio/pyannote-sample",
            inputs=("sample.wav",),
            references={"rttm": "sample.rttm", "stm": "sample.stm"},
        ),
        Dataset(
            "ami-train",
            DatasetKind.MEETING,
            "ten 30 s far-field AMI meeting excerpts, 1–4 speakers with overlap (RTTM, UEM)",
            shared="audio/ami-train",
            inputs=("*.wav",),
            references={"rttm": "debug.train.rttm", "uem": "debug.train.uem"},
        ),
        Dataset(
            "bad-inputs",
            DatasetKind.BAD_INPUTS,
            "the bad-input corpus (empty, truncated, encrypted, bombs, wrong types, too many "
            "pages) and two controls, each with the outcome it must end with",
        ),
        Dataset(
            "degraded-scans",
            DatasetKind.INVOICE,
            "12 generated invoices scanned badly (skew, blur, faded toner, noise, JPEG) and "
            "stored turned 0/90/180/270 degrees",
        ),
        Dataset(
            "noisy-speech",
            DatasetKind.MEETING,
            "the speech set with noise mixed in at 10 dB and 5 dB SNR",
            shared="audio/speech",
            references={"transcripts": "transcripts.json"},
        ),
        Dataset(
            "charts",
            DatasetKind.CHART,
            "8 generated bar and line charts with known values (tasks/eval/charts.py)",
            needs_provider=True,
        ),
        Dataset(
            "describe",
            DatasetKind.DESCRIBE,
            "charts and scanned invoices described by the provider, graded by the judge "
            "against what each image is known to show",
            needs_provider=True,
            needs_judge=True,
        ),
        Dataset(
            "judge-agreement",
            DatasetKind.JUDGE_AGREEMENT,
            "12 pairs of chart and description answers with a person's preference and reason "
            "(tasks/eval/judge_labels.json)",
            needs_judge=True,
        ),
    )
}

TIERS: dict[Tier, tuple[str, ...]] = {
    # Core stays within about two minutes on two cores (CI runs it after the tests): the
    # generated sets, six OCR pages and one 30 s call; the slower public sets are nightly.
    Tier.CORE: ("sample-set", "samples", "scan-text", "pyannote-sample"),
    Tier.DOMAIN: (
        "sample-set",
        "samples",
        "invoice2data",
        "sroie",
        "sroie-more",
        "scan-text",
        "speech",
        "pyannote-sample",
        "ami-train",
        "charts",
        "describe",
        "judge-agreement",
    ),
    Tier.STRESS: ("bad-inputs", "degraded-scans", "noisy-speech"),
}


class DatasetUnavailable(Exception):
    """A dataset that cannot be prepared here; the message says what is missing."""


def tier_datasets(tier: Tier, only: list[str] | None = None) -> list[Dataset]:
    """The tier's datasets, or those of `only` (each must be declared; any tier's)."""
    if not only:
        return [DATASETS[name] for name in TIERS[tier]]
    unknown = [name for name in only if name not in DATASETS]
    if unknown:
        raise ValueError(
            f"unknown dataset(s) {', '.join(unknown)}; the datasets are: {', '.join(DATASETS)}"
        )
    return [DATASETS[name] for name in only]


def data_root(explicit: str | None = None) -> Path:
    """Where the public sets are: as given, else $MMFLOW_EVAL_DATA, else ../shared/data."""
    return Path(explicit or os.environ.get(DATA_ENV) or Path.cwd().parent / "shared" / "data")


class PreparedDataset(BaseModel):
    """A dataset ready to run: its inputs, where its gold is, and what each input must give."""

    name: str
    kind: DatasetKind
    inputs: list[str]
    gold: Path  # folder the scorer reads its gold from
    references: dict[str, Path] = Field(default_factory=dict)
    expected: dict[str, str] = Field(default_factory=dict)  # bad inputs: file → outcome


def _shared_folder(dataset: Dataset, root: Path) -> Path:
    assert dataset.shared is not None
    folder = root / dataset.shared
    if not folder.is_dir():
        raise DatasetUnavailable(
            f"{folder} is missing: give the shared data folder with --data or "
            f"{DATA_ENV} (it holds {dataset.shared})"
        )
    return folder


def _public(dataset: Dataset, root: Path) -> PreparedDataset:
    folder = _shared_folder(dataset, root)
    inputs = sorted({str(p) for pattern in dataset.inputs for p in folder.glob(pattern)})
    if not inputs:
        raise DatasetUnavailable(f"{folder} holds no inputs ({', '.join(dataset.inputs)})")
    references = {key: folder / name for key, name in dataset.references.items()}
    missing = [str(p) for p in references.values() if not p.is_file()]
    if missing:
        raise DatasetUnavailable(f"reference files missing: {', '.join(missing)}")
    return PreparedDataset(
        name=dataset.name,
        kind=dataset.kind,
        inputs=inputs,
        gold=folder,
        references=references,
    )


def prepare(dataset: Dataset, root: Path, work: Path) -> PreparedDataset:
    """Inputs and gold of one dataset: public ones in place, generated ones written to `work`."""
    if dataset.shared is not None and dataset.name != "noisy-speech":
        return _public(dataset, root)
    work.mkdir(parents=True, exist_ok=True)
    build = _GENERATORS[dataset.name]
    return build(dataset, root, work)


# ---------------------------------------------------------------- generated sets


def _sample_set(dataset: Dataset, root: Path, work: Path) -> PreparedDataset:
    from mmflow.tasks.samples import make_sample_set

    paths = make_sample_set(work, seed=12)
    return PreparedDataset(
        name=dataset.name, kind=dataset.kind, inputs=[str(p) for p in paths], gold=work
    )


def _samples(dataset: Dataset, root: Path, work: Path) -> PreparedDataset:
    from mmflow.tasks.samples import make_samples

    paths = make_samples(work)
    return PreparedDataset(
        name=dataset.name, kind=dataset.kind, inputs=[str(p) for p in paths], gold=work
    )


def _single_documents(count_per_language: int) -> list[tuple[str, InvoiceSpec]]:
    """The first single-document files of the generated set, `count_per_language` each."""
    from mmflow.tasks.samples import sample_set_documents

    taken: dict[str, int] = {}
    chosen = []
    for entry in sample_set_documents(seed=12):
        language = entry.name.split("-")[0]
        if len(entry.specs) == 1 and taken.get(language, 0) < count_per_language:
            taken[language] = taken.get(language, 0) + 1
            chosen.append((entry.name, entry.specs[0]))
    return chosen


def _scan_text(dataset: Dataset, root: Path, work: Path) -> PreparedDataset:
    """Each chosen document's first page as a 150 dpi scan (PNG) and its PDF beside it: the
    scorer reads the gold text from the PDF's text layer."""
    from mmflow.tasks.samples import generated_pdf, rasterise, scanned

    rng = np.random.default_rng(150)
    inputs = []
    for name, spec in _single_documents(1):
        pdf = generated_pdf(spec)
        (work / f"{name}.pdf").write_bytes(pdf)
        scan = scanned(rasterise(pdf, dpi=150)[0], rng, skew_deg=float(rng.uniform(-0.6, 0.6)))
        path = work / f"{name}.png"
        scan.save(path)
        inputs.append(str(path))
    return PreparedDataset(name=dataset.name, kind=dataset.kind, inputs=inputs, gold=work)


def _degraded_scans(dataset: Dataset, root: Path, work: Path) -> PreparedDataset:
    """Bad scans of generated invoices, stored turned; their truth beside them."""
    from mmflow.tasks.eval.degrade import TURNS, badly_scanned, jpeg_bytes, turned
    from mmflow.tasks.samples import generated_pdf, rasterise, truth_of

    rng = np.random.default_rng(270)
    inputs = []
    for n, (name, spec) in enumerate(_single_documents(2)):
        page = badly_scanned(rasterise(generated_pdf(spec), dpi=150)[0], rng)
        turn = TURNS[n % len(TURNS)]
        path = work / f"{name}-turned{turn}.jpg"
        path.write_bytes(jpeg_bytes(turned(page, turn), quality=int(rng.integers(35, 60))))
        truth = truth_of(spec) | {"form": "degraded_scan", "rotation": turn}
        (work / f"{path.stem}.truth.json").write_text(
            json.dumps(truth, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        inputs.append(str(path))
    return PreparedDataset(name=dataset.name, kind=dataset.kind, inputs=inputs, gold=work)


def _bad_inputs(dataset: Dataset, root: Path, work: Path) -> PreparedDataset:
    from mmflow.tasks.eval.bad_inputs import build_bad_corpus

    expected = build_bad_corpus(work)
    return PreparedDataset(
        name=dataset.name,
        kind=dataset.kind,
        inputs=[str(work / name) for name in expected],
        gold=work,
        expected=expected,
    )


NOISE_LEVELS_DB = (10.0, 5.0)


def _noisy_speech(dataset: Dataset, root: Path, work: Path) -> PreparedDataset:
    """Every clip of the speech set at each noise level, with the transcripts renamed to
    match (`jfk.flac` → `jfk-snr10.wav`)."""
    from mmflow.tasks.eval.degrade import noisy_speech

    folder = _shared_folder(dataset, root)
    transcripts = json.loads((folder / "transcripts.json").read_text(encoding="utf-8"))
    rng = np.random.default_rng(510)
    inputs, renamed = [], {}
    for name, entry in sorted(transcripts.items()):
        for snr in NOISE_LEVELS_DB:
            target = work / f"{Path(name).stem}-snr{snr:g}.wav"
            noisy_speech(folder / name, target, snr, rng)
            inputs.append(str(target))
            renamed[target.name] = entry
    references = work / "transcripts.json"
    references.write_text(json.dumps(renamed, indent=1) + "\n", encoding="utf-8")
    return PreparedDataset(
        name=dataset.name,
        kind=dataset.kind,
        inputs=inputs,
        gold=work,
        references={"transcripts": references},
    )


def _charts(dataset: Dataset, root: Path, work: Path) -> PreparedDataset:
    from mmflow.tasks.eval.charts import make_chart_set

    paths = make_chart_set(work, count=8)
    return PreparedDataset(
        name=dataset.name, kind=dataset.kind, inputs=[str(p) for p in paths], gold=work
    )


def _describe(dataset: Dataset, root: Path, work: Path) -> PreparedDataset:
    """Four charts and two scanned invoices; what each shows is written beside it
    (`<stem>.shows.txt`) for the judge."""
    from mmflow.tasks.eval.charts import chart_truth, draw_chart
    from mmflow.tasks.samples import generated_pdf, rasterise, scanned, truth_of

    inputs = []
    for seed in (60, 61, 62, 63):
        truth = chart_truth(seed)
        path = draw_chart(truth, work / f"chart-{seed}.png")
        values = "; ".join(
            f"{name}: " + ", ".join(f"{label} {value:g}" for label, value in points.items())
            for name, points in truth.series.items()
        )
        shows = f"A {truth.chart_type} chart titled '{truth.title}' plotting {values}."
        (work / f"{path.stem}.shows.txt").write_text(shows + "\n", encoding="utf-8")
        inputs.append(str(path))
    rng = np.random.default_rng(61)
    for name, spec in _single_documents(1)[:2]:
        page = scanned(rasterise(generated_pdf(spec), dpi=120)[0], rng)
        path = work / f"{name}.png"
        page.save(path)
        known = truth_of(spec)
        shows = (
            f"A scanned {known.get('document_type') or 'invoice'} from {known['issuer_name']} "
            f"to {known['buyer_name']}, number {known['invoice_number']}, dated "
            f"{known['issue_date']}, total {known['total']} {known['currency']}, with a table "
            "of line items."
        )
        (work / f"{path.stem}.shows.txt").write_text(shows + "\n", encoding="utf-8")
        inputs.append(str(path))
    return PreparedDataset(name=dataset.name, kind=dataset.kind, inputs=inputs, gold=work)


def _judge_agreement(dataset: Dataset, root: Path, work: Path) -> PreparedDataset:
    from mmflow.tasks.eval.judge import LABELS_PATH

    target = work / LABELS_PATH.name
    shutil.copyfile(LABELS_PATH, target)
    return PreparedDataset(name=dataset.name, kind=dataset.kind, inputs=[str(target)], gold=work)


_GENERATORS = {
    "sample-set": _sample_set,
    "samples": _samples,
    "scan-text": _scan_text,
    "degraded-scans": _degraded_scans,
    "bad-inputs": _bad_inputs,
    "noisy-speech": _noisy_speech,
    "charts": _charts,
    "describe": _describe,
    "judge-agreement": _judge_agreement,
}
