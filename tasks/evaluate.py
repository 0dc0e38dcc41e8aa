"""evaluate: score extracted fields against ground truth (invoice2data, SROIE, mmflow samples).

The three formats are read into our field names with values normalised the way the extractor
writes them (ISO dates, plain decimal amounts, ISO currency codes), and compared after
normalising whitespace, case and punctuation where the field is free text.

Outputs are matched to their gold through the run's manifest, by the input's sha256 or its file
name, never by the output file's own name: two inputs sharing a stem (`X.pdf`, `X.png`) are
written as `X.json` and `X-<hash8>.json`, and both answer gold `X`. An input that held several
documents answers the gold of each in turn (`X#1`, `X#2`).

Template-free scoring: invoice2data's goldens come from per-issuer templates and hold values the
page never shows (`issuer` spelled as the template names it, sometimes `currency`, an
`invoice_number` of "F"). A gold value is therefore scored only when it can be found in the
document's own text after the same normalisation; the rest are reported as exclusions with the
reason. SROIE keys are transcriptions of the receipt itself, so every SROIE value is scored.
mmflow's own samples (`<stem>.truth.json`, tasks/samples.py) are rendered from their truth, so
every value is scored there too, and a field the truth says is absent must come back empty.

Each scored value keeps the confidence the extractor gave it, so the report also says whether
confidence predicts correctness (`reliability`): per confidence band, how often it was right.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, Field, computed_field
from rich.table import Table

from mmflow.tasks.extraction.parsing import (
    DateOrder,
    decimal_separator_of,
    find_amounts,
    find_currencies,
    find_dates,
    format_amount,
)
from mmflow.tasks.extraction.text import invoice_number_key, name_key, plain, text_key
from mmflow.tasks.models import (
    ALL_FIELD_NAMES,
    AMOUNT_FIELDS,
    DATE_FIELDS,
    ManifestEntry,
    Status,
)

GoldFormat = Literal["invoice2data", "sroie", "samples"]
Values = dict[str, str | None]
TAX_LINES = "tax_lines"
"""Scored like a field: the document's tax lines as one canonical text (`tax_lines_key`)."""
SCORED_FIELDS: tuple[str, ...] = (*ALL_FIELD_NAMES, TAX_LINES)

INVOICE2DATA_KEYS: dict[str, str] = {
    "amount": "total",
    "amount_untaxed": "subtotal",
    "amount_tax": "tax_amount",
    "date": "issue_date",
    "date_due": "due_date",
    "invoice_number": "invoice_number",
    "currency": "currency",
    "issuer": "issuer_name",
    # identifiers the goldens carry under their own names (scored only where the page shows them)
    "vat": "issuer_tax_id",
    "static_vat": "issuer_tax_id",
    "gstin": "issuer_tax_id",
    "iban": "iban",
    "bic": "bic",
    "purchase_order_id": "purchase_order",
}
SROIE_KEYS: dict[str, str] = {
    "company": "issuer_name",
    "date": "issue_date",
    "total": "total",
    "address": "issuer_address",
}
NAME_FIELDS = ("issuer_name", "buyer_name", "issuer_address", "buyer_address")
NUMBER_FIELDS = ("invoice_number", "purchase_order", "referenced_invoice")
IDENTIFIER_FIELDS = ("issuer_tax_id", "buyer_tax_id", "iban", "bic")


class Prediction(BaseModel):
    """What one output says about one document, and which gold document it answers."""

    document: str  # the input's name, with `#k` for the k-th document of a file
    gold: str  # the gold document's key: its stem, or `stem#k`
    values: Values
    confidences: dict[str, float] = Field(default_factory=dict)
    sources: dict[str, str | None] = Field(default_factory=dict)  # how each was found


class ScoredValue(BaseModel):
    """One scored value: its confidence, how it was found, and whether it was right."""

    document: str
    field: str
    confidence: float
    correct: bool
    source: str | None = None
    absent: bool = False  # the gold says there is nothing to find: no confidence to judge


