"""OpenAI and OpenAI-compatible providers driven through the real `openai` SDK against a local
server speaking the wire format; every injected failure ends in its documented recovery."""

from __future__ import annotations

import email.utils
import json
import random
from collections.abc import Iterator
from decimal import Decimal

import pytest
from pydantic import BaseModel, Field

from mmflow.blocks.providers import (
    FailureKind,
    OpenAICompatibleProvider,
    OpenAIProvider,
    ProviderCallFailed,
    SchemaValidationFailed,
)
from mmflow.tasks.estimate import estimate_cost, model_image_tokens
from tests.fakeproviders import (
    OPENAI_CHAT,
    OPENAI_RESPONSES,
    OPENAI_TRANSCRIBE,
    FakeClock,
    FakeServer,
    Reply,
    assert_no_auto_detail,
    image_parts,
    openai_chat,
    openai_error,
    openai_response,
    openai_transcription,
    png_bytes,
)

GOOD = '{"merchant": "Coolblue", "total": "279.84", "currency": "EUR"}'


class Receipt(BaseModel):
    merchant: str
    total: Decimal
    currency: str = Field(pattern=r"^[A-Z]{3}$")


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as fake:
        yield fake
        assert_no_auto_detail(fake)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def page() -> bytes:
    return png_bytes(1600, 1200)


def make(server: FakeServer, clock: FakeClock, **settings: object) -> OpenAIProvider:
    provider = OpenAIProvider(
        api_key="sk-test", base_url=f"{server.url}/v1", model="gpt-4o", **settings
    )
    provider.use(clock=clock, rng=random.Random(7))
    return provider


def test_extraction_sends_strict_json_schema_and_explicit_high_detail(server, clock, page):
    server.queue("POST", OPENAI_CHAT, openai_chat(GOOD, prompt_tokens=1100, completion_tokens=40))
    result = make(server, clock).extract_from_images([page], "Read the receipt.", Receipt)

    body = server.sent(OPENAI_CHAT)[0].json()
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["name"] == "Receipt"
    assert body["response_format"]["json_schema"]["strict"] is True
    (part,) = image_parts(body)
    assert part["image_url"]["detail"] == "high"
    assert part["image_url"]["url"].startswith("data:image/png;base64,")
    assert body["max_completion_tokens"] == 1024
    assert result.value == Receipt(merchant="Coolblue", total=Decimal("279.84"), currency="EUR")
    assert result.usage.input_tokens == 1100 and result.usage.output_tokens == 40
    assert result.cost_usd == estimate_cost("gpt-4o", 1100, 40)
    assert result.estimate.image_tokens == model_image_tokens("gpt-4o", 1600, 1200, "high") == 765
    assert result.attempts == 1 and not result.repaired


def test_auto_detail_is_refused_before_any_request(server, clock, page):
    with pytest.raises(ValueError, match="auto"):
        make(server, clock).extract_from_images([page], "Read.", Receipt, detail="auto")  # type: ignore[arg-type]
    assert server.requests == []


def test_429_waits_at_least_retry_after_seconds_then_succeeds(server, clock, page):
    limited = openai_error(
        429,
        "Rate limit reached",
        type="requests",
        code="rate_limit_exceeded",
        headers={"retry-after": "7"},
    )
    server.queue("POST", OPENAI_CHAT, limited, openai_chat(GOOD))
    result = make(server, clock).extract_from_images([page], "Read.", Receipt)
    assert result.attempts == 2
    assert len(clock.sleeps) == 1 and 7 <= clock.sleeps[0] <= 8


def test_retry_after_ms_header_is_honoured(server, clock, page):
    limited = openai_error(429, "slow down", headers={"retry-after-ms": "2500"})
    server.queue("POST", OPENAI_CHAT, limited, openai_chat(GOOD))
    make(server, clock).extract_from_images([page], "Read.", Receipt)
    assert 2.5 <= clock.sleeps[0] <= 2.75


def test_retry_after_http_date_is_honoured(server, clock, page):
    when = email.utils.formatdate(clock.time() + 30, usegmt=True)
    server.queue(
        "POST",
        OPENAI_CHAT,
        openai_error(429, "later", headers={"retry-after": when}),
        openai_chat(GOOD),
    )
    make(server, clock).extract_from_images([page], "Read.", Receipt)
    assert 29 <= clock.sleeps[0] <= 31


def test_500s_are_retried_with_growing_backoff(server, clock, page):
    boom = openai_error(500, "The server had an error", type="server_error")
    server.queue("POST", OPENAI_CHAT, boom, boom, openai_chat(GOOD))
    result = make(server, clock).extract_from_images([page], "Read.", Receipt)
    assert result.attempts == 3
    first, second = clock.sleeps
    assert 0.5 <= first <= 1.0 <= second <= 2.0  # base 1 s, doubling, equal jitter


