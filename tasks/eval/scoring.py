"""Scoring one dataset's outputs into metrics, with the scorers `mmflow eval invoice|meeting`
use (tasks/evaluate.py, tasks/audio/meeting_eval.py) and the metrics the field reports.

Every flow-run dataset also reports `inputs_ok`, the share of its inputs that ended `ok`: a
scorer sees only what was written, so without it a change that made inputs fail would leave
the accuracy of the rest unchanged and pass the gate. For documents, a gold document with no
output counts as every one of its values wrong.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from mmflow.tasks.eval.datasets import PreparedDataset
from mmflow.tasks.eval.results import Metric
from mmflow.tasks.models import ManifestEntry, Status


def manifest_entries(out: Path) -> list[ManifestEntry]:
    path = out / "manifest.jsonl"
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [ManifestEntry.model_validate_json(line) for line in lines if line.strip()]


def _name(uri: str) -> str:
    return PurePosixPath(uri.replace("\\", "/")).name


def inputs_ok(prepared: PreparedDataset, out: Path) -> tuple[Metric, list[str]]:
    """Share of the dataset's inputs whose manifest line says `ok`, and the others' reasons."""
    by_name = {_name(e.uri): e for e in manifest_entries(out)}
    notes, ok = [], 0
    for uri in prepared.inputs:
        entry = by_name.get(_name(uri))
        if entry is not None and entry.status is Status.OK:
            ok += 1
        else:
            why = "no manifest line" if entry is None else f"{entry.status}: {entry.error}"
            notes.append(f"{_name(uri)} did not end ok ({why})")
    total = len(prepared.inputs)
    metric = Metric(
        name="inputs_ok",
        value=ok / total if total else 0.0,
        higher_is_better=True,
        primary=True,
        count=total,
    )
    return metric, notes


def _expected_documents(gold_keys: Sequence[str], inputs: Sequence[str]) -> set[str]:
    stems = {PurePosixPath(_name(uri)).stem for uri in inputs}
    return {key for key in gold_keys if key.split("#")[0] in stems}


def score_invoice(prepared: PreparedDataset, out: Path) -> tuple[list[Metric], list[str]]:
    """Field accuracy over every gold value of every input (unanswered ones wrong), schema
    compliance of the result files, per-field accuracy and the confident share."""
    from mmflow.tasks.eval.compliance import schema_compliance
    from mmflow.tasks.evaluate import confident_share, evaluate, load_gold, load_predictions

    predictions = load_predictions(out, prepared.gold)
    report = evaluate(predictions, prepared.gold)
    expected = _expected_documents(list(load_gold(prepared.gold)), prepared.inputs)
    lost = [
        e
        for e in report.exclusions
        if e.reason == "document not processed" and e.document in expected
    ]
    correct = sum(score.correct for score in report.fields.values())
    scored = sum(score.total for score in report.fields.values()) + len(lost)
    metrics = [
        Metric(
            name="field_accuracy",
            value=correct / scored if scored else 0.0,
            higher_is_better=True,
            primary=True,
            count=scored,
        )
    ]
    results = [
        out / _name(path)
        for entry in manifest_entries(out)
        if entry.status is Status.OK
        for path in (entry.outputs or ([entry.output] if entry.output else []))
    ]
    compliance = schema_compliance(results)
    metrics.append(
        Metric(
            name="schema_compliance",
            value=compliance.rate,
            higher_is_better=True,
            primary=True,
            count=compliance.files,
        )
    )
    for score in report.fields.values():
        if score.accuracy is not None:
            metrics.append(
                Metric(
                    name=f"accuracy.{score.field}",
                    value=score.accuracy,
                    higher_is_better=True,
                    count=score.total,
                )
            )
    share, confident_accuracy = confident_share(report)
    if share is not None:
        metrics.append(Metric(name="confident_share", value=share, higher_is_better=True))
    if confident_accuracy is not None:
        metrics.append(
            Metric(name="confident_accuracy", value=confident_accuracy, higher_is_better=True)
        )
    notes = [
        f"{m.document} {m.field}: expected {m.expected!r}, got {m.predicted!r}"
        for m in report.misses
    ]
    notes += [f"{e.document}: not processed" for e in {e.document: e for e in lost}.values()]
    for name, problems in compliance.problems.items():
        notes.append(f"{name} breaks the contract: {'; '.join(problems)}")
    return metrics, notes


def score_meeting(prepared: PreparedDataset, out: Path) -> tuple[list[Metric], list[str]]:
    """WER (transcripts), cpWER (STM), DER full and forgiving and JER (RTTM), speaker counts."""
    from mmflow.tasks.audio.meeting_eval import evaluate_paths

    refs = prepared.references
    report = evaluate_paths(
        out, refs.get("rttm"), refs.get("uem"), refs.get("stm"), refs.get("transcripts")
    )
    metrics: list[Metric] = []
    if report.wer_total is not None:
        total = report.wer_total
        metrics.append(
            Metric(
                name="wer",
                value=total.wer,
                higher_is_better=False,
                primary=True,
                count=total.reference_words,
            )
        )
    if report.cpwer_total is not None:
        metrics.append(
            Metric(name="cpwer", value=report.cpwer_total, higher_is_better=False, primary=True)
        )
    if report.der_total:
        der = report.der_total
        count = int(der["recordings"])
        metrics += [
            Metric(
                name="der_full",
                value=der["full"],
                higher_is_better=False,
                primary=True,
                count=count,
            ),
            Metric(
                name="der_forgiving", value=der["forgiving"], higher_is_better=False, count=count
            ),
            Metric(name="jer", value=der["jer"], higher_is_better=False, count=count),
            Metric(
                name="speaker_count_accuracy",
                value=der["count_right"] / der["recordings"] if der["recordings"] else 0.0,
                higher_is_better=True,
                count=count,
            ),
        ]
    notes = [
        f"{r.recording}: WER {r.wer.wer:.1%}" for r in report.recordings if r.wer and r.wer.wer > 0
    ]
    return metrics, notes


def _flagged(out: Path, entry: ManifestEntry, flag: str) -> bool:
    if entry.output is None:
        return False
    try:
        text = (out / _name(entry.output)).read_text(encoding="utf-8")
    except OSError:
        return False
    return f'"{flag}"' in text


def score_bad_inputs(prepared: PreparedDataset, out: Path) -> tuple[list[Metric], list[str]]:
    """Share of inputs that ended as expected (the rejection code, or accepted with the flag),
    and the share that did not crash (`failed`)."""
    by_name = {_name(e.uri): e for e in manifest_entries(out)}
    right, not_failed, notes = 0, 0, []
    for name, expected in prepared.expected.items():
        entry = by_name.get(name)
        if entry is None:
            notes.append(f"{name}: no manifest line")
            continue
        not_failed += entry.status is not Status.FAILED
        if expected == "ok":
            good = entry.status is Status.OK
        elif expected.startswith("flag:"):
            good = entry.status is Status.OK and _flagged(
                out, entry, expected.removeprefix("flag:")
            )
        else:
            good = (
                entry.status is Status.REJECTED
                and entry.error is not None
                and entry.error.code == expected
            )
        right += good
        if not good:
            got = entry.error.code if entry.error else entry.status.value
            notes.append(f"{name}: expected {expected}, got {got}")
    total = len(prepared.expected)
    metrics = [
        Metric(
            name="expected_outcome_rate",
            value=right / total,
            higher_is_better=True,
            primary=True,
            count=total,
        ),
        Metric(
            name="not_failed_rate",
            value=not_failed / total,
            higher_is_better=True,
            primary=True,
            count=total,
        ),
    ]
    return metrics, notes


def score_ocr(prepared: PreparedDataset, pages: dict[str, Any]) -> tuple[list[Metric], list[str]]:
    """Corpus CER of the OCR pages (`pages`: input path → PageText) against each source PDF's
    text layer."""
    import pymupdf

    from mmflow.tasks.eval.cer import character_error_rate, reading_order
    from mmflow.tasks.textlayer import read_text_layer

    references, hypotheses, notes = [], [], []
    for uri in prepared.inputs:
        pdf = Path(uri).with_suffix(".pdf")
        with pymupdf.open(pdf) as doc:
            reference = reading_order(read_text_layer(doc[0], 1).words)
        hypothesis = reading_order(pages[uri].words)
        page = character_error_rate([reference], [hypothesis])
        notes.append(
            f"{Path(uri).name}: CER {page.cer:.2%} ({page.errors} of {page.reference_chars})"
        )
        references.append(reference)
        hypotheses.append(hypothesis)
    total = character_error_rate(references, hypotheses)
    metric = Metric(
        name="cer",
        value=total.cer,
        higher_is_better=False,
        primary=True,
        count=total.reference_chars,
    )
    return [metric], notes


def image_answers(out: Path) -> dict[str, dict[str, Any] | None]:
    """Each ok input's answer value from the image scenario's `<stem>.json`, by input name."""
    answers: dict[str, dict[str, Any] | None] = {}
    for entry in manifest_entries(out):
        if entry.status is Status.OK and entry.output:
            data = json.loads((out / _name(entry.output)).read_text(encoding="utf-8"))
            answers[_name(entry.uri)] = (data.get("answer") or {}).get("value")
    return answers


def score_charts(prepared: PreparedDataset, out: Path) -> tuple[list[Metric], list[str]]:
    """ChartQA's relaxed accuracy: values read within 5% of the plotted ones."""
    from mmflow.tasks.eval.charts import TRUTH_SUFFIX, load_chart_truth, score_chart

    answers = image_answers(out)
    right = total = 0
    notes = []
    for uri in prepared.inputs:
        path = Path(uri)
        truth = load_chart_truth(path.with_name(path.stem + TRUTH_SUFFIX))
        score = score_chart(answers.get(path.name), truth)
        right, total = right + score.right, total + score.values
        notes += [f"{path.name} {miss}" for miss in score.misses]
    metric = Metric(
        name="chart_relaxed_accuracy",
        value=right / total if total else 0.0,
        higher_is_better=True,
        primary=True,
        count=total,
    )
    return [metric], notes


