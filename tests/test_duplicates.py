"""The same invoice received twice, with other bytes, is reported as a duplicate of the first."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from mmflow.flows.runs import RunSettings
from mmflow.tasks.duplicates import Identity, find_duplicates, same_invoice
from mmflow.tasks.samples import SPECS, generated_pdf, generated_spec, invoice_pdf, rasterise


def identity(uri: str, **changes: object) -> Identity:
    base = Identity(
        uri=uri,
        issuer_tax_id="DE232446240",
        issuer_name="QualityHosting AG",
        invoice_number="30064443",
        total=Decimal("34.73"),
    )
    return base.model_copy(update=changes)


def test_same_issuer_number_and_total_is_the_same_invoice() -> None:
    assert same_invoice(identity("b.pdf"), identity("a.pdf")) is not None
    # the issuer's name decides when either lacks a tax ID; the legal form does not count
    assert same_invoice(
        identity("b.pdf", issuer_tax_id=None, issuer_name="QUALITYHOSTING"), identity("a.pdf")
    )


@pytest.mark.parametrize(
    "change",
    [
        {"total": Decimal("34.74")},
        {"invoice_number": "30064444"},
        {"issuer_tax_id": "DE811191002"},
        {"issuer_tax_id": None, "issuer_name": "Other AG"},
    ],
)
def test_a_different_number_total_or_issuer_is_another_invoice(change: dict[str, object]) -> None:
    assert same_invoice(identity("b.pdf", **change), identity("a.pdf")) is None


def test_the_later_copy_names_the_earlier_input() -> None:
    held = [identity("out-before/a.pdf")]
    arriving = [identity("in/b.pdf", invoice_number="9"), identity("in/a.pdf")]
    found = find_duplicates(held, arriving)
    assert [(later.uri, earlier.uri) for later, earlier, _ in found] == [
        ("in/a.pdf", "out-before/a.pdf")
    ]


def test_the_documents_of_one_input_are_never_each_others_duplicates() -> None:
    arriving = [identity("in/a.pdf", document=1), identity("in/a.pdf", document=2)]
    assert find_duplicates([], arriving) == []


@pytest.mark.slow
def test_a_rescanned_invoice_is_caught_within_a_run_and_against_the_output_folder(
    prefect_server: str, tmp_path: Path
) -> None:
    from mmflow.flows.invoice import invoice_flow

    spec = SPECS["northwind-invoice"]
    first, again = tmp_path / "first", tmp_path / "again"
    first.mkdir()
    again.mkdir()
    (first / "invoice.pdf").write_bytes(invoice_pdf(spec))
    # the same invoice re-sent as a scan: other bytes, same issuer, number and total
    rasterise(invoice_pdf(spec), dpi=150)[0].save(first / "rescan.png")
    other = replace(spec, number="NW-2026-9999")
    (again / "resent.pdf").write_bytes(invoice_pdf(replace(other, number=spec.number)) + b"\n%")
    (again / "another.pdf").write_bytes(invoice_pdf(other))
    out = tmp_path / "out"

    invoice_flow(inputs=[str(first)], out=str(out), run=RunSettings(cache=False))
    rescan = json.loads((out / "rescan.json").read_text())
    checks = {c["name"]: c for c in rescan["checks"]}
    assert checks["duplicate_of"]["status"] == "fail"
    assert "invoice.pdf" in checks["duplicate_of"]["detail"]
    assert rescan["review"] is True
    original = json.loads((out / "invoice.json").read_text())
    assert "duplicate_of" not in {c["name"] for c in original["checks"]}

    report = invoice_flow(inputs=[str(again)], out=str(out), run=RunSettings(cache=False))
    resent = json.loads((out / "resent.json").read_text())
    assert "first/invoice.pdf" in next(
        c["detail"] for c in resent["checks"] if c["name"] == "duplicate_of"
    )
    another = json.loads((out / "another.json").read_text())
    assert "duplicate_of" not in {c["name"] for c in another["checks"]}
    by_name = {Path(d.uri).name: d for d in report.inputs}
    assert by_name["resent.pdf"].details["review"] is True


@pytest.mark.slow
def test_a_file_of_two_invoices_writes_a_result_each_and_the_manifest_lists_them(
    prefect_server: str, tmp_path: Path
) -> None:
    from mmflow.flows.invoice import invoice_flow
    from mmflow.tasks.samples import documents_pdf

    rng = np.random.default_rng(30)
    pair = (
        generated_spec(rng, "de", "classic"),
        generated_spec(rng, "de", "classic", "credit_note"),
    )
    (tmp_path / "batch.pdf").write_bytes(documents_pdf(pair))
    (tmp_path / "single.pdf").write_bytes(generated_pdf(generated_spec(rng, "it", "window")))
    out = tmp_path / "out"
    invoice_flow(
        inputs=[str(tmp_path / "batch.pdf"), str(tmp_path / "single.pdf")],
        out=str(out),
        run=RunSettings(cache=False),
    )
    lines = {
        Path(x["uri"]).name: x
        for x in map(json.loads, (out / "manifest.jsonl").read_text().splitlines())
    }
    batch = lines["batch.pdf"]
    assert batch["documents"] == 2
    assert batch["output"] == batch["outputs"][0]
    assert [Path(p).name for p in batch["outputs"]] == ["batch.json", "batch-doc2.json"]
    results = [json.loads(Path(p).read_text()) for p in batch["outputs"]]
    assert [r["source"]["page_range"] for r in results] == [[1, 1], [2, 2]]
    assert [r["fields"]["invoice_number"]["value"] for r in results] == [s.number for s in pair]
    assert results[1]["fields"]["document_type"]["value"] == "credit_note"
    assert results[1]["fields"]["total"]["value"] == str(-pair[1].total)
    # A one-document input keeps the original manifest line: `documents`/`outputs` stay null.
    assert lines["single.pdf"]["documents"] is None and lines["single.pdf"]["outputs"] is None
    import pandas as pd

    items = pd.read_parquet(out / "line_items.parquet")
    batch_items = items[items["uri"].str.endswith("batch.pdf")]
    assert sorted(set(batch_items["document"])) == [1, 2]
    assert batch_items.groupby("document")["amount"].sum().tolist() == [
        pair[0].subtotal,
        -pair[1].subtotal,
    ]


def test_seen_invoices_mark_the_second_copy_and_survive_pickling_for_workers() -> None:
    import pickle

    from mmflow.tasks.duplicates import SeenInvoices
    from mmflow.tasks.models import FieldValue, InvoiceResult, SourceInfo

    def result(uri: str) -> InvoiceResult:
        fields = {
            "invoice_number": FieldValue(value="INV-7"),
            "total": FieldValue(value="12.00"),
            "issuer_name": FieldValue(value="Acme Ltd"),
        }
        source = SourceInfo(uri=uri, sha256="0" * 64, media_type="application/pdf", pages=1)
        return InvoiceResult(
            source=source, route=[], fields=fields, line_items=[], checks=[], lineage={}
        )

    seen = pickle.loads(pickle.dumps(SeenInvoices()))
    first, second = seen.check_in(result("a.pdf")), seen.check_in(result("b.pdf"))
    assert not first.review
    assert second.review and "a duplicate of a.pdf" in second.review_reasons[0]
    assert [c.name for c in second.checks] == ["duplicate_of"]
