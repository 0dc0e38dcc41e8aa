"""evaluate: score extracted fields against ground truth in the invoice2data and SROIE formats.

Both formats are read into our field names with values normalised the way the extractor writes
them (ISO dates, plain decimal amounts, ISO currency codes), and compared after normalising
whitespace, case and punctuation where the field is free text.

Template-free scoring: invoice2data's goldens come from per-issuer templates and hold values the
page never shows (`issuer` spelled as the template names it, sometimes `currency`, an
`invoice_number` of "F"). A gold value is therefore scored only when it can be found in the
document's own text after the same normalisation; the rest are reported as exclusions with the
reason. SROIE keys are transcriptions of the receipt itself, so every SROIE value is scored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal

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
from mmflow.tasks.extraction.text import plain, text_key
from mmflow.tasks.models import AMOUNT_FIELDS, DATE_FIELDS, FIELD_NAMES

GoldFormat = Literal["invoice2data", "sroie"]
Values = dict[str, str | None]

INVOICE2DATA_KEYS: dict[str, str] = {
    "amount": "total",
    "amount_untaxed": "subtotal",
    "amount_tax": "tax_amount",
    "date": "issue_date",
    "date_due": "due_date",
    "invoice_number": "invoice_number",
    "currency": "currency",
    "issuer": "issuer_name",
}
SROIE_KEYS: dict[str, str] = {
    "company": "issuer_name",
    "date": "issue_date",
    "total": "total",
    "address": "issuer_address",
}
NAME_FIELDS = ("issuer_name", "buyer_name", "issuer_address")
_LEGAL_SUFFIX = re.compile(
    r"[\s,]+(?:gmbh|ag|b\.?\s?v\.?|n\.?\s?v\.?|inc\.?|ltd\.?|llc|limited|plc|s\.?a\.?s?|sarl|"
    r"sdn\.?\s*bhd\.?|bhd\.?|s/b|pvt\.?\s*ltd\.?|corp\.?|co\.?)\s*$"
)


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

    def accuracy(self, field: str) -> float | None:
        score = self.fields.get(field)
        return score.accuracy if score else None


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


def name_key(text: str) -> str:
    """A company name without its legal form: 'Amazon Web Services, Inc.' ~ 'Amazon Web Services'.

    Legal forms are dropped from both sides because templates name the issuer without one.
    """
    return text_key(_LEGAL_SUFFIX.sub("", plain(text)))


def invoice_number_key(text: str) -> str:
    return text_key(text.strip().lstrip("#"))


def values_match(field: str, gold: str, predicted: str | None) -> bool:
    if predicted is None:
        return False
    if field in AMOUNT_FIELDS:
        return normalise_amount(predicted) == gold
    if field in DATE_FIELDS:
        return normalise_date(predicted) == gold
    if field == "currency":
        return predicted.strip().upper() == gold.upper()
    if field == "invoice_number":
        return invoice_number_key(predicted) == invoice_number_key(gold)
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


def gold_format(gold_dir: Path) -> GoldFormat:
    """SROIE keeps its keys in `key/`; invoice2data keeps `<name>.json` beside the documents."""
    return "sroie" if (gold_dir / "key").is_dir() else "invoice2data"


def load_gold(gold_dir: Path) -> dict[str, Values]:
    """Gold values per document stem, from either format."""
    if gold_format(gold_dir) == "sroie":
        return {p.stem: load_sroie_gold(p) for p in sorted((gold_dir / "key").glob("*.json"))}
    return {p.stem: load_invoice2data_gold(p) for p in sorted(gold_dir.glob("*.json"))}


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
    if field == "invoice_number":
        # a whole printed token (or up to three glued back together), never part of a word:
        # a template's "F" is not shown by "Facture"
        key = invoice_number_key(gold)
        tokens = re.split(r"[\s°º:#]+", page_text)  # "n°562044387" shows "562044387"
        return any(
            invoice_number_key("".join(tokens[i : i + n])) == key
            for n in (1, 2, 3)
            for i in range(len(tokens))
        )
    return bool(_runs(gold)) and f" {_runs(gold)} " in f" {_runs(page_text)} "


def _runs(text: str) -> str:
    """Letter/digit runs separated by single spaces: word boundaries kept, punctuation not."""
    return " ".join(re.findall(r"[^\W_]+", plain(text)))


# ------------------------------------------------------------------ scoring


def evaluate(
    predictions: Mapping[str, Mapping[str, str | None]],
    gold_dir: Path,
    page_texts: dict[str, str] | None = None,
    only_predicted: bool = False,
) -> EvalReport:
    """Score predicted field values (keyed by document stem) against the gold in `gold_dir`.

    `page_texts` overrides the text used for the on-page rule; by default invoice2data
    documents are read from their PDF (or TXT) beside the gold, and SROIE is scored in full.
    A gold document without a prediction is listed as an exclusion ("document not
    processed"), or left out altogether with `only_predicted` (scoring a subset on purpose).
    """
    fmt = gold_format(gold_dir)
    gold = load_gold(gold_dir)
    if only_predicted:
        gold = {stem: values for stem, values in gold.items() if stem in predictions}
    report = EvalReport(dataset=f"{fmt}:{gold_dir}", documents=len(gold))
    for stem, expected in gold.items():
        predicted = predictions.get(stem, {})
        page_text = (page_texts or {}).get(stem)
        if page_text is None and fmt == "invoice2data":
            page_text = document_text(gold_dir, stem)
        for field, value in expected.items():
            if value is None or field not in FIELD_NAMES:
                continue
            score = report.fields.setdefault(field, FieldScore(field=field))
            if stem not in predictions:
                score.excluded += 1
                report.exclusions.append(
                    Exclusion(
                        document=stem, field=field, gold=value, reason="document not processed"
                    )
                )
                continue
            if page_text is not None and not shown_on_page(field, value, page_text):
                score.excluded += 1
                report.exclusions.append(
                    Exclusion(
                        document=stem,
                        field=field,
                        gold=value,
                        reason="not on the page (template value)",
                    )
                )
                continue
            score.total += 1
            got = predicted.get(field)
            if values_match(field, value, got):
                score.correct += 1
            else:
                report.misses.append(
                    Miss(document=stem, field=field, expected=value, predicted=got)
                )
    report.fields = {f: report.fields[f] for f in FIELD_NAMES if f in report.fields}
    return report


def load_predictions(out_dir: Path) -> dict[str, dict[str, str | None]]:
    """Field values from our `<stem>.json` outputs (InvoiceResult: `fields.<name>.value`)."""
    predictions: dict[str, dict[str, str | None]] = {}
    for path in sorted(out_dir.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        fields = data.get("fields") if isinstance(data, dict) else None
        if not isinstance(fields, dict):
            continue
        predictions[path.stem] = {
            name: (fields.get(name) or {}).get("value") for name in FIELD_NAMES
        }
    return predictions


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
