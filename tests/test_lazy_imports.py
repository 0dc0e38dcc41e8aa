"""`mmflow --help` and a text-PDF invoice run load no library they do not use.

Each import below costs from a few hundred milliseconds to seconds per command on a small
machine (benchmarks/one_document.py), and a text PDF needs no OCR, no model and no provider.
The CLI runs in a fresh process (a test process has imported half of them already), then
prints what `sys.modules` holds.

pandera is not loaded by a run either: the line-items table is checked by plain rules and
written with pyarrow (tasks/line_items_table.py). pandas still is: pyarrow imports it the first
time it builds an array, to ask whether its input is a pandas object.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmflow.tasks.samples import numbered_invoices, write_files

HEAVY = (
    "rapidocr",  # OCR engines
    "pytesseract",
    "onnxruntime",
    "cv2",
    "torch",
    "faster_whisper",
    "ctranslate2",
    "openai",  # providers' SDKs
    "anthropic",
    "pymupdf.layout",  # PyMuPDF's layout analyser (tasks/pdf_library.py)
    "pymupdf4llm",
)

DRIVER = """
import json, sys
from mmflow.cli.app import app
try:
    app(sys.argv[2:])
except SystemExit as end:
    code = end.code
else:
    code = 0
with open(sys.argv[1], "w") as report:
    json.dump({"code": code, "modules": sorted(sys.modules)}, report)
"""


def _modules_after(args: list[str], tmp_path: Path, **env: str) -> set[str]:
    """The modules a fresh process holds after the CLI ran `args` in it (which must succeed)."""
    report = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(report), *args],
        env=os.environ | env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert report.exists(), done.stderr
    result = json.loads(report.read_text())
    assert result["code"] in (0, None), done.stdout + done.stderr
    return set(result["modules"])


def _loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return [name for name in names if name in modules]


def test_help_imports_neither_prefect_nor_any_heavy_library(tmp_path: Path) -> None:
    modules = _modules_after(["--help"], tmp_path)
    assert _loaded(modules, (*HEAVY, "pandas", "pandera", "prefect")) == []


@pytest.mark.usefixtures("prefect_server")
def test_a_text_pdf_run_imports_no_ocr_model_or_provider(
    prefect_server: str, tmp_path: Path
) -> None:
    [pdf] = write_files(tmp_path / "in", numbered_invoices(1))
    out = tmp_path / "out"
    modules = _modules_after(
        ["-q", "run", "invoice", str(pdf), "--out", str(out)],
        tmp_path,
        PREFECT_API_URL=prefect_server,
    )
    assert (out / "manifest.jsonl").exists() and (out / "line_items.parquet").exists()
    assert _loaded(modules, (*HEAVY, "pandera")) == []
