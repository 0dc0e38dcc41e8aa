"""Schema compliance of invoice outputs: does each result file keep the output contract?

A result complies when it parses as the contract's model (`InvoiceResult`) and every field
value has the form the contract promises (docs/contracts.md): dates ISO 8601, currency an ISO
4217 code, amounts plain decimal strings, confidences within 0..1, a known document type. The
rate is what a consumer that validates our files would see: a change that writes "27,50" or
"12/03/2026" fails it even when the value is right.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date
from pathlib import Path

import pycountry
from pydantic import BaseModel, ValidationError

from mmflow.tasks.models import AMOUNT_FIELDS, DATE_FIELDS, DocumentType, InvoiceResult

DECIMAL_STRING = re.compile(r"-?\d+(\.\d+)?")


class ComplianceScore(BaseModel):
    rate: float
    files: int
    problems: dict[str, list[str]]  # file name → what breaks the contract


def _value_problems(result: InvoiceResult) -> list[str]:
    problems = []
    for name, field in result.fields.items():
        if not 0.0 <= field.confidence <= 1.0:
            problems.append(f"{name}: confidence {field.confidence} outside 0..1")
        value = field.value
        if value is None:
            continue
        if name in DATE_FIELDS:
            try:
                date.fromisoformat(value)
            except ValueError:
                problems.append(f"{name}: {value!r} is not an ISO 8601 date")
        elif name in AMOUNT_FIELDS and not DECIMAL_STRING.fullmatch(value):
            problems.append(f"{name}: {value!r} is not a decimal string")
        elif name == "currency" and pycountry.currencies.get(alpha_3=value) is None:
            problems.append(f"currency: {value!r} is not an ISO 4217 code")
        elif name == "document_type" and value not in {t.value for t in DocumentType}:
            problems.append(f"document_type: {value!r} is not a known type")
    return problems


def file_problems(path: Path) -> list[str]:
    """Why one result file breaks the contract (empty: it complies)."""
    try:
        result = InvoiceResult.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as error:
        return [f"does not parse as the contract: {str(error).splitlines()[0]}"]
    return _value_problems(result)


def schema_compliance(paths: Iterable[Path]) -> ComplianceScore:
    """Share of result files that keep the contract, and what is wrong with the others."""
    files = list(paths)
    problems = {p.name: found for p in files if (found := file_problems(p))}
    rate = (len(files) - len(problems)) / len(files) if files else 0.0
    return ComplianceScore(rate=rate, files=len(files), problems=problems)