class ReliabilityBand(BaseModel):
    low: float
    high: float
    values: int
    correct: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def accuracy(self) -> float | None:
        return self.correct / self.values if self.values else None


class FieldScore(BaseModel):
    field: str
    correct: int = 0
    total: int = 0
    excluded: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def accuracy(self) -> float | None:
        return self.correct / self.total if self.total else None


class Miss(BaseModel):
    document: str
    field: str
    expected: str
    predicted: str | None


class Exclusion(BaseModel):
    document: str
    field: str
    gold: str
    reason: str


class EvalReport(BaseModel):
    """Per-field accuracy over the documents that have gold, with every miss and exclusion."""

    dataset: str
    documents: int
    fields: dict[str, FieldScore] = Field(default_factory=dict)
    misses: list[Miss] = Field(default_factory=list)
    exclusions: list[Exclusion] = Field(default_factory=list)
    scored: list[ScoredValue] = Field(default_factory=list)

    def accuracy(self, field: str) -> float | None:
        score = self.fields.get(field)
        return score.accuracy if score else None

    @property
    def values_scored(self) -> int:
        return sum(score.total for score in self.fields.values())


# ------------------------------------------------------------------ normalisation


def normalise_amount(raw: object) -> str | None:
    """'$8.20', 'RM9.75', 279.84, '1.234,56' -> '8.20', '9.75', '279.84', '1234.56'."""
    if raw is None:
        return None
    if isinstance(raw, int | float | Decimal):
        return format_amount(Decimal(str(raw)))
    text = str(raw).strip()
    try:
        return format_amount(Decimal(text))
    except InvalidOperation:
        pass
    sep = decimal_separator_of([text])
    found = find_amounts(text, sep) or find_amounts(f"{text} EUR", sep)
    return format_amount(found[-1].value) if found else None


def normalise_date(raw: object, order: DateOrder = DateOrder.DMY) -> str | None:
    """ISO dates pass through; printed ones ('25/12/2018', '25 MAY 2017') are parsed."""
    if raw is None:
        return None
    text = str(raw).strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return text
    found = find_dates(text, order)
    return found[0].value.isoformat() if found else None


def tax_lines_key(lines: Sequence[Mapping[str, Any]]) -> str | None:
    """Tax lines as one comparable text, "rate:base:amount" per line by rate, or None if none.

    Rates compare as numbers ("19" = "19.00"), bases and amounts with two decimals; a part a
    line does not state is written "-".
    """

    def number(raw: Any, amount: bool) -> str:
        if raw is None or raw == "":
            return "-"
        try:
            value = Decimal(str(raw))
        except InvalidOperation:
            return str(raw)
        return format_amount(value) if amount else format(value.normalize(), "f")

    parts = sorted(
        (
            number(line.get("rate"), False),
            number(line.get("base"), True),
            number(line.get("amount"), True),
        )
        for line in lines
    )
    return ";".join(":".join(p) for p in parts) or None


def values_match(field: str, gold: str | None, predicted: str | None) -> bool:
    """Whether `predicted` is the gold value; a gold of None means "nothing should be found"."""
    if gold is None:
        return predicted is None
    if predicted is None:
        return False
    if field in AMOUNT_FIELDS:
        return normalise_amount(predicted) == gold
    if field in DATE_FIELDS:
        return normalise_date(predicted) == gold
    if field == "currency":
        return predicted.strip().upper() == gold.upper()
    if field in NUMBER_FIELDS or field in IDENTIFIER_FIELDS:
        return invoice_number_key(predicted) == invoice_number_key(gold)
    if field == "document_type" or field == TAX_LINES:
        return predicted.strip() == gold.strip()
    if field in NAME_FIELDS:
        return name_key(predicted) == name_key(gold) or text_key(predicted) == text_key(gold)
    return text_key(predicted) == text_key(gold)


# ------------------------------------------------------------------ gold loaders