def test_retries_stop_after_max_retries_with_a_typed_error(server, clock, page):
    server.on("POST", OPENAI_CHAT, lambda _: openai_error(503, "unavailable", type="server_error"))
    with pytest.raises(ProviderCallFailed) as info:
        make(server, clock, max_retries=2).extract_from_images([page], "Read.", Receipt)
    assert info.value.kind is FailureKind.SERVER_ERROR and info.value.attempts == 3
    assert len(server.sent(OPENAI_CHAT)) == 3


def test_client_timeout_is_retried(server, clock, page):
    slow = Reply(200, openai_chat(GOOD).body, delay_s=1.5)
    server.queue("POST", OPENAI_CHAT, slow, openai_chat(GOOD))
    result = make(server, clock, timeout_s=0.3).extract_from_images([page], "Read.", Receipt)
    assert result.attempts == 2 and result.value.merchant == "Coolblue"


def test_401_is_not_retried(server, clock, page):
    server.queue(
        "POST", OPENAI_CHAT, openai_error(401, "Incorrect API key provided", code="invalid_api_key")
    )
    with pytest.raises(ProviderCallFailed) as info:
        make(server, clock).extract_from_images([page], "Read.", Receipt)
    assert info.value.kind is FailureKind.CLIENT_ERROR and info.value.status == 401
    assert len(server.sent(OPENAI_CHAT)) == 1 and clock.sleeps == []


def test_insufficient_quota_429_is_not_retried(server, clock, page):
    server.queue(
        "POST",
        OPENAI_CHAT,
        openai_error(
            429,
            "You exceeded your current quota",
            type="insufficient_quota",
            code="insufficient_quota",
        ),
    )
    with pytest.raises(ProviderCallFailed):
        make(server, clock).extract_from_images([page], "Read.", Receipt)
    assert len(server.sent(OPENAI_CHAT)) == 1


def test_x_should_retry_false_stops_a_500_retry(server, clock, page):
    boom = openai_error(
        500, "do not retry", type="server_error", headers={"x-should-retry": "false"}
    )
    server.queue("POST", OPENAI_CHAT, boom)
    with pytest.raises(ProviderCallFailed):
        make(server, clock).extract_from_images([page], "Read.", Receipt)
    assert len(server.sent(OPENAI_CHAT)) == 1


def test_schema_violation_gets_one_repair_carrying_the_validation_error(server, clock, page):
    bad = '{"merchant": "Coolblue", "total": "279.84", "currency": "euro"}'
    server.queue("POST", OPENAI_CHAT, openai_chat(bad), openai_chat(GOOD))
    result = make(server, clock).extract_from_images([page], "Read.", Receipt)

    assert result.repaired and result.attempts == 2 and result.value.currency == "EUR"
    repair = server.sent(OPENAI_CHAT)[1].json()["messages"]
    assert repair[-2] == {"role": "assistant", "content": bad}
    assert "currency: String should match pattern" in repair[-1]["content"]
    assert result.usage.input_tokens == 1800  # both calls are billed and reported


def test_truncated_json_is_repaired_with_a_cut_off_note(server, clock, page):
    cut = openai_chat('{"merchant": "Coolblue", "tot', finish_reason="length")
    server.queue("POST", OPENAI_CHAT, cut, openai_chat(GOOD))
    result = make(server, clock).extract_from_images([page], "Read.", Receipt)
    assert result.repaired
    note = server.sent(OPENAI_CHAT)[1].json()["messages"][-1]["content"]
    assert "EOF while parsing" in note and "cut off" in note


def test_a_second_schema_failure_raises_schema_validation_failed(server, clock, page):
    server.on("POST", OPENAI_CHAT, lambda _: openai_chat('{"merchant": "X"}'))
    with pytest.raises(SchemaValidationFailed) as info:
        make(server, clock).extract_from_images([page], "Read.", Receipt)
    assert "total: Field required" in info.value.errors and info.value.attempts == 2
    assert len(server.sent(OPENAI_CHAT)) == 2


def test_token_limit_400_is_retried_once_at_low_detail(server, clock, page):
    too_long = openai_error(
        400,
        "This model's maximum context length is 128000 tokens. However, your messages "
        "resulted in 131000 tokens.",
        code="context_length_exceeded",
    )
    server.queue("POST", OPENAI_CHAT, too_long, openai_chat(GOOD))
    result = make(server, clock).extract_from_images([page], "Read.", Receipt)

    details = [image_parts(r.json())[0]["image_url"]["detail"] for r in server.sent(OPENAI_CHAT)]
    assert details == ["high", "low"]
    assert result.detail == "low" and result.downgraded and result.attempts == 2
    assert result.estimate.image_tokens == 85