def score_describe(
    prepared: PreparedDataset, out: Path, judge: Any, budget: Any = None
) -> tuple[list[Metric], list[str]]:
    """The judge's rubric score of each description (criteria met, averaged), graded against
    what the image is known to show (`<stem>.shows.txt`)."""
    from mmflow.tasks.eval.judge import grade_answer
    from mmflow.tasks.image import TASK_PROMPT, ImageTask

    answers = image_answers(out)
    scores, notes = [], []
    for uri in prepared.inputs:
        path = Path(uri)
        shows = path.with_name(f"{path.stem}.shows.txt").read_text(encoding="utf-8").strip()
        answer = answers.get(path.name)
        text = json.dumps(answer, ensure_ascii=False) if answer else ""
        if not text:
            scores.append(0.0)
            notes.append(f"{path.name}: no answer")
            continue
        grade = grade_answer(
            judge, path.name, "describe", TASK_PROMPT[ImageTask.DESCRIBE], shows, text, budget
        )
        scores.append(grade.score)
        missed = [c.criterion for c in grade.checks if not c.met]
        if missed:
            notes.append(f"{path.name}: not met: {', '.join(missed)}")
    metric = Metric(
        name="rubric_score",
        value=sum(scores) / len(scores) if scores else 0.0,
        higher_is_better=True,
        primary=True,
        count=len(scores),
    )
    return [metric], notes


def score_judge_agreement(
    prepared: PreparedDataset, judge: Any, budget: Any = None, seed: int = 0
) -> tuple[list[Metric], list[str]]:
    """How often the judge prefers what the person preferred (and kappa, and its first-position
    rate: far from 0.5 is a position bias the randomised order keeps out of its verdicts)."""
    from mmflow.tasks.eval.judge import judge_labelled_set, load_labels

    labels = load_labels(Path(prepared.inputs[0]))
    found, _ = judge_labelled_set(judge, labels, seed=seed, budget=budget)
    metrics = [
        Metric(
            name="judge_agreement",
            value=found.rate,
            higher_is_better=True,
            primary=True,
            count=found.items,
        ),
        Metric(
            name="judge_first_position_rate",
            value=found.first_position_rate,
            higher_is_better=False,
        ),
    ]
    if found.kappa is not None:
        metrics.append(Metric(name="judge_kappa", value=found.kappa, higher_is_better=True))
    return metrics, found.disagreements