def load_invoice2data_gold(path: Path) -> Values:
    """One `<name>.json` (a list with one dict) as our field names, values normalised."""
    data = json.loads(path.read_text(encoding="utf-8"))
    record = data[0] if isinstance(data, list) else data
    out: Values = {}
    for key, field in INVOICE2DATA_KEYS.items():
        raw = record.get(key)
        if raw is None or raw == "":
            continue
        if field in AMOUNT_FIELDS:
            out[field] = normalise_amount(raw)
        elif field in DATE_FIELDS:
            out[field] = normalise_date(raw)
        elif field == "currency":
            out[field] = str(raw).strip().upper()
        else:
            out[field] = " ".join(str(raw).split())
    return out


def load_sroie_gold(path: Path) -> Values:
    """One SROIE `key/<id>.json`: values as printed, normalised (dates are day-first there)."""
    record = json.loads(path.read_text(encoding="utf-8"))
    out: Values = {}
    for key, field in SROIE_KEYS.items():
        raw = record.get(key)
        if raw is None or str(raw).strip() == "":
            continue
        if field in AMOUNT_FIELDS:
            out[field] = normalise_amount(raw)
        elif field in DATE_FIELDS:
            out[field] = normalise_date(raw, DateOrder.DMY)
        else:
            out[field] = " ".join(str(raw).split())
    return out


SAMPLE_TRUTH_SUFFIX = ".truth.json"


def _truth_values(record: Mapping[str, Any]) -> Values:
    values: Values = {}
    for field in ALL_FIELD_NAMES:
        if field in record:
            raw = record[field]
            values[field] = None if raw is None else str(raw)
    if TAX_LINES in record:
        values[TAX_LINES] = tax_lines_key(record[TAX_LINES] or [])
    return values


def load_samples_gold(path: Path) -> dict[str, Values]:
    """One `<stem>.truth.json` of mmflow's samples: `stem`, or `stem#k` per document it holds.

    Values are already in contract form; a field given as null must come back empty.
    """
    record = json.loads(path.read_text(encoding="utf-8"))
    stem = path.name.removesuffix(SAMPLE_TRUTH_SUFFIX)
    documents = record.get("documents")
    if isinstance(documents, list):
        return {f"{stem}#{k}": _truth_values(doc) for k, doc in enumerate(documents, start=1)}
    return {stem: _truth_values(record)}


def gold_format(gold_dir: Path) -> GoldFormat:
    """SROIE keeps its keys in `key/`; mmflow's samples write `<stem>.truth.json`;
    invoice2data keeps `<name>.json` beside the documents."""
    if (gold_dir / "key").is_dir():
        return "sroie"
    if any(gold_dir.glob(f"*{SAMPLE_TRUTH_SUFFIX}")):
        return "samples"
    return "invoice2data"


def load_gold(gold_dir: Path) -> dict[str, Values]:
    """Gold values per document key (the stem, or `stem#k` in a file of several documents)."""
    fmt = gold_format(gold_dir)
    if fmt == "sroie":
        return {p.stem: load_sroie_gold(p) for p in sorted((gold_dir / "key").glob("*.json"))}
    if fmt == "samples":
        gold: dict[str, Values] = {}
        for path in sorted(gold_dir.glob(f"*{SAMPLE_TRUTH_SUFFIX}")):
            gold.update(load_samples_gold(path))
        return gold
    return {p.stem: load_invoice2data_gold(p) for p in sorted(gold_dir.glob("*.json"))}


def gold_documents_by_hash(gold_dir: Path) -> dict[str, str]:
    """sha256 of every document file beside the gold (SROIE: under `img/`) → its stem."""
    folder = gold_dir / "img" if gold_format(gold_dir) == "sroie" else gold_dir
    found: dict[str, str] = {}
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if not path.is_file() or path.suffix.lower() in (".json", ".md") or path.name == "LICENSE":
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        found.setdefault(digest, path.stem)
    return found


