"""Image-token estimates vs the providers' published formulas, and what the image router saves.

Prints:
  (1) for >= 20 image sizes, mmflow's estimate per provider family and detail next to the value
      of the published rule, re-derived here independently from the providers' text (plus the
      worked examples the providers print in their docs);
  (2) on a mixed set (the shared invoices — every PDF page — and receipts, plus generated
      charts, screenshots and photos), the image tokens the router would send per task vs
      "every page and image to the vision model at high detail" (target <= 30%), with the
      classifier's accuracy on the same set.

    .venv/bin/python benchmarks/image_tokens.py [--receipts 25] [--generated 4] [--sizes-only]

Tokens are gpt-4o's (the OpenAI tile formula, 85 + 170 per tile) unless a column says otherwise.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import pymupdf
from rich.console import Console
from rich.table import Table

from mmflow.tasks.estimate import ProviderFamily, estimate_image_tokens
from mmflow.tasks.image import (
    ImageOptions,
    ImageTask,
    classify_page,
    normalise_image,
    plan_image,
    read_image_text,
    validate_image,
)
from mmflow.tasks.inputs import read_input, sha256_of

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
console = Console()

# ---------------------------------------------------------------- (1) published formulas


def published_openai(width: int, height: int, detail: str) -> int:
    """OpenAI's text: low detail costs 85. High: fit within 2048 x 2048, then scale so the
    shortest side is 768 px, count the 512 px squares; 170 each, plus 85."""
    if detail == "low":
        return 85
    w, h = float(width), float(height)
    if max(w, h) > 2048:
        s = 2048 / max(w, h)
        w, h = math.floor(w * s), math.floor(h * s)
    if min(w, h) > 768:
        s = 768 / min(w, h)
        w, h = math.floor(w * s), math.floor(h * s)
    return 85 + 170 * math.ceil(w / 512) * math.ceil(h / 512)


def published_anthropic(width: int, height: int) -> int:
    """Anthropic's text: tokens = width * height / 750, after scaling down (keeping the aspect
    ratio) when the long edge exceeds 1568 px or the image exceeds ~1,600 tokens."""
    s = min(1.0, 1568 / max(width, height))
    w, h = math.floor(width * s), math.floor(height * s)
    if w * h > 1600 * 750:
        s = math.sqrt(1600 * 750 / (w * h))
        w, h = math.floor(w * s), math.floor(h * s)
    return math.ceil(w * h / 750)


def published_gemini(width: int, height: int) -> int:
    """Google's text (Gemini 2.0+): 258 tokens if both sides <= 384 px, else the image is
    cut into 768 x 768 tiles of 258 tokens each."""
    if width <= 384 and height <= 384:
        return 258
    return 258 * math.ceil(width / 768) * math.ceil(height / 768)


# Values printed in the providers' own documentation (size, family/detail, tokens).
DOC_EXAMPLES = [
    ((1024, 1024), "openai:high", 765),
    ((2048, 4096), "openai:high", 1105),
    ((4096, 8192), "openai:low", 85),
    ((200, 200), "anthropic", 54),
    ((1000, 1000), "anthropic", 1334),
    ((1092, 1092), "anthropic", 1590),
    ((384, 384), "gemini", 258),
]

SIZES = [
    (64, 64), (200, 200), (384, 384), (385, 200), (512, 512), (640, 480), (768, 768),
    (800, 600), (1000, 1000), (1024, 1024), (1092, 1092), (1240, 1754), (1280, 720),
    (1600, 1200), (1654, 2339), (1920, 1080), (2048, 2048), (2048, 4096), (2480, 3508),
    (3000, 400), (4000, 3000), (4096, 8192), (463, 1000), (8000, 1000),
]  # fmt: skip


def formula_table() -> bool:
    table = Table(title="(1) image tokens: mmflow estimate / published rule")
    for column in ("size", "openai low", "openai high", "anthropic", "gemini", "match"):
        table.add_column(column, justify="right")
    matches = 0
    for width, height in SIZES:
        pairs = [
            (estimate_image_tokens(ProviderFamily.OPENAI, width, height, "low"),
             published_openai(width, height, "low")),
            (estimate_image_tokens(ProviderFamily.OPENAI, width, height, "high"),
             published_openai(width, height, "high")),
            (estimate_image_tokens(ProviderFamily.ANTHROPIC, width, height),
             published_anthropic(width, height)),
            (estimate_image_tokens(ProviderFamily.GEMINI, width, height),
             published_gemini(width, height)),
        ]  # fmt: skip
        same = all(a == b for a, b in pairs)
        matches += same
        cells = [f"{a} / {b}" if a != b else f"{a}" for a, b in pairs]
        table.add_row(f"{width}x{height}", *cells, "yes" if same else "NO")
    console.print(table)
    console.print(f"{matches}/{len(SIZES)} sizes: every family and detail equal to the rule")
    doc_ok = 0
    for (width, height), which, expected in DOC_EXAMPLES:
        family, _, detail = which.partition(":")
        got = estimate_image_tokens(ProviderFamily(family), width, height, detail or "high")  # type: ignore[arg-type]
        doc_ok += got == expected
        if got != expected:
            console.print(f"[red]doc example {which} {width}x{height}: {got} != {expected}[/]")
    console.print(f"{doc_ok}/{len(DOC_EXAMPLES)} worked examples from the providers' docs equal")
    return matches == len(SIZES) and doc_ok == len(DOC_EXAMPLES)


# ---------------------------------------------------------------- (2) the router on a mixed set


def mixed_set(folder: Path, receipts: int, generated: int) -> list[tuple[Path, str]]:
    """(file, true kind): every shared PDF page as its own PDF, the PNG renders, receipts,
    and generated charts (matplotlib and Pillow), screenshots and photos."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the generators live in tests/
    from tests.imagesamples import chart_image, photo_image, png, screenshot_image

    items: list[tuple[Path, str]] = []
    invoices = SHARED / "invoices" / "invoice2data"
    for pdf_path in sorted(invoices.glob("*.pdf")):
        with pymupdf.open(pdf_path) as pdf:
            for index in range(pdf.page_count):
                one = pymupdf.open()
                one.insert_pdf(pdf, from_page=index, to_page=index)
                target = folder / f"{pdf_path.stem}-p{index + 1}.pdf"
                one.save(target)
                one.close()
                items.append((target, "document"))
    items += [(p, "document") for p in sorted(invoices.glob("*.png"))]
    items += [(p, "document") for p in sorted((SHARED / "receipts/sroie/img").glob("*.jpg"))][
        :receipts
    ]
    for seed in range(generated):
        engine = "pillow" if seed % 2 else "auto"
        for kind, image in (
            ("chart", chart_image(seed, engine=engine)),
            ("photo", photo_image(seed)),
            ("screenshot", screenshot_image(seed)),
        ):
            target = folder / f"{kind}-{seed}.png"
            target.write_bytes(png(image))
            items.append((target, kind))
    return items


