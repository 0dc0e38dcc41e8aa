"""Confidence that means something: how often each way of finding a field was right.

The extractor's own confidences rank how a value was found (a label beside it, a legal form,
the first date on the page …); they are beliefs, not frequencies. Here each belief is
corrected by the record of that way of finding that field on the public sets (invoice2data
PDFs and TXT, SROIE receipts): the reported confidence is the expected accuracy given that
record, with the extractor's own belief counting as `PRIOR_WEIGHT` observations

    confidence = (right + PRIOR_WEIGHT × belief) / (scored + PRIOR_WEIGHT)

so a way with a long clean record rises towards 1, one that failed falls, and one never seen
on the public sets keeps its belief. Verify then lowers values it cannot ground. The record
below is measured, not chosen: regenerate it after changing the extractor with

    .venv/bin/python benchmarks/eval_extract.py --cache /tmp/ocrcache --record

(it is measured on the sets it is then scored on: the held-out figures are the honest ones;
docs/calibration.md).
"""

from __future__ import annotations

PRIOR_WEIGHT = 10.0

# fmt: off
PUBLIC_RECORD: dict[tuple[str, str], tuple[int, int]] = {
    ('bic', 'label:right'): (2, 2),
    ('currency', 'symbol:amount'): (11, 11),
    ('currency', 'symbol:text'): (1, 1),
    ('due_date', 'label:below'): (2, 2),
    ('due_date', 'label:right'): (1, 1),
    ('iban', 'label:account'): (1, 1),
    ('iban', 'label:right'): (2, 2),
    ('invoice_number', 'label:below'): (3, 3),
    ('invoice_number', 'label:right'): (8, 9),
    ('issue_date', 'first_date'): (33, 33),
    ('issue_date', 'label:below'): (3, 3),
    ('issue_date', 'label:right'): (48, 48),
    ('issuer_address', 'below_issuer'): (61, 75),
    ('issuer_name', 'legal_form'): (48, 50),
    ('issuer_name', 'marketplace'): (1, 1),
    ('issuer_name', 'payee'): (2, 2),
    ('issuer_name', 'registration'): (1, 1),
    ('issuer_name', 'top_of_page'): (27, 30),
    ('issuer_tax_id', 'label:below'): (1, 1),
    ('issuer_tax_id', 'label:right'): (2, 2),
    ('issuer_tax_id', 'pattern:vat_id'): (3, 3),
    ('subtotal', 'arithmetic'): (1, 1),
    ('subtotal', 'arithmetic:line_items'): (1, 1),
    ('subtotal', 'label:below'): (2, 2),
    ('subtotal', 'label:right'): (4, 4),
    ('tax_amount', 'label:below'): (1, 1),
    ('tax_amount', 'label:right'): (1, 1),
    ('total', 'arithmetic'): (1, 1),
    ('total', 'label:right'): (71, 72),
    ('total', 'label:rounding'): (5, 5),
    ('total', 'largest_amount'): (6, 8),
}
# fmt: on


def calibrated(field: str, source: str | None, belief: float) -> float:
    """The confidence to report for a value of `field` found by `source` with `belief`."""
    right, scored = PUBLIC_RECORD.get((field, source or ""), (0, 0))
    return round((right + PRIOR_WEIGHT * belief) / (scored + PRIOR_WEIGHT), 3)