def document_text(gold_dir: Path, stem: str) -> str | None:
    """The text a document shows, for the on-page rule: PDF text layer, or the TXT itself."""
    pdf = gold_dir / f"{stem}.pdf"
    if pdf.exists():
        import pymupdf

        with pymupdf.open(pdf) as doc:
            return "\n".join(page.get_text() for page in doc)
    txt = gold_dir / f"{stem}.txt"
    if txt.exists():
        return txt.read_text(encoding="utf-8", errors="replace")
    return None


def shown_on_page(field: str, gold: str, page_text: str) -> bool:
    """Whether the page shows `gold` in any of the formats the extractor reads."""
    if field in AMOUNT_FIELDS:
        shown = {format_amount(m.value) for sep in (".", ",") for m in find_amounts(page_text, sep)}
        return gold in shown or format_amount(-Decimal(gold)) in shown
    if field in DATE_FIELDS:
        return any(
            m.value.isoformat() == gold for order in DateOrder for m in find_dates(page_text, order)
        )
    if field == "currency":
        return gold in {m.code for m in find_currencies(page_text)}
    if field in NUMBER_FIELDS or field in IDENTIFIER_FIELDS:
        # a whole printed token (or a few glued back together: "DE 232 446 240"), never part
        # of a word: a template's "F" is not shown by "Facture"
        key = invoice_number_key(gold)
        tokens = re.split(r"[\s°º:#]+", page_text)  # "n°562044387" shows "562044387"
        return any(
            invoice_number_key("".join(tokens[i : i + n])) == key
            for n in range(1, 7 if field in IDENTIFIER_FIELDS else 4)
            for i in range(len(tokens))
        )
    return bool(_runs(gold)) and f" {_runs(gold)} " in f" {_runs(page_text)} "


def _runs(text: str) -> str:
    """Letter/digit runs separated by single spaces: word boundaries kept, punctuation not."""
    return " ".join(re.findall(r"[^\W_]+", plain(text)))


# ------------------------------------------------------------------ scoring


def _as_predictions(
    predictions: Mapping[str, Mapping[str, str | None]] | Sequence[Prediction],
) -> list[Prediction]:
    """Plain {key: values} mappings (benchmarks, tests) answer the gold of the same key."""
    if isinstance(predictions, Mapping):
        return [
            Prediction(document=key, gold=key, values=dict(values))
            for key, values in predictions.items()
        ]
    return list(predictions)


def evaluate(
    predictions: Mapping[str, Mapping[str, str | None]] | Sequence[Prediction],
    gold_dir: Path,
    page_texts: dict[str, str] | None = None,
    only_predicted: bool = False,
) -> EvalReport:
    """Score predicted field values against the gold in `gold_dir`.

    `predictions` are `Prediction`s (from `load_predictions`), or {gold key: values}.
    `page_texts` overrides the text used for the on-page rule; by default invoice2data
    documents are read from their PDF (or TXT) beside the gold, and SROIE and samples are
    scored in full. A gold document without a prediction is listed as an exclusion
    ("document not processed"), or left out altogether with `only_predicted` (scoring a subset
    on purpose). Two predictions of one gold document (the PDF and a PNG of it) are each scored.
    """
    fmt = gold_format(gold_dir)
    gold = load_gold(gold_dir)
    answers: dict[str, list[Prediction]] = {}
    for prediction in _as_predictions(predictions):
        answers.setdefault(prediction.gold, []).append(prediction)
    if only_predicted:
        gold = {key: values for key, values in gold.items() if key in answers}
    report = EvalReport(
        dataset=f"{fmt}:{gold_dir}",
        documents=sum(max(1, len(answers.get(key, []))) for key in gold),
    )
    for key, expected in gold.items():
        page_text = (page_texts or {}).get(key)
        if page_text is None and fmt == "invoice2data":
            page_text = document_text(gold_dir, key)
        for field, value in expected.items():
            if field not in SCORED_FIELDS or (value is None and fmt != "samples"):
                continue
            score = report.fields.setdefault(field, FieldScore(field=field))
            if key not in answers:
                score.excluded += 1
                report.exclusions.append(
                    Exclusion(
                        document=key,
                        field=field,
                        gold=str(value),
                        reason="document not processed",
                    )
                )
                continue
            if (
                value is not None
                and page_text is not None
                and not shown_on_page(field, value, page_text)
            ):
                score.excluded += 1
                report.exclusions.append(
                    Exclusion(
                        document=key,
                        field=field,
                        gold=value,
                        reason="not on the page (template value)",
                    )
                )
                continue
            for prediction in answers[key]:
                _score_one(report, score, prediction, field, value)
    report.fields = {f: report.fields[f] for f in SCORED_FIELDS if f in report.fields}
    return report


