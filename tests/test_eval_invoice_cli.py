"""`mmflow eval invoice OUT --gold DIR` after `mmflow run invoice DIR`, as README shows it.

A gold folder holds `X.json` (the gold) beside `X.pdf` and `X.png`: the run rejects the gold
file, so the documents' outputs are `X-<hash8>.json`. Eval must still find them (through the
manifest), and an eval that scores nothing must fail, not pass.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmflow.flows.runs import RunSettings
from mmflow.tasks.samples import SPECS, invoice_pdf, rasterise

pytestmark = pytest.mark.slow


def _eval(out: Path, gold: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mmflow.cli", "eval", "invoice", str(out), "--gold", str(gold)],
        capture_output=True,
        text=True,
        env=dict(os.environ, COLUMNS="200"),
        timeout=300,
    )


@pytest.fixture(scope="module")
def gold_and_run(
    prefect_server: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    from mmflow.flows.invoice import invoice_flow

    gold = tmp_path_factory.mktemp("gold")
    spec = SPECS["northwind-invoice"]
    pdf = invoice_pdf(spec)
    (gold / "northwind.pdf").write_bytes(pdf)
    buffer = io.BytesIO()
    rasterise(pdf, dpi=150)[0].save(buffer, format="PNG")
    (gold / "northwind.png").write_bytes(buffer.getvalue())
    record = {
        "issuer": spec.issuer.name,
        "amount": float(spec.total),
        "amount_untaxed": float(spec.subtotal),
        "amount_tax": float(spec.tax_amount),
        "date": spec.issue_date.isoformat(),
        "invoice_number": spec.number,
        "currency": spec.currency,
    }
    (gold / "northwind.json").write_text(json.dumps([record]), encoding="utf-8")
    out = tmp_path_factory.mktemp("out")
    invoice_flow(inputs=[str(gold)], out=str(out), run=RunSettings(cache=False))
    return gold, out


def test_outputs_named_with_a_hash_are_matched_to_gold_through_the_manifest(
    gold_and_run: tuple[Path, Path],
) -> None:
    gold, out = gold_and_run
    written = sorted(p.name for p in out.glob("northwind*.json"))
    assert len(written) == 2 and all(name.startswith("northwind-") for name in written), written
    done = _eval(out, gold)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    total_row = next(
        line for line in done.stdout.splitlines() if line.strip("│ ").startswith("total")
    )
    # both the PDF and the PNG answer gold `northwind`: 2 totals scored, both right
    assert "2" in total_row.split("│")[2] and "100%" in total_row, done.stdout
    assert "reliability" in done.stdout


def test_an_eval_that_scores_nothing_fails_with_a_message(
    gold_and_run: tuple[Path, Path], tmp_path: Path
) -> None:
    _, out = gold_and_run
    other = tmp_path / "other-gold"
    other.mkdir()
    (other / "somebody-else.json").write_text(json.dumps([{"amount": 1.0}]), encoding="utf-8")
    done = _eval(out, other)
    assert done.returncode != 0
    assert "Nothing scored" in done.stdout
