"""Anthropic provider driven through the real `anthropic` SDK against a local Messages API."""

from __future__ import annotations

import base64
import io
import random
from collections.abc import Iterator
from decimal import Decimal

import pytest
from PIL import Image
from pydantic import BaseModel, Field

from mmflow.blocks.providers import AnthropicProvider, FailureKind, ProviderCallFailed
from mmflow.tasks.estimate import estimate_cost, model_image_tokens
from tests.fakeproviders import (
    ANTHROPIC_MESSAGES,
    FakeClock,
    FakeServer,
    anthropic_error,
    anthropic_reply,
    image_parts,
    png_bytes,
)

TOOL = "record_Receipt"
GOOD = {"merchant": "Coolblue", "total": "279.84", "currency": "EUR"}


class Receipt(BaseModel):
    merchant: str
    total: Decimal
    currency: str = Field(pattern=r"^[A-Z]{3}$")


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as fake:
        yield fake


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def page() -> bytes:
    return png_bytes(1600, 1200)


def make(server: FakeServer, clock: FakeClock, **settings: object) -> AnthropicProvider:
    provider = AnthropicProvider(api_key="sk-ant-test", base_url=server.url, **settings)
    provider.use(clock=clock, rng=random.Random(3))
    return provider


def sent_image_size(part: dict) -> tuple[int, int]:
    data = base64.b64decode(part["source"]["data"])
    with Image.open(io.BytesIO(data)) as img:
        return img.size


def test_structured_output_is_a_forced_tool_call_with_the_schema(server, clock, page):
    server.queue("POST", ANTHROPIC_MESSAGES, anthropic_reply(GOOD, tool_name=TOOL))
    result = make(server, clock).extract_from_images([page], "Read the receipt.", Receipt)

    request = server.sent(ANTHROPIC_MESSAGES)[0]
    body = request.json()
    auth = request.headers.get("x-api-key") or request.headers["authorization"]
    assert auth.endswith("sk-ant-test")
    assert body["tool_choice"] == {"type": "tool", "name": TOOL}
    assert body["tools"][0]["input_schema"] == Receipt.model_json_schema()
    (part,) = image_parts(body)
    assert part["source"]["type"] == "base64" and part["source"]["media_type"] == "image/png"
    assert sent_image_size(part) == (1600, 1200)
    assert result.value.total == Decimal("279.84")
    assert result.cost_usd == estimate_cost("claude-sonnet-4", 1200, 80)
    assert result.estimate.image_tokens == model_image_tokens("claude-sonnet-4", 1600, 1200)


def test_rate_limit_error_waits_for_retry_after(server, clock, page):
    limited = anthropic_error(
        429,
        "rate_limit_error",
        "Number of request tokens has exceeded",
        headers={"retry-after": "12"},
    )
    server.queue("POST", ANTHROPIC_MESSAGES, limited, anthropic_reply(GOOD, tool_name=TOOL))
    result = make(server, clock).extract_from_images([page], "Read.", Receipt)
    assert result.attempts == 2 and 12 <= clock.sleeps[0] <= 13


def test_overloaded_529_is_retried(server, clock, page):
    overloaded = anthropic_error(529, "overloaded_error", "Overloaded")
    server.queue(
        "POST", ANTHROPIC_MESSAGES, overloaded, overloaded, anthropic_reply(GOOD, tool_name=TOOL)
    )
    result = make(server, clock).extract_from_images([page], "Read.", Receipt)
    assert result.attempts == 3 and len(clock.sleeps) == 2


def test_invalid_request_error_is_not_retried(server, clock, page):
    server.queue(
        "POST",
        ANTHROPIC_MESSAGES,
        anthropic_error(400, "invalid_request_error", "messages: field required"),
    )
    with pytest.raises(ProviderCallFailed) as info:
        make(server, clock).extract_from_images([page], "Read.", Receipt)
    assert info.value.kind is FailureKind.CLIENT_ERROR
    assert len(server.sent(ANTHROPIC_MESSAGES)) == 1


def test_schema_violation_is_repaired_through_a_tool_result_error(server, clock, page):
    bad = {"merchant": "Coolblue", "total": "a lot", "currency": "EUR"}
    server.queue(
        "POST",
        ANTHROPIC_MESSAGES,
        anthropic_reply(bad, tool_name=TOOL),
        anthropic_reply(GOOD, tool_name=TOOL),
    )
    result = make(server, clock).extract_from_images([page], "Read.", Receipt)

    assert result.repaired and result.value.total == Decimal("279.84")
    messages = server.sent(ANTHROPIC_MESSAGES)[1].json()["messages"]
    tool_use = messages[-2]["content"][0]
    tool_result = messages[-1]["content"][0]
    assert tool_use["type"] == "tool_use" and tool_use["input"] == bad
    assert tool_result["type"] == "tool_result" and tool_result["is_error"] is True
    assert tool_result["tool_use_id"] == tool_use["id"]
    assert "total: Input should be a valid decimal" in tool_result["content"]


def test_prose_instead_of_a_tool_call_is_repaired_with_text_turns(server, clock, page):
    prose = anthropic_reply(
        None, tool_name=TOOL, text="The total is 279.84 EUR.", stop_reason="end_turn"
    )
    server.queue("POST", ANTHROPIC_MESSAGES, prose, anthropic_reply(GOOD, tool_name=TOOL))
    result = make(server, clock).extract_from_images([page], "Read.", Receipt)
    messages = server.sent(ANTHROPIC_MESSAGES)[1].json()["messages"]
    assert messages[-2] == {"role": "assistant", "content": "The total is 279.84 EUR."}
    assert "Invalid JSON" in messages[-1]["content"]
    assert result.repaired


def test_prompt_too_long_is_retried_once_with_smaller_images(server, clock, page):
    too_long = anthropic_error(
        400, "invalid_request_error", "prompt is too long: 210511 tokens > 200000 maximum"
    )
    server.queue("POST", ANTHROPIC_MESSAGES, too_long, anthropic_reply(GOOD, tool_name=TOOL))
    result = make(server, clock).extract_from_images([page], "Read.", Receipt)

    sizes = [sent_image_size(image_parts(r.json())[0]) for r in server.sent(ANTHROPIC_MESSAGES)]
    assert sizes == [(1600, 1200), (512, 384)]
    assert result.detail == "low" and result.downgraded
    assert result.estimate.image_tokens == model_image_tokens("claude-sonnet-4", 512, 384)


def test_client_is_built_with_sdk_retries_off():
    client = AnthropicProvider(api_key="k", timeout_s=9.0).client()
    assert client.max_retries == 0 and client.timeout == 9.0