def _score_one(
    report: EvalReport, score: FieldScore, prediction: Prediction, field: str, gold: str | None
) -> None:
    score.total += 1
    got = prediction.values.get(field)
    right = values_match(field, gold, got)
    score.correct += right
    report.scored.append(
        ScoredValue(
            document=prediction.document,
            field=field,
            confidence=prediction.confidences.get(field, 0.0),
            correct=right,
            source=prediction.sources.get(field),
            absent=gold is None,
        )
    )
    if not right:
        report.misses.append(
            Miss(
                document=prediction.document,
                field=field,
                expected="(nothing)" if gold is None else gold,
                predicted=got,
            )
        )


# ------------------------------------------------------------------ reading outputs


def record_by_source(report: EvalReport) -> dict[tuple[str, str], tuple[int, int]]:
    """(field, source) → (right, scored): how often each way of finding a field was right,
    the record `tasks.extraction.calibration` turns into confidences."""
    record: dict[tuple[str, str], tuple[int, int]] = {}
    for value in report.scored:
        if value.source is None:
            continue
        right, scored = record.get((value.field, value.source), (0, 0))
        record[(value.field, value.source)] = (right + value.correct, scored + 1)
    return dict(sorted(record.items()))


def result_values(data: Mapping[str, Any]) -> tuple[Values, dict[str, float]]:
    """Field values and confidences of one `<stem>.json` (InvoiceResult), tax lines included."""
    fields = data.get("fields") or {}
    values: Values = {}
    confidences: dict[str, float] = {}
    for name in ALL_FIELD_NAMES:
        field = fields.get(name) or {}
        values[name] = field.get("value")
        confidences[name] = float(field.get("confidence") or 0.0)
    lines = data.get(TAX_LINES) or []
    values[TAX_LINES] = tax_lines_key(lines)
    confidences[TAX_LINES] = min((float(x.get("confidence") or 0.0) for x in lines), default=0.0)
    return values, confidences


def _read_result(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("fields"), dict) else None


def _manifest_entries(out_dir: Path) -> list[ManifestEntry]:
    path = out_dir / "manifest.jsonl"
    if not path.is_file():
        return []
    entries: list[ManifestEntry] = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.strip():
            try:
                entries.append(ManifestEntry.model_validate_json(line))
            except ValueError:
                continue
    return entries


def _name_of(uri: str) -> str:
    return PurePosixPath(uri.replace("\\", "/")).name


