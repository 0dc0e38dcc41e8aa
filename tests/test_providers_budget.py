"""Budgets refuse or downgrade before a call is sent, never after."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from decimal import Decimal

import pytest
from pydantic import BaseModel

from mmflow.blocks.providers import Budget, BudgetExceeded, OpenAIProvider, estimate_text_tokens
from tests.fakeproviders import (
    OPENAI_CHAT,
    FakeClock,
    FakeServer,
    assert_no_auto_detail,
    image_parts,
    openai_chat,
    png_bytes,
)

GOOD = '{"merchant": "Coolblue", "total": "279.84"}'


class Receipt(BaseModel):
    merchant: str
    total: Decimal


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as fake:
        fake.on(
            "POST",
            OPENAI_CHAT,
            lambda _: openai_chat(GOOD, prompt_tokens=1000, completion_tokens=50),
        )
        yield fake
        assert_no_auto_detail(fake)


@pytest.fixture
def provider(server: FakeServer) -> OpenAIProvider:
    block = OpenAIProvider(api_key="sk-test", base_url=f"{server.url}/v1", model="gpt-4o")
    block.use(clock=FakeClock(), rng=random.Random(1))
    return block


@pytest.fixture
def page() -> bytes:
    return png_bytes(1000, 2000)  # a tall scan: 768x1536 after scaling, 6 tiles at high detail


def test_per_request_limit_refuses_a_larger_estimate():
    budget = Budget(max_usd_per_request=Decimal("0.01"))
    with pytest.raises(BudgetExceeded, match="per-request limit"):
        budget.reserve(Decimal("0.011"))
    assert budget.reserve(Decimal("0.01")).amount_usd == Decimal("0.01")


def test_run_limit_counts_holds_and_settled_spend():
    budget = Budget(max_usd_per_run=Decimal("1.00"))
    first = budget.reserve(Decimal("0.60"))
    with pytest.raises(BudgetExceeded):
        budget.reserve(Decimal("0.50"))  # 0.60 is held
    budget.settle(first, Decimal("0.30"))  # billed less than estimated
    budget.reserve(Decimal("0.50"))
    assert budget.spent_usd == Decimal("0.30") and budget.remaining_usd() == Decimal("0.20")


def test_parallel_reservations_never_overspend_the_run():
    budget = Budget(max_usd_per_run=Decimal("1.0"))
    admitted: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(40)

    def worker() -> None:
        start.wait()
        try:
            budget.reserve(Decimal("0.1"))
            ok = True
        except BudgetExceeded:
            ok = False
        with lock:
            admitted.append(ok)

    threads = [threading.Thread(target=worker) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert admitted.count(True) == 10 and budget.reserved_usd == Decimal("1.0")


def test_estimate_covers_images_prompt_schema_and_max_output(provider, page):
    estimate = provider.estimate([page], "Read the receipt.", Receipt, detail="high")
    assert estimate.image_tokens == 85 + 170 * 6
    assert estimate.prompt_tokens >= estimate_text_tokens("Read the receipt.") + 20
    expected = (Decimal(estimate.input_tokens) * Decimal("2.50") + 1024 * Decimal("10")) / 10**6
    assert estimate.cost_usd == expected


def test_budget_between_low_and_high_downgrades_before_the_call(server, provider, page):
    high = provider.estimate([page], "Read.", Receipt, detail="high").cost_usd
    low = provider.estimate([page], "Read.", Receipt, detail="low").cost_usd
    budget = Budget(max_usd_per_request=(high + low) / 2)
    result = provider.extract_from_images([page], "Read.", Receipt, detail="high", budget=budget)

    sent = server.sent(OPENAI_CHAT)
    assert len(sent) == 1 and image_parts(sent[0].json())[0]["image_url"]["detail"] == "low"
    assert result.downgraded and result.detail == "low" and result.estimate.cost_usd == low


def test_budget_below_low_detail_raises_before_any_request(server, provider, page):
    low = provider.estimate([page], "Read.", Receipt, detail="low").cost_usd
    budget = Budget(max_usd_per_request=low / 2)
    with pytest.raises(BudgetExceeded, match="offline route") as info:
        provider.extract_from_images([page], "Read.", Receipt, budget=budget)
    assert server.requests == [] and info.value.estimate_usd == low
    assert budget.spent_usd == 0 and budget.reserved_usd == 0


def test_run_budget_records_billed_cost_and_refuses_the_next_call(server, provider, page):
    one_call = provider.estimate([page], "Read.", Receipt, detail="low").cost_usd
    budget = Budget(max_usd_per_run=one_call * Decimal("1.2"))
    result = provider.extract_from_images([page], "Read.", Receipt, detail="low", budget=budget)
    assert budget.spent_usd == result.cost_usd and budget.calls == 1
    assert budget.reserved_usd == 0

    budget_left = budget.remaining_usd()
    assert budget_left is not None and budget_left < one_call
    with pytest.raises(BudgetExceeded):
        provider.extract_from_images([page], "Read.", Receipt, detail="low", budget=budget)
    assert len(server.sent(OPENAI_CHAT)) == 1


def test_failed_call_releases_its_hold(server, provider, page):
    from tests.fakeproviders import openai_error

    server.queue("POST", OPENAI_CHAT, openai_error(401, "bad key"))
    budget = Budget(max_usd_per_run=Decimal("1"))
    with pytest.raises(Exception, match="bad key"):
        provider.extract_from_images([page], "Read.", Receipt, budget=budget)
    assert budget.reserved_usd == 0 and budget.spent_usd == 0
