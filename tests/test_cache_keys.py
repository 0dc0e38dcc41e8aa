"""Cache keys are complete by construction: editing a price table, a model definition or a
step's module recomputes exactly the steps that depend on it (issue: a stale cached answer).

Each scenario runs in a fresh process over a copy of the package sources, so an edit here is an
edit a user makes to an installed mmflow; every run shares one step cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mmflow.tasks.samples import SPECS, invoice_pdf
from tests.imagesamples import chart_image, png

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("flows", "tasks", "blocks", "deployments", "cli")

# Runs the invoice and image pipelines inline over one cache; prints which steps were computed.
RUN = """
import json, sys
from prefect.filesystems import LocalFileSystem
from mmflow.flows.invoice import process_invoice
from mmflow.flows.steps import InlineSteps
from mmflow.flows.image import local_steps
from mmflow.tasks.image import ImageOptions
from mmflow.tasks.inputs import read_input, sha256_of
from mmflow.tasks.invoice import InvoiceOptions

pdf, png, cache, run_id = sys.argv[1:5]
computed = {}
with InlineSteps(LocalFileSystem(basepath=cache), run_id) as steps:
    (result,) = process_invoice(
        pdf, sha256_of(read_input(pdf)), steps, InvoiceOptions(), run_id
    ).results
    computed["invoice"] = sorted(s["name"] for s in result.lineage["steps"] if not s["cached"])
    local = local_steps(png, sha256_of(read_input(png)), steps, ImageOptions())
    stamped = [local.validated, local.page, local.text, local.kind, local.injection, local.plan]
    computed["image"] = sorted(s.lineage.name for s in stamped if s.run_id == run_id)
print(json.dumps(computed))
"""


@pytest.fixture()
def source_copy(tmp_path: Path) -> Path:
    """The package sources as `mmflow.*`, importable ahead of the installed (editable) mmflow."""
    tree = tmp_path / "src" / "mmflow"
    tree.mkdir(parents=True)
    (tree / "__init__.py").write_text("")
    for package in PACKAGES:
        skip = shutil.ignore_patterns("__pycache__")
        shutil.copytree(ROOT / package, tree / package, ignore=skip)
    return tree


def _run(source: Path, pdf: Path, png: Path, cache: Path, run_id: str) -> dict[str, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(pdf), str(png), str(cache), run_id],
        env=os.environ | {"PYTHONPATH": str(source.parent)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_edits_recompute_exactly_the_steps_that_depend_on_them(
    source_copy: Path, tmp_path: Path
) -> None:
    pdf = tmp_path / "invoice.pdf"
    pdf.write_bytes(invoice_pdf(next(iter(SPECS.values()))))
    chart = tmp_path / "chart.png"
    chart.write_bytes(png(chart_image(seed=1)))
    cache = tmp_path / "cache"
    every = {
        "invoice": [
            "extract",
            "normalise",
            "read",
            "route",
            "sanity",
            "split",
            "validate",
            "verify",
        ],
        "image": ["classify", "injection-scan", "normalise", "ocr", "plan", "validate"],
    }
    assert _run(source_copy, pdf, chart, cache, "first") == every
    assert _run(source_copy, pdf, chart, cache, "again") == {"invoice": [], "image": []}

    # A price changes: the steps that cost alternatives (route, read, which imports the router,
    # and the image plan) are recomputed, and, because keys chain, the steps after them;
    # validating and normalising, and every image step before the plan, are not.
    prices = source_copy / "tasks" / "prices.toml"
    prices.write_text(prices.read_text().replace("[models.", "# edited\n[models.", 1))
    assert _run(source_copy, pdf, chart, cache, "prices") == {
        "invoice": ["extract", "read", "route", "sanity", "split", "verify"],
        "image": ["plan"],
    }

    # The sanity module changes: only sanity, and nothing of the image pipeline.
    sanity = source_copy / "tasks" / "sanity.py"
    sanity.write_text(sanity.read_text() + "\n# edited\n")
    assert _run(source_copy, pdf, chart, cache, "sanity") == {"invoice": ["sanity"], "image": []}

    # A model every step's result is made of changes: everything is recomputed.
    models = source_copy / "tasks" / "models.py"
    models.write_text(models.read_text() + "\n# edited\n")
    assert _run(source_copy, pdf, chart, cache, "models") == every