def test_token_limit_400_at_low_detail_fails_clearly(server, clock, page):
    server.queue(
        "POST",
        OPENAI_CHAT,
        openai_error(400, "maximum context length exceeded", code="context_length_exceeded"),
    )
    with pytest.raises(ProviderCallFailed) as info:
        make(server, clock).extract_from_images([page], "Read.", Receipt, detail="low")
    assert info.value.kind is FailureKind.CONTEXT_LIMIT
    assert len(server.sent(OPENAI_CHAT)) == 1


def test_responses_api_uses_text_format_and_input_image_detail(server, clock, page):
    server.queue("POST", OPENAI_RESPONSES, openai_response(GOOD, input_tokens=800))
    provider = make(server, clock, api="responses")
    result = provider.extract_from_images([page], "Read.", Receipt, detail="low")

    body = server.sent(OPENAI_RESPONSES)[0].json()
    assert body["text"]["format"]["type"] == "json_schema"
    assert body["text"]["format"]["name"] == "Receipt"
    (part,) = image_parts(body)
    assert part["detail"] == "low"
    assert result.value.total == Decimal("279.84") and result.usage.input_tokens == 800


def test_responses_api_repair_appends_assistant_and_error_turns(server, clock, page):
    server.queue(
        "POST", OPENAI_RESPONSES, openai_response('{"merchant": 3}'), openai_response(GOOD)
    )
    make(server, clock, api="responses").extract_from_images([page], "Read.", Receipt)
    items = server.sent(OPENAI_RESPONSES)[1].json()["input"]
    assert items[-2] == {"role": "assistant", "content": '{"merchant": 3}'}
    assert "merchant: Input should be a valid string" in items[-1]["content"]


def test_text_only_completion_sends_no_image(server, clock):
    server.queue("POST", OPENAI_CHAT, openai_chat(GOOD, prompt_tokens=120))
    result = make(server, clock).complete("Coolblue, total 279.84 EUR", Receipt)
    body = server.sent(OPENAI_CHAT)[0].json()
    assert image_parts(body) == [] and result.estimate.image_tokens == 0
    assert result.value.merchant == "Coolblue"


def test_transcription_posts_the_audio_and_returns_segments(server, clock):
    server.queue(
        "POST",
        OPENAI_TRANSCRIBE,
        openai_transcription(
            "Hello there. General Kenobi.",
            [(0.0, 1.2, " Hello there."), (1.4, 2.9, " General Kenobi.")],
        ),
    )
    audio = b"RIFF\x24\x00\x00\x00WAVEfmt fake-audio-bytes"
    transcript = make(server, clock).transcribe(audio, filename="clip.wav")

    form = server.sent(OPENAI_TRANSCRIBE)[0].form()
    assert form["file"] == audio and form["model"] == b"whisper-1"
    assert form["response_format"] == b"verbose_json"
    assert [s.text for s in transcript.segments] == ["Hello there.", "General Kenobi."]
    assert transcript.segments[1].end == 2.9 and transcript.attempts == 1


def test_transcription_retries_a_429(server, clock):
    server.queue(
        "POST",
        OPENAI_TRANSCRIBE,
        openai_error(429, "busy", headers={"retry-after": "1"}),
        openai_transcription("Hi.", [(0.0, 0.5, "Hi.")]),
    )
    transcript = make(server, clock).transcribe(b"audio")
    assert transcript.text == "Hi." and transcript.attempts == 2


def test_compatible_server_gets_max_tokens_and_is_free_unless_priced(server, clock, page):
    server.on("POST", OPENAI_CHAT, lambda _: openai_chat(GOOD, model="qwen2.5-vl"))
    local = OpenAICompatibleProvider(base_url=f"{server.url}/v1", model="qwen2.5-vl")
    local.use(clock=clock)
    result = local.extract_from_images([page], "Read.", Receipt)

    request = server.sent(OPENAI_CHAT)[0]
    assert request.json()["max_tokens"] == 1024 and "max_completion_tokens" not in request.json()
    assert request.headers["authorization"] == "Bearer not-needed"
    assert result.cost_usd == 0 and result.estimate.image_tokens == 765  # OpenAI tile formula
    priced = OpenAICompatibleProvider(base_url=f"{server.url}/v1", model="x", price_as="gpt-4o")
    assert priced.use(clock=clock).extract_from_images([page], "Read.", Receipt).cost_usd > 0


def test_blocks_build_sdk_clients_with_sdk_retries_off_and_hide_keys():
    provider = OpenAIProvider(api_key="sk-secret-value", timeout_s=12.5)
    client = provider.client()
    assert client.max_retries == 0 and client.timeout == 12.5
    assert "sk-secret-value" not in provider.model_dump_json()
    assert "sk-secret-value" not in repr(provider)
    schema = OpenAIProvider._to_block_schema()
    assert "api_key" in schema.fields["secret_fields"]
    assert json.loads(json.dumps(schema.fields))["properties"]["model"]["default"] == "gpt-4o"
