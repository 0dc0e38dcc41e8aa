"""Accuracy and calibration of the template-free extractor on the public sets and the
generated set, with the targets of issue 12 beside the figures.

    .venv/bin/python benchmarks/eval_extract.py [--data ../shared/data] [--cache /tmp/ocrcache]
        [--png] [--misses] [--seed 12]

- invoice2data PDFs are read from their text layer (target: every core field ≥ 95%);
- SROIE receipts, both folders (sroie + sroie-more, 75 scans), and with --png the invoice2data
  PNG renders go through RapidOCR after downscaling to at most 2000 px on the long side; OCR
  results are cached by image hash in --cache (targets: total, date ≥ 95%, company ≥ 92%,
  address ≥ 80%);
- the generated set (tasks/samples.py `make_sample_set`, seed --seed: six languages, credit
  notes, several documents per file) is split, extracted and scored per document (target:
  every field ≥ 95%, every file split right);
- reliability: accuracy per confidence band over the public sets (target: values at
  confidence ≥ 0.9 right ≥ 97% of the time), and over everything.

Prints one table per set, then what was excluded from scoring and why.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pymupdf
from PIL import Image
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmflow.tasks.evaluate import (
    TAX_LINES,
    EvalReport,
    Prediction,
    confident_share,
    evaluate,
    record_by_source,
    render_reliability,
    render_report,
    tax_lines_key,
)
from mmflow.tasks.extract import extract_invoice
from mmflow.tasks.models import FIELD_NAMES, DocumentText, PageText, Route, Word
from mmflow.tasks.ocr import ocr_image
from mmflow.tasks.samples import make_sample_set
from mmflow.tasks.split import part_text, split_document
from mmflow.tasks.textlayer import read_text_layer
from mmflow.tasks.verify import verify_extraction

MAX_SIDE = 2000


def ocr_cached(path: Path, cache: Path | None) -> PageText:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    cached = cache / f"{path.stem}-{digest}.json" if cache else None
    if cached is not None and cached.exists():
        return PageText.model_validate_json(cached.read_text())
    with Image.open(path) as image:
        image.load()
        scale = MAX_SIDE / max(image.size)
        if scale < 1:
            size = (round(image.width * scale), round(image.height * scale))
            page = ocr_image(image.resize(size), 1)
        else:
            page = ocr_image(image, 1)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(page.model_dump_json())
    return page


def text_file_page(path: Path) -> PageText:
    """A plain-text invoice laid out as a monospaced page: 6 pt per column, 12 pt per line."""
    words = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        for match in re.finditer(r"\S+", line):
            x0, y0 = match.start() * 6.0, line_no * 12.0
            bbox = (x0, y0, x0 + 6.0 * len(match.group()), y0 + 10.0)
            words.append(Word(text=match.group(), bbox=bbox, line=line_no))
    return PageText(
        page=1,
        width=600,
        height=12.0 * (line_no + 1),
        unit="pt",
        route=Route.TEXT_LAYER,
        engine="text",
        words=words,
    )


def predict(doc: DocumentText, document: str, gold: str) -> Prediction:
    """Extract and verify, as the flow does, so confidences are the ones results carry."""
    extraction, _ = verify_extraction(extract_invoice(doc), doc)
    values = {name: field.value for name, field in extraction.fields.items()}
    confidences = {name: field.confidence for name, field in extraction.fields.items()}
    sources = {name: field.source for name, field in extraction.fields.items()}
    lines = [line.model_dump(mode="json") for line in extraction.tax_lines]
    values[TAX_LINES] = tax_lines_key(lines)
    confidences[TAX_LINES] = min((line.confidence for line in extraction.tax_lines), default=0.0)
    return Prediction(
        document=document, gold=gold, values=values, confidences=confidences, sources=sources
    )


def pdf_pages(path: Path) -> list[PageText]:
    with pymupdf.open(path) as doc:
        return [read_text_layer(page, i + 1) for i, page in enumerate(doc)]


def run_invoice2data(folder: Path, cache: Path | None, png: bool) -> list[EvalReport]:
    predictions = [
        predict(DocumentText(pages=pdf_pages(pdf)), pdf.name, pdf.stem)
        for pdf in sorted(folder.glob("*.pdf"))
    ]
    reports = [evaluate(predictions, folder, only_predicted=True)]
    reports[0].dataset = "invoice2data PDFs (text layer)"
    text_files = [
        predict(DocumentText(pages=[text_file_page(txt)]), txt.name, txt.stem)
        for txt in sorted(folder.glob("*.txt"))
    ]
    if text_files:
        report = evaluate(text_files, folder, only_predicted=True)
        report.dataset = "invoice2data TXT (monospaced layout)"
        reports.append(report)
    if png:
        ocr_predictions = [
            predict(DocumentText(pages=[ocr_cached(p, cache)]), p.name, p.stem)
            for p in sorted(folder.glob("*.png"))
        ]
        report = evaluate(ocr_predictions, folder, only_predicted=True)
        report.dataset = "invoice2data PNG renders (RapidOCR)"
        reports.append(report)
    return reports


def run_sroie(folders: list[Path], cache: Path | None) -> EvalReport:
    """Both SROIE folders scored as one set of receipts."""
    reports = []
    for folder in folders:
        predictions = [
            predict(DocumentText(pages=[ocr_cached(image, cache)]), image.name, image.stem)
            for image in sorted((folder / "img").glob("*.jpg"))
        ]
        reports.append(evaluate(predictions, folder))
    report = merge(reports)
    report.dataset = f"SROIE receipts, {' + '.join(f.name for f in folders)} (RapidOCR)"
    return report


def merge(reports: list[EvalReport]) -> EvalReport:
    """One report over several sets: counts added per field, misses and values pooled."""
    merged = EvalReport(dataset="", documents=sum(r.documents for r in reports))
    for report in reports:
        for name, score in report.fields.items():
            total = merged.fields.setdefault(
                name, score.model_copy(update={"correct": 0, "total": 0, "excluded": 0})
            )
            total.correct += score.correct
            total.total += score.total
            total.excluded += score.excluded
        merged.misses += report.misses
        merged.exclusions += report.exclusions
        merged.scored += report.scored
    return merged


def run_generated(seed: int) -> tuple[EvalReport, list[str]]:
    """The generated set, split like the flow splits it; returns the report and every file
    whose split differs from its truth."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        predictions: list[Prediction] = []
        wrong_splits: list[str] = []
        for path in make_sample_set(folder, seed):
            truth = json.loads(path.with_name(f"{path.stem}.truth.json").read_text())
            text = DocumentText(pages=pdf_pages(path))
            split = split_document(text)
            expected = [tuple(d["pages"]) for d in truth.get("documents", [])] or [
                (1, len(text.pages))
            ]
            if split.parts != expected:
                wrong_splits.append(f"{path.name}: {split.parts} (truth {expected})")
            several = "documents" in truth
            for index in range(len(split.parts)):
                gold = f"{path.stem}#{index + 1}" if several else path.stem
                name = f"{path.name}#{index + 1}" if several else path.name
                predictions.append(predict(part_text(text, split, index), name, gold))
        report = evaluate(predictions, folder)
    report.dataset = f"generated set (seed {seed}): six languages, credit notes, several per file"
    return report, wrong_splits


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=root.parent / "shared" / "data")
    parser.add_argument("--cache", type=Path, default=None, help="folder for cached OCR JSON")
    parser.add_argument("--png", action="store_true", help="also OCR the invoice2data PNGs")
    parser.add_argument("--misses", action="store_true", help="list every miss")
    parser.add_argument("--seed", type=int, default=12, help="seed of the generated set")
    parser.add_argument(
        "--record",
        action="store_true",
        help="print the public record per (field, source) for tasks/extraction/calibration.py",
    )
    args = parser.parse_args()
    console = Console()
    started = time.perf_counter()
    receipts = args.data / "receipts"
    public = [
        *run_invoice2data(args.data / "invoices" / "invoice2data", args.cache, args.png),
        run_sroie([receipts / "sroie", receipts / "sroie-more"], args.cache),
    ]
    generated, wrong_splits = run_generated(args.seed)
    reports = [*public, generated]
    for report in reports:
        console.print(render_report(report))
        reasons = Counter((e.field, e.reason) for e in report.exclusions)
        for (field, reason), count in sorted(reasons.items()):
            console.print(f"  excluded {count} × {field}: {reason}")
        if args.misses:
            for miss in report.misses:
                console.print(
                    f"  miss {miss.document} {miss.field}: "
                    f"expected {miss.expected!r}, got {miss.predicted!r}"
                )
    console.print(
        f"generated set: {len(wrong_splits)} file(s) split wrong"
        + "".join(f"\n  {line}" for line in wrong_splits)
    )
    print_targets(console, public[0], public[-1], generated)
    pooled = merge(public)
    pooled.dataset = "public sets (invoice2data + SROIE)"
    everything = merge([*public, generated])
    everything.dataset = "public sets and the generated set"
    for report in (pooled, everything):
        console.print(render_reliability(report))
    if args.record:
        print("PUBLIC_RECORD: dict[tuple[str, str], tuple[int, int]] = {")
        for (field, source), (right, scored) in record_by_source(pooled).items():
            print(f"    ({field!r}, {source!r}): ({right}, {scored}),")
        print("}")
    share, accuracy = confident_share(pooled)
    if share is not None:
        verdict = "met" if accuracy is not None and accuracy >= 0.97 else "NOT met"
        console.print(
            f"calibration target (public sets): {share:.0%} of values at ≥ 0.9, right "
            f"{'—' if accuracy is None else f'{accuracy:.1%}'} (target ≥ 97%): {verdict}"
        )
    console.print(f"{time.perf_counter() - started:.1f} s")


def print_targets(
    console: Console, invoices: EvalReport, receipts: EvalReport, generated: EvalReport
) -> None:
    """Each target of issue 12 with the figure measured here."""
    rows = [
        *[
            (f"invoice2data {f}", invoices.accuracy(f), 0.95)
            for f in FIELD_NAMES
            if invoices.fields.get(f) and invoices.fields[f].total
        ],
        ("SROIE total", receipts.accuracy("total"), 0.95),
        ("SROIE date", receipts.accuracy("issue_date"), 0.95),
        ("SROIE company", receipts.accuracy("issuer_name"), 0.92),
        ("SROIE address", receipts.accuracy("issuer_address"), 0.80),
        *[(f"generated {f}", generated.accuracy(f), 0.95) for f in generated.fields],
    ]
    for label, accuracy, target in rows:
        shown = "—" if accuracy is None else f"{accuracy:.1%}"
        mark = "ok" if accuracy is not None and accuracy >= target else "BELOW"
        console.print(f"  {label:<34} {shown:>7}  target ≥ {target:.0%}  {mark}")


if __name__ == "__main__":
    main()