def router_table(receipts: int, generated: int) -> bool:
    if not SHARED.is_dir():
        console.print(f"[yellow]shared data not found at {SHARED}; part (2) skipped[/]")
        return True
    tasks = list(ImageTask)
    sent = dict.fromkeys(tasks, 0)
    baseline, right, started = 0, 0, time.perf_counter()
    per_kind: dict[str, list[int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        items = mixed_set(Path(tmp), receipts, generated)
        options = ImageOptions()
        for path, truth in items:
            uri = str(path)
            validated = validate_image(sha256_of(read_input(uri)), uri=uri, limits=options.limits)
            page = normalise_image(validated, options=options.normalise, pdf_dpi=options.pdf_dpi)
            text = read_image_text(page, engine=options.ocr_engine, max_side=options.ocr_max_side)
            kind = classify_page(page, text)
            right += kind.kind.value == truth
            row = per_kind.setdefault(truth, [0, 0, 0])
            row[0] += 1
            for task in tasks:
                plan = plan_image(
                    page, text, kind, options=options.model_copy(update={"task": task})
                )
                sent[task] += plan.image_tokens
                if task is ImageTask.EXTRACT_TEXT:
                    row[1] += plan.image_tokens
            row[2] += plan.full_high_tokens
            baseline += plan.full_high_tokens
            print(f"  {path.name}: {kind.kind.value} ({truth})", file=sys.stderr)
    elapsed = time.perf_counter() - started
    table = Table(title="(2) router vs every page/image at high detail (gpt-4o image tokens)")
    for column in ("task", "router tokens", "all-high tokens", "ratio", "target ≤ 30%"):
        table.add_column(column, justify="right")
    ok = True
    for task in tasks:
        ratio = sent[task] / baseline
        ok &= ratio <= 0.30
        table.add_row(
            task.value,
            str(sent[task]),
            str(baseline),
            f"{ratio:.1%}",
            "yes" if ratio <= 0.3 else "NO",
        )
    console.print(table)
    kinds = Table(title="per true kind (extract-text)")
    for column in ("kind", "items", "router tokens", "all-high tokens"):
        kinds.add_column(column, justify="right")
    for name, (count, routed, full) in sorted(per_kind.items()):
        kinds.add_row(name, str(count), str(routed), str(full))
    console.print(kinds)
    console.print(
        f"{len(items)} items in {elapsed:.0f} s; image-kind accuracy {right}/{len(items)} "
        f"= {right / len(items):.1%}"
    )
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--receipts", type=int, default=25)
    parser.add_argument("--generated", type=int, default=4, help="charts/photos/screens each")
    parser.add_argument("--sizes-only", action="store_true")
    args = parser.parse_args()
    good = formula_table()
    if not args.sizes_only:
        good &= router_table(args.receipts, args.generated)
    raise SystemExit(0 if good else 1)


if __name__ == "__main__":
    main()
