"""Retry-After parsing, failure classification, the circuit breaker and the fallback chain."""

from __future__ import annotations

import email.utils
import random
from collections.abc import Iterator
from decimal import Decimal

import pytest
from pydantic import BaseModel

from mmflow.blocks.providers import (
    AnthropicProvider,
    BreakerSettings,
    BreakerState,
    Budget,
    BudgetExceeded,
    CircuitBreaker,
    CircuitOpen,
    FailureKind,
    OpenAIProvider,
    ProviderCallFailed,
    SchemaValidationFailed,
    classify_http_failure,
    parse_retry_after,
    run_fallback_chain,
)
from tests.fakeproviders import (
    ANTHROPIC_MESSAGES,
    OPENAI_CHAT,
    FakeClock,
    FakeServer,
    Recorded,
    Reply,
    anthropic_reply,
    openai_chat,
    openai_error,
    png_bytes,
)

GOOD = '{"merchant": "Coolblue", "total": "279.84"}'


class Receipt(BaseModel):
    merchant: str
    total: Decimal


# ---------------------------------------------------------------- Retry-After and classes


def test_retry_after_accepts_seconds_milliseconds_and_http_dates():
    now = 1_800_000_000.0
    assert parse_retry_after({"Retry-After": "3"}, now) == 3.0
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}, now) == 1.5
    date = email.utils.formatdate(now + 42, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now) == pytest.approx(42, abs=1)
    assert parse_retry_after({"retry-after": "soon"}, now) is None
    assert parse_retry_after({}, now) is None


def test_failures_are_classified_by_status_and_error_code():
    def kind(status: int, body: object, headers: dict[str, str] | None = None) -> FailureKind:
        return classify_http_failure(status, headers or {}, body, 0.0).kind

    assert kind(429, {"message": "slow", "code": "rate_limit_exceeded"}) is FailureKind.RATE_LIMITED
    assert kind(529, {"type": "error", "error": {"type": "overloaded_error"}}) is (
        FailureKind.SERVER_ERROR
    )
    assert kind(400, {"message": "x", "code": "context_length_exceeded"}) is (
        FailureKind.CONTEXT_LIMIT
    )
    assert kind(400, {"type": "error", "error": {"message": "prompt is too long: 9 > 8"}}) is (
        FailureKind.CONTEXT_LIMIT
    )
    assert kind(404, {"message": "no model"}) is FailureKind.CLIENT_ERROR
    quota = classify_http_failure(429, {}, {"code": "insufficient_quota"}, 0.0)
    assert quota.kind is FailureKind.CLIENT_ERROR and not quota.retryable


# ---------------------------------------------------------------- circuit breaker unit


def breaker(clock: FakeClock) -> CircuitBreaker:
    settings = BreakerSettings(window=10, min_calls=4, failure_rate=0.5, cooldown_s=30)
    return CircuitBreaker("test", settings, clock)


def test_breaker_opens_at_the_failure_rate_over_the_window():
    clock = FakeClock()
    cb = breaker(clock)
    for outcome in (None, FailureKind.SERVER_ERROR, None):
        cb.record(outcome)
    assert cb.state is BreakerState.CLOSED  # 3 calls: below min_calls
    cb.record(FailureKind.TIMEOUT)  # 2 of 4 failed = 50%
    assert cb.state is BreakerState.OPEN
    with pytest.raises(CircuitOpen):
        cb.before_call()


def test_client_errors_do_not_open_the_breaker():
    cb = breaker(FakeClock())
    for _ in range(8):
        cb.record(FailureKind.CLIENT_ERROR)
    assert cb.state is BreakerState.CLOSED


def test_breaker_half_opens_after_cooldown_and_one_probe_decides():
    clock = FakeClock()
    cb = breaker(clock)
    for _ in range(4):
        cb.record(FailureKind.SERVER_ERROR)
    clock.advance(31)
    cb.before_call()  # the probe is let through
    assert cb.state is BreakerState.HALF_OPEN
    with pytest.raises(CircuitOpen):
        cb.before_call()  # only one probe at a time
    cb.record(FailureKind.SERVER_ERROR)  # probe failed: open again, new cool-down
    assert cb.state is BreakerState.OPEN
    clock.advance(31)
    cb.before_call()
    cb.record(None)
    assert cb.state is BreakerState.CLOSED
    cb.before_call()


# ---------------------------------------------------------------- a provider down for a minute


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def server_a(clock: FakeClock) -> Iterator[FakeServer]:
    """OpenAI-shaped server that answers 503 for the first 60 s of (injected) time."""
    with FakeServer() as fake:
        down_until = clock.monotonic() + 60

        def answer(_: Recorded) -> Reply:
            if clock.monotonic() < down_until:
                return openai_error(503, "The engine is currently overloaded", type="server_error")
            return openai_chat(GOOD)

        fake.on("POST", OPENAI_CHAT, answer)
        yield fake


