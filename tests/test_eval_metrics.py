"""The evaluation's metrics: CER, schema compliance, chart numbers, bad-input outcomes."""

from __future__ import annotations

import json
from pathlib import Path

import pymupdf
import pytest

from mmflow.tasks.eval.cer import character_error_rate, page_cer, reading_order
from mmflow.tasks.eval.charts import ChartTruth, chart_truth, make_chart_set, score_chart
from mmflow.tasks.eval.compliance import file_problems, schema_compliance
from mmflow.tasks.eval.datasets import DatasetKind, PreparedDataset
from mmflow.tasks.eval.scoring import score_bad_inputs
from mmflow.tasks.models import ErrorInfo, FieldValue, ManifestEntry, Status, Word
from mmflow.tasks.textlayer import read_text_layer

pytest.importorskip("jiwer")


def _word(text: str, x: float, y: float) -> Word:
    return Word(text=text, bbox=(x, y, x + 10 * len(text), y + 10))


def test_reading_order_puts_words_in_lines_top_to_bottom_left_to_right() -> None:
    words = [_word("Total", 10, 100), _word("Invoice", 10, 20), _word("9.50", 200, 101)]
    assert reading_order(words) == "Invoice Total 9.50"


def test_cer_counts_character_edits_over_reference_characters() -> None:
    score = character_error_rate(["Total 10.50"], ["Tota1 10,50"])
    assert (score.errors, score.reference_chars) == (2, 11)
    assert score.cer == pytest.approx(2 / 11)


def test_cer_of_a_page_ignores_the_order_the_engine_lists_words_in() -> None:
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 72), "Invoice 4411")
    page.insert_text((72, 120), "Total 120.00 EUR")
    reference = read_text_layer(page, 1)
    shuffled = reference.model_copy(update={"words": list(reversed(reference.words))})
    assert page_cer(reference, shuffled).cer == 0.0
    misread = reference.model_copy(
        update={
            "words": [
                w.model_copy(update={"text": w.text.replace("0", "O")}) for w in reference.words
            ]
        }
    )
    assert page_cer(reference, misread).errors == 3  # the zeros of "120.00"


def _result_file(folder: Path, name: str, fields: dict[str, str | None]) -> Path:
    from mmflow.tasks.models import InvoiceResult, SourceInfo

    result = InvoiceResult(
        source=SourceInfo(uri=name, sha256="0" * 64, media_type="application/pdf", pages=1),
        route=[],
        fields={k: FieldValue(value=v, confidence=0.9) for k, v in fields.items()},
        line_items=[],
        checks=[],
        lineage={},
    )
    path = folder / f"{name}.json"
    path.write_text(result.model_dump_json(), encoding="utf-8")
    return path


def test_schema_compliance_fails_values_that_break_the_contract(tmp_path: Path) -> None:
    good = _result_file(
        tmp_path, "good", {"issue_date": "2026-03-12", "total": "279.84", "currency": "EUR"}
    )
    bad = _result_file(
        tmp_path, "bad", {"issue_date": "12/03/2026", "total": "279,84", "currency": "EURO"}
    )
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"fields": {}}), encoding="utf-8")
    assert file_problems(good) == []
    assert len(file_problems(bad)) == 3
    assert "does not parse" in file_problems(broken)[0]
    score = schema_compliance([good, bad, broken])
    assert score.rate == pytest.approx(1 / 3) and set(score.problems) == {"bad.json", "broken.json"}


def test_chart_numbers_count_within_five_percent_and_missing_labels_as_wrong() -> None:
    truth = ChartTruth(
        chart_type="bar",
        title="t",
        series={"Revenue": {"North": 50.0, "South": 80.0, "East": 20.0}},
    )
    answer = {"series": [{"name": "sales", "labels": ["north", "SOUTH"], "values": [52.4, 85.0]}]}
    score = score_chart(answer, truth)
    # North within 5% (52.4 vs 50), South 6.25% off, East missing
    assert (score.right, score.values) == (1, 3)
    assert score_chart(None, truth).right == 0


def test_the_chart_set_writes_each_chart_with_the_values_it_plots(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    paths = make_chart_set(tmp_path, count=2, seed=40)
    truth = json.loads((tmp_path / "chart-040.truth.json").read_text())
    assert [p.name for p in paths] == ["chart-040.png", "chart-041.png"]
    assert truth == chart_truth(40).model_dump()
    assert paths[0].read_bytes().startswith(b"\x89PNG")


def test_bad_inputs_score_the_expected_code_and_the_flag(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "js.json").write_text(json.dumps({"flags": ["pdf_javascript"]}), encoding="utf-8")
    entries = [
        ManifestEntry(
            uri="/in/empty.pdf",
            sha256=None,
            status=Status.REJECTED,
            error=ErrorInfo(code="empty", message="m"),
        ),
        ManifestEntry(
            uri="/in/trunc.pdf",
            sha256=None,
            status=Status.FAILED,
            error=ErrorInfo(code="processing_error", message="m"),
        ),
        ManifestEntry(
            uri="/in/js.pdf", sha256="1" * 64, status=Status.OK, output=str(out / "js.json")
        ),
    ]
    (out / "manifest.jsonl").write_text("\n".join(e.model_dump_json() for e in entries) + "\n")
    prepared = PreparedDataset(
        name="bad-inputs",
        kind=DatasetKind.BAD_INPUTS,
        inputs=[e.uri for e in entries],
        gold=tmp_path,
        expected={"empty.pdf": "empty", "trunc.pdf": "corrupt", "js.pdf": "flag:pdf_javascript"},
    )
    metrics, notes = score_bad_inputs(prepared, out)
    values = {m.name: m.value for m in metrics}
    assert values == {
        "expected_outcome_rate": pytest.approx(2 / 3),
        "not_failed_rate": pytest.approx(2 / 3),
    }
    assert notes == ["trunc.pdf: expected corrupt, got processing_error"]
