"""Scoring against invoice2data and SROIE ground truth, with the on-page rule for templates."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from rich.console import Console

from mmflow.tasks.evaluate import (
    evaluate,
    load_invoice2data_gold,
    load_predictions,
    load_sroie_gold,
    normalise_amount,
    normalise_date,
    reliability,
    render_report,
    tax_lines_key,
    values_match,
)
from mmflow.tasks.models import FieldValue, InvoiceResult, SourceInfo


def write_invoice2data(folder: Path, name: str, record: dict[str, object]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps([record]), encoding="utf-8")


def write_sroie(folder: Path, name: str, record: dict[str, str]) -> None:
    (folder / "key").mkdir(parents=True, exist_ok=True)
    (folder / "key" / f"{name}.json").write_text(json.dumps(record), encoding="utf-8")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (279.84, "279.84"),
        (4.1, "4.10"),
        ("$8.20", "8.20"),
        ("RM9.75", "9.75"),
        ("9.00", "9.00"),
        ("1.234,56", "1234.56"),
        (1939.0, "1939.00"),
    ],
)
def test_normalise_amount_accepts_numbers_and_printed_strings(raw: object, expected: str) -> None:
    assert normalise_amount(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2014-08-03", "2014-08-03"),
        ("25/12/2018", "2018-12-25"),
        ("01/03/18", "2018-03-01"),
        ("21-11-16", "2016-11-21"),
        ("25 MAY 2017", "2017-05-25"),
        ("06-05-2018", "2018-05-06"),
    ],
)
def test_normalise_date_reads_sroie_dates_day_first(raw: str, expected: str) -> None:
    assert normalise_date(raw) == expected


def test_values_match_ignores_case_spacing_punctuation_and_legal_form() -> None:
    assert values_match(
        "issuer_name", "BOOK TA .K (TAMAN DAYA) SDN BHD", "Book Ta _K (Taman Daya) Sdn Bhd"
    )
    assert values_match("issuer_name", "Amazon Web Services", "Amazon Web Services, Inc.")
    assert values_match("invoice_number", "#BLR_WFLD2015", "BLR_WFLD2015")
    assert values_match("total", "279.84", "279.840")
    assert values_match("currency", "EUR", "eur")
    assert not values_match("total", "279.84", "279.85")
    assert not values_match("issuer_name", "Coolblue B.V.", "Bakker B.V.")
    assert not values_match("issue_date", "2023-03-20", None)


def test_invoice2data_gold_maps_keys_to_field_names(tmp_path: Path) -> None:
    write_invoice2data(
        tmp_path,
        "a",
        {
            "amount": 279.84,
            "amount_untaxed": 262.9,
            "amount_tax": 16.94,
            "date": "2023-03-20",
            "invoice_number": "INV/1",
            "currency": "usd",
            "issuer": "Azure  Interior",
            "lines": [{"name": "x"}],
        },
    )
    gold = load_invoice2data_gold(tmp_path / "a.json")
    assert gold == {
        "total": "279.84",
        "subtotal": "262.90",
        "tax_amount": "16.94",
        "issue_date": "2023-03-20",
        "invoice_number": "INV/1",
        "currency": "USD",
        "issuer_name": "Azure Interior",
    }


def test_sroie_gold_normalises_printed_values(tmp_path: Path) -> None:
    write_sroie(
        tmp_path,
        "408",
        {
            "company": "EDEN SDN BHD",
            "date": "20/10/2016",
            "address": "LOT 20, KL",
            "total": "RM9.75",
        },
    )
    assert load_sroie_gold(tmp_path / "key" / "408.json") == {
        "issuer_name": "EDEN SDN BHD",
        "issue_date": "2016-10-20",
        "issuer_address": "LOT 20, KL",
        "total": "9.75",
    }


def test_evaluate_scores_sroie_fields_and_lists_misses(tmp_path: Path) -> None:
    write_sroie(tmp_path, "1", {"company": "SHOP A", "date": "25/12/2018", "total": "9.00"})
    write_sroie(tmp_path, "2", {"company": "SHOP B", "date": "01/03/18", "total": "$6.60"})
    predictions = {
        "1": {"issuer_name": "Shop A", "issue_date": "2018-12-25", "total": "9.00"},
        "2": {"issuer_name": "SHOP C", "issue_date": "2018-03-01", "total": "6.50"},
    }
    report = evaluate(predictions, tmp_path)
    assert report.documents == 2
    assert (report.fields["total"].correct, report.fields["total"].total) == (1, 2)
    assert report.accuracy("issue_date") == 1.0
    assert report.accuracy("issuer_name") == 0.5
    assert report.model_dump(mode="json")["fields"]["total"]["accuracy"] == 0.5
    assert {(m.document, m.field) for m in report.misses} == {("2", "issuer_name"), ("2", "total")}


def test_gold_values_missing_from_the_page_are_excluded_with_a_reason(tmp_path: Path) -> None:
    write_invoice2data(
        tmp_path,
        "inv",
        {"amount": 56.02, "issuer": "NETPRESSE TEMPLATE", "currency": "EUR", "invoice_number": "F"},
    )
    page = {"inv": "Facture n° 2022089083 Total TTC : 56,02 € TVA 9,34 €"}
    predictions = {"inv": {"total": "56.02", "currency": "EUR", "invoice_number": "2022089083"}}
    report = evaluate(predictions, tmp_path, page_texts=page)
    assert report.fields["total"].correct == 1
    assert report.fields["currency"].correct == 1
    assert report.fields["issuer_name"].total == 0
    assert report.fields["issuer_name"].excluded == 1
    # a template's invoice number "F" is not shown by the word "Facture"
    assert report.fields["invoice_number"].excluded == 1
    reasons = {(e.field, e.reason) for e in report.exclusions}
    assert ("issuer_name", "not on the page (template value)") in reasons


def test_documents_without_prediction_are_reported_not_silently_dropped(tmp_path: Path) -> None:
    write_sroie(tmp_path, "1", {"total": "1.00"})
    write_sroie(tmp_path, "2", {"total": "2.00"})
    report = evaluate({"1": {"total": "1.00"}}, tmp_path)
    assert [(e.document, e.reason) for e in report.exclusions] == [("2", "document not processed")]
    subset = evaluate({"1": {"total": "1.00"}}, tmp_path, only_predicted=True)
    assert subset.documents == 1 and subset.exclusions == []


def test_load_predictions_reads_invoice_result_files(tmp_path: Path) -> None:
    result = InvoiceResult(
        source=SourceInfo(uri="a.pdf", sha256="0" * 64, media_type="application/pdf", pages=1),
        route=[],
        fields={"total": FieldValue(value="12.00", confidence=0.9)},
        line_items=[],
        checks=[],
        lineage={},
    )
    (tmp_path / "a.json").write_text(result.model_dump_json(), encoding="utf-8")
    (tmp_path / "manifest.jsonl").write_text("{}\n", encoding="utf-8")
    (tmp_path / "broken.json").write_text("{not json", encoding="utf-8")
    predictions = load_predictions(tmp_path)  # no manifest: each result answers its own stem
    assert [p.gold for p in predictions] == ["a"]
    assert predictions[0].values["total"] == "12.00"
    assert predictions[0].values["issue_date"] is None
    assert predictions[0].confidences["total"] == 0.9


def test_render_report_shows_accuracy_per_field(tmp_path: Path) -> None:
    write_sroie(tmp_path, "1", {"total": "9.00", "date": "25/12/2018"})
    report = evaluate({"1": {"total": "9.00", "issue_date": "2018-12-24"}}, tmp_path)
    console = Console(record=True, width=120)
    console.print(render_report(report))
    text = console.export_text()
    assert "total" in text and "100%" in text
    assert "issue_date" in text and "0%" in text


def _result_json(total: str, confidence: float = 0.9) -> str:
    result = InvoiceResult(
        source=SourceInfo(uri="x", sha256="0" * 64, media_type="application/pdf", pages=1),
        route=[],
        fields={"total": FieldValue(value=total, confidence=confidence)},
        line_items=[],
        checks=[],
        lineage={},
    )
    return result.model_dump_json()


def test_predictions_are_matched_to_gold_by_the_manifest_input_not_the_output_name(
    tmp_path: Path,
) -> None:
    gold, out = tmp_path / "gold", tmp_path / "out"
    write_invoice2data(gold, "inv", {"amount": 12.0})
    (gold / "inv.txt").write_text("Total 12.00", encoding="utf-8")
    out.mkdir()
    (out / "inv-0a1b2c3d.json").write_text(_result_json("12.00"), encoding="utf-8")
    entry = {
        "uri": str(gold / "inv.txt"),
        "sha256": "f" * 64,
        "status": "ok",
        "error": None,
        "output": str(out / "inv-0a1b2c3d.json"),
    }
    (out / "manifest.jsonl").write_text(json.dumps(entry) + "\n", encoding="utf-8")
    predictions = load_predictions(out, gold)
    assert [(p.document, p.gold) for p in predictions] == [("inv.txt", "inv")]
    report = evaluate(predictions, gold)
    assert (report.fields["total"].correct, report.fields["total"].total) == (1, 1)


def test_predictions_are_matched_by_sha256_when_the_input_was_renamed(tmp_path: Path) -> None:
    gold, out = tmp_path / "gold", tmp_path / "out"
    write_invoice2data(gold, "inv", {"amount": 12.0})
    (gold / "inv.txt").write_text("Total 12.00", encoding="utf-8")
    digest = hashlib.sha256(b"Total 12.00").hexdigest()
    out.mkdir()
    (out / "upload.json").write_text(_result_json("12.00"), encoding="utf-8")
    entry = {
        "uri": "s3://b/uploads/3f9a.bin",
        "sha256": digest,
        "status": "ok",
        "output": "x/upload.json",
    }
    (out / "manifest.jsonl").write_text(json.dumps(entry) + "\n", encoding="utf-8")
    assert [p.gold for p in load_predictions(out, gold)] == ["inv"]


def test_every_document_of_a_multi_document_input_answers_its_own_gold(tmp_path: Path) -> None:
    gold, out = tmp_path / "gold", tmp_path / "out"
    gold.mkdir()
    truth = {"documents": [{"total": "10.00"}, {"total": "20.00"}]}
    (gold / "pair.truth.json").write_text(json.dumps(truth), encoding="utf-8")
    out.mkdir()
    (out / "pair.json").write_text(_result_json("10.00"), encoding="utf-8")
    (out / "pair-2.json").write_text(_result_json("20.00", 0.4), encoding="utf-8")
    entry = {
        "uri": "in/pair.pdf",
        "sha256": "e" * 64,
        "status": "ok",
        "output": "o/pair.json",
        "outputs": ["o/pair.json", "o/pair-2.json"],
        "documents": 2,
    }
    (out / "manifest.jsonl").write_text(json.dumps(entry) + "\n", encoding="utf-8")
    predictions = load_predictions(out, gold)
    assert [(p.document, p.gold) for p in predictions] == [
        ("pair.pdf#1", "pair#1"),
        ("pair.pdf#2", "pair#2"),
    ]
    report = evaluate(predictions, gold)
    assert report.fields["total"].correct == 2
    bands = {(b.low, b.values) for b in reliability(report) if b.values}
    assert bands == {(0.3, 1), (0.9, 1)}


def test_samples_truth_scores_an_absent_field_as_must_be_empty(tmp_path: Path) -> None:
    (tmp_path / "a.truth.json").write_text(
        json.dumps({"total": "5.00", "referenced_invoice": None}), encoding="utf-8"
    )
    report = evaluate({"a": {"total": "5.00", "referenced_invoice": "INV-1"}}, tmp_path)
    assert report.accuracy("total") == 1.0
    assert report.accuracy("referenced_invoice") == 0.0


def test_tax_lines_compare_as_numbers_whatever_their_order() -> None:
    first = tax_lines_key(
        [
            {"rate": "19.00", "base": "100", "amount": "19"},
            {"rate": "7", "base": "10", "amount": "0.7"},
        ]
    )
    second = tax_lines_key(
        [
            {"rate": "7", "base": "10.00", "amount": "0.70"},
            {"rate": "19", "base": "100.00", "amount": "19.00"},
        ]
    )
    assert first == second == "19:100.00:19.00;7:10.00:0.70"
    assert tax_lines_key([]) is None
