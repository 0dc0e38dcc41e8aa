"""Text-route extractor speed, without Prefect: documents/s of reading the text layer,
extracting and verifying, on the same generated text PDFs the throughput benchmark uses.

    .venv/bin/python benchmarks/extract_speed.py [--docs 200] [--repeat 5] [--tree PATH]
        [--profile N]

The flow's documents/s (benchmarks/invoice_throughput.py, measure (c)) also counts Prefect,
the output files and the manifest, and on a shared machine its wall time swings with the
load; this isolates the extractor and reports CPU time as well as wall time, best of
--repeat. --tree runs an older checkout's extractor on the same PDFs (a checkout from before
the mmflow namespace, whose packages are the top-level `tasks`), for a before/after ratio:

    .venv/bin/python benchmarks/extract_speed.py --tree /tmp/wt-old

--profile N prints the N most expensive functions (cProfile, cumulative) of one pass.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymupdf
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmflow.tasks.samples import numbered_invoices


def load_pipeline(tree: Path | None) -> Callable[[bytes], Any]:
    """read text layer → extract → verify, from this checkout or from `tree`'s `tasks`."""
    package = "mmflow.tasks"
    if tree is not None:
        sys.path.insert(0, str(tree))
        package = "tasks"
    textlayer = importlib.import_module(f"{package}.textlayer")
    models = importlib.import_module(f"{package}.models")
    extract = importlib.import_module(f"{package}.extract")
    verify = importlib.import_module(f"{package}.verify")

    def run(pdf: bytes) -> Any:
        with pymupdf.open(stream=pdf, filetype="pdf") as doc:
            pages = [textlayer.read_text_layer(page, i + 1) for i, page in enumerate(doc)]
        text = models.DocumentText(pages=pages)
        return verify.verify_extraction(extract.extract_invoice(text), text)

    return run


def timed_pass(run: Callable[[bytes], Any], pdfs: list[bytes]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one pass over every PDF."""
    wall, cpu = time.perf_counter(), time.process_time()
    for pdf in pdfs:
        run(pdf)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tree", type=Path, default=None, help="an older checkout to time")
    parser.add_argument("--profile", type=int, default=0, help="print the N costliest functions")
    args = parser.parse_args()
    console = Console()
    pdfs = [pdf for _, pdf in numbered_invoices(args.docs)]
    run = load_pipeline(args.tree)
    run(pdfs[0])  # imports, compiled patterns, font caches: not counted
    passes = [timed_pass(run, pdfs) for _ in range(args.repeat)]
    wall = min(w for w, _ in passes)
    cpu = min(c for _, c in passes)
    table = Table(title=f"text-route extractor, {args.tree or 'this checkout'}")
    for column in ("measure", "value"):
        table.add_column(column)
    table.add_row("documents", str(args.docs))
    table.add_row(f"best of {args.repeat}: wall (s)", f"{wall:.2f}")
    table.add_row(f"best of {args.repeat}: CPU (s)", f"{cpu:.2f}")
    table.add_row("documents/s (wall)", f"{args.docs / wall:.1f}")
    table.add_row("documents/s (CPU)", f"{args.docs / cpu:.1f}")
    console.print(table)
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(timed_pass, run, pdfs)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.profile)


if __name__ == "__main__":
    main()
