"""A worker process of the quota race test (tests/test_observability_quota.py), in a module of
its own so a spawned process imports only the quota code, not the flows."""

from __future__ import annotations

import time
from decimal import Decimal

from mmflow.tasks.provider.quota import QuotaExceeded, QuotaGuard, TenantQuota, open_store

SPEND_CALLS = 150  # each worker tries this many $0.01 calls against a $2 hard limit
HARD_USD = Decimal("2")


def spend(store_url: str, start_at: float) -> int:
    """One worker process: as many $0.01 calls as the quota admits; returns how many."""
    guard = QuotaGuard("acme", TenantQuota(usd_hard=HARD_USD), open_store(store_url))
    while time.time() < start_at:  # both workers start together
        time.sleep(0.001)
    admitted = 0
    for _ in range(SPEND_CALLS):
        try:
            hold = guard.admit(0, Decimal("0.01"))
        except QuotaExceeded:
            continue
        guard.settle(hold, 0, Decimal("0.01"))
        admitted += 1
    return admitted
