"""The response cache: a repeated call is answered from disk and costs nothing."""

from __future__ import annotations

import random
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import BaseModel

from mmflow.blocks.providers import Budget, OpenAIProvider, ResponseCache, response_cache_key
from tests.fakeproviders import OPENAI_CHAT, FakeClock, FakeServer, openai_chat, png_bytes

GOOD = '{"merchant": "Coolblue", "total": "279.84"}'


class Receipt(BaseModel):
    merchant: str
    total: Decimal


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as fake:
        fake.on("POST", OPENAI_CHAT, lambda _: openai_chat(GOOD))
        yield fake


def make(server: FakeServer, cache_dir: Path) -> OpenAIProvider:
    block = OpenAIProvider(api_key="sk", base_url=f"{server.url}/v1", cache_dir=str(cache_dir))
    block.use(clock=FakeClock(), rng=random.Random(0))
    return block


def test_a_repeated_call_is_served_from_the_cache_at_zero_cost(server, tmp_path):
    page = png_bytes(900, 700)
    first = make(server, tmp_path).extract_from_images([page], "Read.", Receipt)
    # A new block instance (e.g. a later flow run) over the same folder.
    again = make(server, tmp_path).extract_from_images([page], "Read.", Receipt)
    assert len(server.sent(OPENAI_CHAT)) == 1
    assert again.cached and again.cost_usd == 0 and again.attempts == 0
    assert again.value == first.value and first.cost_usd > 0 and not first.cached
    assert list(tmp_path.rglob("*.json"))


def test_a_different_image_prompt_or_detail_misses(server, tmp_path):
    provider = make(server, tmp_path)
    page = png_bytes(900, 700)
    provider.extract_from_images([page], "Read.", Receipt)
    provider.extract_from_images([png_bytes(900, 701)], "Read.", Receipt)
    provider.extract_from_images([page], "Read the total.", Receipt)
    provider.extract_from_images([page], "Read.", Receipt, detail="low")
    assert len(server.sent(OPENAI_CHAT)) == 4


def test_a_changed_schema_misses(server, tmp_path):
    provider = make(server, tmp_path)
    page = png_bytes(900, 700)
    provider.extract_from_images([page], "Read.", Receipt)

    class ReceiptV2(BaseModel):
        merchant: str
        total: Decimal
        note: str | None = None

    ReceiptV2.__name__ = "Receipt"  # same name, different fields
    provider.extract_from_images([page], "Read.", ReceiptV2)
    assert len(server.sent(OPENAI_CHAT)) == 2


def test_a_cached_low_answer_does_not_stand_in_for_an_affordable_high_request(server, tmp_path):
    provider = make(server, tmp_path)
    page = png_bytes(900, 700)
    provider.extract_from_images([page], "Read.", Receipt, detail="low")
    again = provider.extract_from_images([page], "Read.", Receipt, detail="high")
    assert not again.cached and again.detail == "high"
    assert len(server.sent(OPENAI_CHAT)) == 2


def test_a_cached_low_answer_serves_a_high_request_the_budget_must_downgrade(server, tmp_path):
    provider = make(server, tmp_path)
    page = png_bytes(900, 700)
    provider.extract_from_images([page], "Read.", Receipt, detail="low")
    low = provider.estimate([page], "Read.", Receipt, detail="low").cost_usd
    budget = Budget(max_usd_per_request=low)
    again = provider.extract_from_images([page], "Read.", Receipt, detail="high", budget=budget)
    assert again.cached and again.detail == "low" and again.downgraded and again.cost_usd == 0
    assert len(server.sent(OPENAI_CHAT)) == 1 and budget.spent_usd == 0


def test_cache_keys_depend_on_every_input():
    base = dict(
        provider="openai",
        model="gpt-4o",
        prompt="p",
        image_sha256s=["a"],
        schema=Receipt,
        detail="high",
    )
    key = response_cache_key(**base)  # type: ignore[arg-type]
    for change in (
        {"model": "gpt-4o-mini"},
        {"prompt": "q"},
        {"image_sha256s": ["b"]},
        {"detail": "low"},
        {"provider": "anthropic"},
    ):
        assert response_cache_key(**{**base, **change}) != key  # type: ignore[arg-type]


def test_cache_works_on_an_fsspec_memory_filesystem():
    from mmflow.blocks.providers.cache import CachedReply
    from mmflow.tasks.provider.results import Usage

    cache = ResponseCache("memory://mmflow-test-cache")
    reply = CachedReply(text=GOOD, model="gpt-4o", usage=Usage(input_tokens=5, output_tokens=2))
    cache.put("ab" * 32, reply)
    assert cache.get("ab" * 32) == reply and cache.get("cd" * 32) is None
