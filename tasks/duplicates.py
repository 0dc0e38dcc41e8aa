"""duplicate_of: the same invoice received twice, whatever its bytes.

A re-scan, a PDF sent again by e-mail, a copy saved under another name: each has bytes (and a
sha256) of its own, so content addressing cannot tell it is the same invoice. What stays the
same is what the invoice says: who issued it, its number and its total. Two documents are the
same invoice when their numbers and totals agree and so does their issuer, by tax ID when both
print one, else by name (legal form, case and punctuation aside).

Earlier means: held in the output folder before this run (any input but the one being run
again), or written earlier in this run. Each later copy gets a `duplicate_of` check naming the
earlier input (and its document, for files of several) before its result file is written, so
the file, its manifest line and its recorded asset all say the same.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

import fsspec
from pydantic import BaseModel

from mmflow.tasks.extraction.text import invoice_number_key, name_key
from mmflow.tasks.identifier_checks import compact_identifier
from mmflow.tasks.models import Check, CheckStatus, InvoiceResult, Status
from mmflow.tasks.persist import Manifest, join

DUPLICATE_CHECK = "duplicate_of"


class Identity(BaseModel):
    """What makes an invoice the same invoice, and where it was read."""

    uri: str
    document: int = 1
    documents: int = 1
    issuer_tax_id: str | None = None
    issuer_name: str | None = None
    invoice_number: str
    total: Decimal

    @property
    def where(self) -> str:
        return self.uri if self.documents == 1 else f"{self.uri} (document {self.document})"


def identity_of(result: InvoiceResult) -> Identity | None:
    """The identity of one result; None when it has no number or total to compare."""
    fields = result.fields
    number = fields.get("invoice_number")
    total = fields.get("total")
    if number is None or number.value is None or total is None or total.value is None:
        return None
    try:
        amount = Decimal(total.value)
    except InvalidOperation:
        return None
    tax_id = fields.get("issuer_tax_id")
    name = fields.get("issuer_name")
    return Identity(
        uri=result.source.uri,
        document=result.source.document,
        documents=result.source.documents,
        issuer_tax_id=compact_identifier(tax_id.value) if tax_id and tax_id.value else None,
        issuer_name=name.value if name else None,
        invoice_number=number.value,
        total=amount,
    )


def _key(identity: Identity) -> tuple[str, Decimal]:
    return invoice_number_key(identity.invoice_number), identity.total.quantize(Decimal("0.01"))


def same_invoice(later: Identity, earlier: Identity) -> str | None:
    """Why `later` is the invoice `earlier` already was, or None when it is not."""
    if _key(later) != _key(earlier):
        return None
    said = f"invoice number {later.invoice_number}, total {later.total}"
    if later.issuer_tax_id and earlier.issuer_tax_id:
        if later.issuer_tax_id != earlier.issuer_tax_id:
            return None
        return f"same issuer tax ID {later.issuer_tax_id}, {said}"
    if later.issuer_name and earlier.issuer_name:
        if name_key(later.issuer_name) != name_key(earlier.issuer_name):
            return None
        return f"same issuer {later.issuer_name!r}, {said}"
    return None


Key = tuple[str, Decimal]


def _earlier_of(identity: Identity, pool: Iterable[Identity]) -> tuple[Identity, str] | None:
    """The first of `pool` (documents with the same key) that `identity` repeats, and why.
    Documents of one input are never each other's duplicates."""
    for earlier in pool:
        if earlier.uri == identity.uri:
            continue
        reason = same_invoice(identity, earlier)
        if reason is not None:
            return earlier, reason
    return None


def _index(identities: Iterable[Identity]) -> dict[Key, list[Identity]]:
    index: dict[Key, list[Identity]] = {}
    for identity in identities:
        index.setdefault(_key(identity), []).append(identity)
    return index


def find_duplicates(
    held: Iterable[Identity], arriving: Iterable[Identity]
) -> list[tuple[Identity, Identity, str]]:
    """(later, earlier, why) for each arriving document that repeats one held or arrived
    before it."""
    seen = _index(held)
    found: list[tuple[Identity, Identity, str]] = []
    for identity in arriving:
        pool = seen.setdefault(_key(identity), [])
        if (match := _earlier_of(identity, pool)) is not None:
            found.append((identity, *match))
        pool.append(identity)
    return found


def duplicate_check(earlier: Identity, reason: str) -> Check:
    return Check(
        name=DUPLICATE_CHECK,
        status=CheckStatus.FAIL,
        detail=f"a duplicate of {earlier.where}: {reason}",
    )


def marked_duplicate(result: InvoiceResult, earlier: Identity, reason: str) -> InvoiceResult:
    """The result with its `duplicate_of` check, and marked for review (paying twice is the
    mistake this catches)."""
    check = duplicate_check(earlier, reason)
    return result.model_copy(
        update={
            "checks": [c for c in result.checks if c.name != DUPLICATE_CHECK] + [check],
            "review": True,
            "review_reasons": [
                r for r in result.review_reasons if not r.startswith(DUPLICATE_CHECK)
            ]
            + [f"{check.name}: {check.detail}"],
        }
    )


def read_result(path: str, out: str) -> InvoiceResult | None:
    """A result file as the manifest names it (or by its name in `out`, if `out` moved)."""
    for candidate in (path, join(out, path.replace("\\", "/").rsplit("/", 1)[-1])):
        try:
            with fsspec.open(candidate, "r", encoding="utf-8") as handle:
                return InvoiceResult.model_validate_json(handle.read())
        except (OSError, ValueError):
            continue
    return None


def held_identities(out: str) -> list[Identity]:
    """The invoices `out` already holds, from its manifest and result files: read before a
    run, so a repeated invoice is caught against earlier runs too."""
    identities: list[Identity] = []
    for entry in Manifest(out).latest().values():
        if entry.status is not Status.OK:
            continue
        for path in entry.outputs or ([entry.output] if entry.output else []):
            result = read_result(path, out)
            identity = identity_of(result) if result is not None else None
            if identity is not None:
                identities.append(identity)
    return identities


class SeenInvoices:
    """The invoices seen so far: those the output folder held before the run, then each
    input's as it is written. Checking and adding happen under one lock, so of two copies
    ending at once exactly one is the earlier.

    Shared by the threads of one process; a process-based runner (Dask, Ray) gives each worker
    a copy, so copies within a run that meet only on different workers are not caught.
    """

    def __init__(self, held: Iterable[Identity] = ()) -> None:
        self._lock = threading.Lock()
        # By invoice number and total, so checking one in costs the same at the 10,000th.
        self._seen = _index(held)

    def check_in(self, result: InvoiceResult) -> InvoiceResult:
        """The result, with its `duplicate_of` check when it repeats an invoice seen before;
        either way it is seen from now on."""
        identity = identity_of(result)
        if identity is None:
            return result
        with self._lock:
            pool = self._seen.setdefault(_key(identity), [])
            match = _earlier_of(identity, pool)
            pool.append(identity)
        if match is None:
            return result
        earlier, reason = match
        return marked_duplicate(result, earlier, reason)

    def __getstate__(self) -> dict[str, Any]:  # a lock does not pickle (Dask, Ray workers)
        return {"_seen": self._seen}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._seen = state["_seen"]
        self._lock = threading.Lock()
