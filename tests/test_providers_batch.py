"""Batch APIs: submit JSONL / message batches, poll, collect at the batch price, and resume
after a restart without submitting twice."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

from mmflow.blocks.providers import (
    AnthropicProvider,
    BatchJob,
    BatchRequest,
    Budget,
    BudgetExceeded,
    OpenAIProvider,
)
from mmflow.tasks.estimate import estimate_batch_cost, estimate_cost
from tests.fakeproviders import (
    AnthropicBatchBackend,
    FakeClock,
    FakeServer,
    OpenAIBatchBackend,
    image_parts,
    png_bytes,
)


class Receipt(BaseModel):
    merchant: str
    total: Decimal


def answer_openai(body: dict[str, Any]) -> str:
    """Echo the prompt back as the merchant so each item's answer is distinguishable."""
    prompt = body["messages"][1]["content"][0]["text"]
    return json.dumps({"merchant": prompt, "total": "10.00"})


def answer_anthropic(params: dict[str, Any]) -> dict[str, Any]:
    prompt = params["messages"][0]["content"][-1]["text"]
    return {"merchant": prompt, "total": "20.00"}


REQUESTS = [
    BatchRequest(custom_id="inv-1", prompt="shop one", images=[png_bytes(600, 800)]),
    BatchRequest(custom_id="inv-2", prompt="shop two", images=[png_bytes(600, 800)], detail="low"),
    BatchRequest(custom_id="inv-3", prompt="shop three"),
]


@pytest.fixture
def openai_server() -> Iterator[tuple[FakeServer, OpenAIBatchBackend]]:
    with FakeServer() as fake:
        yield fake, OpenAIBatchBackend(fake, answer_openai, polls_until_done=2)


def openai_block(server: FakeServer) -> OpenAIProvider:
    block = OpenAIProvider(api_key="sk", base_url=f"{server.url}/v1")
    block.use(clock=FakeClock(), rng=random.Random(0))
    return block


def test_openai_batch_uploads_jsonl_polls_and_collects_at_half_price(openai_server, tmp_path):
    server, _ = openai_server
    clock = FakeClock()
    job = BatchJob(openai_block(server), "receipts-nov", str(tmp_path), clock=clock)
    job.submit(REQUESTS, Receipt)

    upload = server.sent(r"/v1/files")[0].form()
    assert upload["purpose"] == b"batch"
    lines = [json.loads(x) for x in upload["file"].decode().splitlines()]
    assert [x["custom_id"] for x in lines] == ["inv-1", "inv-2", "inv-3"]
    assert {x["url"] for x in lines} == {"/v1/chat/completions"}
    details = [image_parts(x["body"])[0]["image_url"]["detail"] for x in lines[:2]]
    assert details == ["high", "low"]
    assert server.sent(r"/v1/batches")[0].json()["completion_window"] == "24h"

    status = job.wait(interval_s=60)
    assert status.state == "ended" and status.succeeded == 3
    assert clock.sleeps == [60, 60]  # two "in_progress" polls, then completed

    results = job.collect(Receipt)
    assert [r.value.merchant for r in results if r.value] == ["shop one", "shop two", "shop three"]
    for r in results:
        assert r.cost_usd == estimate_batch_cost("gpt-4o", 900, 60)
        assert r.cost_usd == estimate_cost("gpt-4o", 900, 60) / 2
    state = job.state()
    assert state is not None and state.collected and state.cost_usd == 3 * results[0].cost_usd


def test_a_restarted_job_resumes_polling_instead_of_resubmitting(openai_server, tmp_path):
    server, _ = openai_server
    first = BatchJob(openai_block(server), "nightly", str(tmp_path))
    batch_id = first.submit(REQUESTS, Receipt)
    assert first.poll().state == "running"

    # The process dies; a new one builds everything again from configuration.
    again = BatchJob(openai_block(server), "nightly", str(tmp_path), clock=FakeClock())
    assert again.submit(REQUESTS, Receipt) == batch_id
    assert len(server.sent(r"/v1/batches")) == 1 and len(server.sent(r"/v1/files")) == 1
    again.wait(interval_s=1)
    assert len(again.collect(Receipt)) == 3
    state = again.state()
    assert state is not None and state.polls == 3 and state.batch_id == batch_id


def test_collecting_a_running_batch_is_refused(openai_server, tmp_path):
    server, _ = openai_server
    job = BatchJob(openai_block(server), "early", str(tmp_path))
    job.submit(REQUESTS, Receipt)
    with pytest.raises(ValueError, match="poll again later"):
        job.collect(Receipt)


def test_batch_over_budget_is_refused_before_upload(openai_server, tmp_path):
    server, _ = openai_server
    provider = openai_block(server)
    estimate = provider.estimate_batch(REQUESTS, Receipt)
    full = sum(
        (
            provider.estimate_request(r).cost_usd
            for _, r in provider.batch_requests(REQUESTS, Receipt)
        ),
        Decimal("0"),
    )
    assert estimate == full / 2  # the batch estimate is at the discounted price
    with pytest.raises(BudgetExceeded):
        BatchJob(provider, "too-dear", str(tmp_path)).submit(
            REQUESTS, Receipt, budget=Budget(max_usd_per_run=estimate / 2)
        )
    assert server.requests == [] and not (tmp_path / "too-dear.json").exists()


def test_anthropic_message_batch_round_trip_at_half_price(tmp_path):
    with FakeServer() as server:
        backend = AnthropicBatchBackend(server, answer_anthropic, polls_until_done=1)
        provider = AnthropicProvider(api_key="k", base_url=server.url)
        provider.use(clock=FakeClock())
        job = BatchJob(provider, "claude-run", str(tmp_path), clock=FakeClock())
        batch_id = job.submit(REQUESTS, Receipt)

        (created,) = server.sent(r"/v1/messages/batches")
        items = created.json()["requests"]
        assert [i["custom_id"] for i in items] == ["inv-1", "inv-2", "inv-3"]
        assert items[0]["params"]["tool_choice"] == {"type": "tool", "name": "record_Receipt"}
        assert job.wait(interval_s=5).state == "ended"
        results = job.collect(Receipt)
        assert backend.retrievals[batch_id] >= 2
    assert [r.value.merchant for r in results if r.value] == ["shop one", "shop two", "shop three"]
    assert all(r.cost_usd == estimate_cost("claude-sonnet-4", 1200, 80) / 2 for r in results)