def provider_a(server: FakeServer, clock: FakeClock) -> OpenAIProvider:
    block = OpenAIProvider(
        api_key="sk-a",
        base_url=f"{server.url}/v1",
        max_retries=1,
        breaker_window=10,
        breaker_min_calls=4,
        breaker_failure_rate=0.5,
        breaker_cooldown_s=30,
    )
    block.use(clock=clock, rng=random.Random(5))
    return block


def test_provider_down_for_a_minute_opens_the_circuit_then_recovers(server_a, clock):
    page = png_bytes(800, 600)
    a = provider_a(server_a, clock)
    for _ in range(2):  # 2 calls x 2 attempts, all 503
        with pytest.raises(ProviderCallFailed):
            a.extract_from_images([page], "Read.", Receipt)
    assert a.breaker.state is BreakerState.OPEN
    sent = len(server_a.requests)
    with pytest.raises(CircuitOpen):
        a.extract_from_images([page], "Read.", Receipt)
    assert len(server_a.requests) == sent  # refused without touching the network

    clock.advance(61)  # the outage is over and the cool-down has passed
    result = a.extract_from_images([page], "Read.", Receipt)  # the half-open probe
    assert result.value.merchant == "Coolblue" and a.breaker.state is BreakerState.CLOSED


def test_fallback_goes_to_provider_b_while_a_is_down(server_a, clock):
    page = png_bytes(800, 600)
    a = provider_a(server_a, clock)
    with FakeServer() as server_b:
        server_b.on(
            "POST",
            ANTHROPIC_MESSAGES,
            lambda _: anthropic_reply(
                {"merchant": "Coolblue", "total": "279.84"}, tool_name="record_Receipt"
            ),
        )
        b = AnthropicProvider(api_key="sk-b", base_url=server_b.url)
        b.use(clock=clock)
        outcome = run_fallback_chain(
            [
                ("openai", lambda: a.extract_from_images([page], "Read.", Receipt)),
                ("anthropic", lambda: b.extract_from_images([page], "Read.", Receipt)),
            ],
            offline=("ocr", lambda: pytest.fail("the offline route was not needed")),
        )
    assert outcome.source == "anthropic" and outcome.value.value.total == Decimal("279.84")
    assert [name for name, _ in outcome.failures] == ["openai"]
    assert isinstance(outcome.failures[0][1], ProviderCallFailed)


def test_fallback_reaches_the_offline_route_when_every_provider_fails(server_a, clock):
    page = png_bytes(800, 600)
    a = provider_a(server_a, clock)
    with FakeServer() as server_b:
        server_b.on(
            "POST",
            ANTHROPIC_MESSAGES,
            lambda _: Reply(
                529,
                {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            ),
        )
        b = AnthropicProvider(api_key="sk-b", base_url=server_b.url, max_retries=1)
        b.use(clock=clock)
        tight = Budget(max_usd_per_request=Decimal("0.000001"))
        outcome = run_fallback_chain(
            [
                ("openai", lambda: a.extract_from_images([page], "Read.", Receipt)),
                ("anthropic", lambda: b.extract_from_images([page], "Read.", Receipt)),
                (
                    "openai-cheap",
                    lambda: a.extract_from_images([page], "Read.", Receipt, budget=tight),
                ),
            ],
            offline=("ocr", lambda: Receipt(merchant="Coolblue (OCR)", total=Decimal("279.84"))),
        )
        assert len(server_b.requests) == 2
    assert outcome.source == "ocr" and isinstance(outcome.value, Receipt)
    assert outcome.value.merchant == "Coolblue (OCR)"
    kinds = [type(exc).__name__ for _, exc in outcome.failures]
    assert kinds == ["ProviderCallFailed", "ProviderCallFailed", "BudgetExceeded"]
    assert isinstance(outcome.failures[2][1], BudgetExceeded)


def test_provider_errors_survive_pickling_with_their_fields():
    import pickle

    errors = [
        ProviderCallFailed(
            FailureKind.RATE_LIMITED, "slow", status=429, retry_after=3.0, attempts=2
        ),
        CircuitOpen("openai:gpt-4o@default", 12.0),
        BudgetExceeded("too dear", estimate_usd=Decimal("0.2"), remaining_usd=Decimal("0.1")),
        SchemaValidationFailed("Receipt", "total: Field required", '{"merchant": "X"}', 2),
    ]
    for error in errors:
        twin = pickle.loads(pickle.dumps(error))
        assert type(twin) is type(error) and str(twin) == str(error)
        assert vars(twin) == vars(error)