def load_predictions(out_dir: Path, gold_dir: Path | None = None) -> list[Prediction]:
    """Predictions from an output folder, each tied to the gold document it answers.

    With a manifest, each `ok` input's result files are read and matched to gold by the
    input's sha256 (a copy or a re-named upload still matches), else by its file name's stem;
    the k-th document of an input of several answers `stem#k`. Without a manifest (or with
    none of its lines readable: a folder of result files only), each `<stem>.json` answers
    gold `stem`.
    """
    gold_keys = set(load_gold(gold_dir)) if gold_dir is not None else set()
    by_hash = gold_documents_by_hash(gold_dir) if gold_dir is not None else {}
    entries = _manifest_entries(out_dir)
    predictions: list[Prediction] = []
    if not entries:
        for path in sorted(out_dir.glob("*.json")):
            data = _read_result(path)
            if data is not None:
                values, confidences = result_values(data)
                predictions.append(
                    Prediction(
                        document=path.name, gold=path.stem, values=values, confidences=confidences
                    )
                )
        return predictions
    for entry in entries:
        if entry.status is not Status.OK or entry.output is None:
            continue
        name = _name_of(entry.uri)
        stem = by_hash.get(entry.sha256 or "") or PurePosixPath(name).stem
        outputs = entry.outputs or [entry.output]
        for number, output in enumerate(outputs, start=1):
            data = _read_result(out_dir / _name_of(output))
            if data is None:
                continue
            several = len(outputs) > 1 or f"{stem}#1" in gold_keys
            key = f"{stem}#{number}" if several else stem
            document = f"{name}#{number}" if len(outputs) > 1 else name
            values, confidences = result_values(data)
            predictions.append(
                Prediction(document=document, gold=key, values=values, confidences=confidences)
            )
    return predictions


# ------------------------------------------------------------------ reliability

RELIABILITY_BANDS: tuple[tuple[float, float], ...] = (
    (0.0, 0.3),
    (0.3, 0.5),
    (0.5, 0.7),
    (0.7, 0.8),
    (0.8, 0.9),
    (0.9, 0.95),
    (0.95, 1.0001),
)
CONFIDENT = 0.9
"""Confidence from which a value should be right at least 97% of the time (docs/calibration.md)."""


def reliability(report: EvalReport) -> list[ReliabilityBand]:
    """How often scored values were right, per confidence band (values the gold says are
    absent are left out: an empty answer has no confidence to judge)."""
    bands = [
        ReliabilityBand(low=low, high=min(high, 1.0), values=0, correct=0)
        for low, high in RELIABILITY_BANDS
    ]
    for value in (v for v in report.scored if not v.absent):
        for band, (low, high) in zip(bands, RELIABILITY_BANDS, strict=True):
            if low <= value.confidence < high:
                band.values += 1
                band.correct += value.correct
                break
    return bands


def confident_share(report: EvalReport) -> tuple[float | None, float | None]:
    """(share of scored values at confidence ≥ 0.9, how often those were right)."""
    judged = [v for v in report.scored if not v.absent]
    confident = [v for v in judged if v.confidence >= CONFIDENT]
    if not judged:
        return None, None
    share = len(confident) / len(judged)
    accuracy = sum(v.correct for v in confident) / len(confident) if confident else None
    return share, accuracy


def render_reliability(report: EvalReport) -> Table:
    """Accuracy per confidence band: calibrated bands are right about as often as they say."""
    share, accuracy = confident_share(report)
    caption = (
        f"{share:.0%} of scored values at confidence ≥ {CONFIDENT}, right "
        + ("—" if accuracy is None else f"{accuracy:.1%}")
        + " of the time"
        if share is not None
        else "nothing scored"
    )
    table = Table(title=f"reliability — {report.dataset}", caption=caption)
    table.add_column("confidence")
    table.add_column("values", justify="right")
    table.add_column("right", justify="right")
    table.add_column("accuracy", justify="right")
    for band in reliability(report):
        table.add_row(
            f"{band.low:.2f}–{band.high:.2f}",
            str(band.values),
            str(band.correct),
            "—" if band.accuracy is None else f"{band.accuracy:.1%}",
        )
    return table


def render_report(report: EvalReport) -> Table:
    """Per-field accuracy as a rich table; excluded counts gold values not on the page."""
    table = Table(title=f"{report.dataset} — {report.documents} documents")
    table.add_column("field")
    table.add_column("correct", justify="right")
    table.add_column("scored", justify="right")
    table.add_column("accuracy", justify="right")
    table.add_column("excluded", justify="right")
    for score in report.fields.values():
        accuracy = score.accuracy
        table.add_row(
            score.field,
            str(score.correct),
            str(score.total),
            "—" if accuracy is None else f"{accuracy:.0%}",
            str(score.excluded),
        )
    return table
