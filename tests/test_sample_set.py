"""The generated set: ≥ 60 documents in six languages, credit notes and files of several
documents, rendered from their truth; the extractor reads it as the flow does (split, then
extract) and must reach 95% per field, the added fields included, and split every file right."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pymupdf
import pytest

from mmflow.tasks.evaluate import EvalReport, Prediction, evaluate, tax_lines_key
from mmflow.tasks.extract import extract_invoice
from mmflow.tasks.models import DocumentText
from mmflow.tasks.samples import make_sample_set, sample_truth
from mmflow.tasks.split import part_text, split_document
from mmflow.tasks.textlayer import read_text_layer


@pytest.fixture(scope="module")
def sample_set(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return make_sample_set(tmp_path_factory.mktemp("set"))


@pytest.fixture(scope="module")
def read_back(sample_set: list[Path]) -> tuple[EvalReport, list[str]]:
    predictions, wrong = [], []
    for path in sample_set:
        truth = sample_truth(path)
        with pymupdf.open(path) as doc:
            text = DocumentText(pages=[read_text_layer(p, i + 1) for i, p in enumerate(doc)])
        split = split_document(text)
        expected = [tuple(d["pages"]) for d in truth.get("documents", [])] or [(1, len(text.pages))]
        if split.parts != expected:
            wrong.append(path.name)
        for index in range(len(split.parts)):
            several = "documents" in truth
            extraction = extract_invoice(part_text(text, split, index))
            values = {name: f.value for name, f in extraction.fields.items()}
            values["tax_lines"] = tax_lines_key(
                [t.model_dump(mode="json") for t in extraction.tax_lines]
            )
            predictions.append(
                Prediction(
                    document=f"{path.name}#{index + 1}",
                    gold=f"{path.stem}#{index + 1}" if several else path.stem,
                    values=values,
                )
            )
    return evaluate(predictions, sample_set[0].parent), wrong


def test_the_set_spans_six_languages_credit_notes_and_files_of_several_documents(
    sample_set: list[Path],
) -> None:
    truths = [sample_truth(p) for p in sample_set]
    documents = [d for t in truths for d in t.get("documents", [t])]
    assert len(documents) >= 60
    assert set(Counter(d["language"] for d in documents)) == {"de", "fr", "nl", "es", "it", "pl"}
    assert sum(d["document_type"] == "credit_note" for d in documents) >= 12
    assert sum("documents" in t for t in truths) >= 12
    assert sum(len(d["tax_lines"]) == 2 for d in documents) >= 12
    assert all(d["iban"] and d["issuer_tax_id"] for d in documents)
    # numbers add up, credit notes negative
    for d in documents:
        json.dumps(d)
        sign = -1 if d["document_type"] == "credit_note" else 1
        assert sign * float(d["total"]) > 0


def test_every_file_of_several_documents_is_split_right(
    read_back: tuple[EvalReport, list[str]],
) -> None:
    assert read_back[1] == []


def test_every_field_reaches_95_percent_on_the_generated_set(
    read_back: tuple[EvalReport, list[str]],
) -> None:
    report, _ = read_back
    low = {f: s.accuracy for f, s in report.fields.items() if (s.accuracy or 0) < 0.95}
    assert len(report.fields) == 20 and not low, (low, report.misses[:20])
