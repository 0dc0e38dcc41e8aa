"""Accuracy of the template-free extractor on the shared invoice2data and SROIE sets.

    .venv/bin/python benchmarks/eval_extract.py [--data ../shared/data] [--cache /tmp/ocrcache]
        [--png] [--misses]

invoice2data PDFs are read from their text layer; SROIE receipts (and, with --png, the
invoice2data PNG renders) go through RapidOCR after downscaling to at most 2000 px on the long
side. OCR results are cached by image hash in --cache so repeated runs skip OCR. Prints one
per-field accuracy table per set, then what was excluded from scoring and why.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import time
from collections import Counter
from pathlib import Path

import pymupdf
from PIL import Image
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmflow.tasks.evaluate import EvalReport, evaluate, render_report
from mmflow.tasks.extract import extract_invoice
from mmflow.tasks.models import DocumentText, PageText, Route, Word
from mmflow.tasks.ocr import ocr_image
from mmflow.tasks.textlayer import read_text_layer

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


def predict(doc: DocumentText) -> dict[str, str | None]:
    return {name: field.value for name, field in extract_invoice(doc).fields.items()}


def run_invoice2data(folder: Path, cache: Path | None, png: bool) -> list[EvalReport]:
    predictions = {}
    for pdf in sorted(folder.glob("*.pdf")):
        with pymupdf.open(pdf) as doc:
            pages = [read_text_layer(page, i + 1) for i, page in enumerate(doc)]
        predictions[pdf.stem] = predict(DocumentText(pages=pages))
    for txt in sorted(folder.glob("*.txt")):
        predictions[txt.stem] = predict(DocumentText(pages=[text_file_page(txt)]))
    reports = [evaluate(predictions, folder)]
    reports[0].dataset = "invoice2data PDFs (text layer) and TXT (monospaced layout)"
    if png:
        ocr_predictions = {
            p.stem: predict(DocumentText(pages=[ocr_cached(p, cache)]))
            for p in sorted(folder.glob("*.png"))
        }
        report = evaluate(ocr_predictions, folder, only_predicted=True)
        report.dataset = "invoice2data PNG renders (RapidOCR)"
        reports.append(report)
    return reports


def run_sroie(folder: Path, cache: Path | None) -> EvalReport:
    predictions = {
        image.stem: predict(DocumentText(pages=[ocr_cached(image, cache)]))
        for image in sorted((folder / "img").glob("*.jpg"))
    }
    report = evaluate(predictions, folder)
    report.dataset = "SROIE receipts (RapidOCR)"
    return report


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=root.parent / "shared" / "data")
    parser.add_argument("--cache", type=Path, default=None, help="folder for cached OCR JSON")
    parser.add_argument("--png", action="store_true", help="also OCR the invoice2data PNGs")
    parser.add_argument("--misses", action="store_true", help="list every miss")
    args = parser.parse_args()
    console = Console()
    started = time.perf_counter()
    reports = [
        *run_invoice2data(args.data / "invoices" / "invoice2data", args.cache, args.png),
        run_sroie(args.data / "receipts" / "sroie", args.cache),
    ]
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
    console.print(f"{time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
