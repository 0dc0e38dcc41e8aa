"""Providers are real Prefect blocks; images are sniffed and prepared before they are sent."""

from __future__ import annotations

import io
import random
import threading
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest
from PIL import Image
from pydantic import BaseModel, SecretStr

from mmflow.blocks.providers import (
    AnthropicProvider,
    OpenAICompatibleProvider,
    OpenAIProvider,
    prepare_image,
)
from tests.fakeproviders import (
    OPENAI_CHAT,
    FakeClock,
    FakeServer,
    Recorded,
    Reply,
    openai_chat,
    png_bytes,
)


class Receipt(BaseModel):
    merchant: str
    total: Decimal


def test_a_tiff_is_re_encoded_as_png_and_keeps_its_size():
    buffer = io.BytesIO()
    Image.new("RGB", (300, 200), (200, 10, 10)).save(buffer, format="TIFF")
    image = prepare_image(buffer.getvalue())
    assert image.media_type == "image/png" and (image.width, image.height) == (300, 200)
    assert image.data.startswith(b"\x89PNG")


def test_a_jpeg_is_sent_as_is_and_named_by_its_sha256():
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (0, 90, 0)).save(buffer, format="JPEG")
    image = prepare_image(buffer.getvalue())
    assert image.media_type == "image/jpeg" and image.data == buffer.getvalue()
    assert len(image.sha256) == 64


def test_bytes_that_are_not_an_image_are_refused():
    with pytest.raises(ValueError, match="not a readable image"):
        prepare_image(b"%PDF-1.7 not an image")


def test_fitting_scales_down_but_never_up():
    big = prepare_image(png_bytes(2000, 1000))
    assert (big.fitted(512).width, big.fitted(512).height) == (512, 256)
    small = prepare_image(png_bytes(100, 80))
    assert small.fitted(512) is small


def test_max_concurrency_bounds_requests_in_flight():
    in_flight = 0
    peak = 0
    lock = threading.Lock()

    def slow_answer(_: Recorded) -> Reply:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.05)
        with lock:
            in_flight -= 1
        return openai_chat('{"merchant": "A", "total": "1"}')

    with FakeServer() as server:
        server.on("POST", OPENAI_CHAT, slow_answer)
        provider = OpenAIProvider(api_key="sk", base_url=f"{server.url}/v1", max_concurrency=2)
        provider.use(clock=FakeClock(), rng=random.Random(0))
        results: list[str] = []

        def call(i: int) -> None:
            r = provider.complete(f"receipt {i}", Receipt)
            with lock:
                results.append(r.value.merchant)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert results == ["A"] * 6 and 1 <= peak <= 2


@pytest.fixture(scope="module")
def saved_blocks(prefect_server: str) -> Iterator[None]:
    OpenAIProvider(api_key=SecretStr("sk-saved"), model="gpt-4o-mini", max_retries=2).save(
        "mmflow-test-openai", overwrite=True
    )
    AnthropicProvider(api_key=SecretStr("sk-ant-saved"), breaker_cooldown_s=5).save(
        "mmflow-test-anthropic", overwrite=True
    )
    OpenAICompatibleProvider(base_url="http://localhost:11434/v1", model="llava").save(
        "mmflow-test-ollama", overwrite=True
    )
    yield


@pytest.mark.slow
def test_provider_blocks_round_trip_through_the_prefect_server(saved_blocks):
    openai_block = OpenAIProvider.load("mmflow-test-openai")
    assert isinstance(openai_block, OpenAIProvider)
    assert openai_block.api_key is not None
    assert openai_block.api_key.get_secret_value() == "sk-saved"
    assert openai_block.model == "gpt-4o-mini" and openai_block.max_retries == 2
    claude = AnthropicProvider.load("mmflow-test-anthropic")
    assert isinstance(claude, AnthropicProvider)
    assert claude.api_key is not None and claude.api_key.get_secret_value() == "sk-ant-saved"
    assert claude.breaker_cooldown_s == 5
    ollama = OpenAICompatibleProvider.load("mmflow-test-ollama")
    assert isinstance(ollama, OpenAICompatibleProvider)
    assert ollama.base_url == "http://localhost:11434/v1" and ollama.pricing_model() is None


def test_a_used_block_copies_and_pickles_without_its_live_state():
    import copy
    import pickle

    provider = OpenAIProvider(api_key=SecretStr("sk-live"), max_retries=1)
    provider.client()  # builds the SDK client, holds a lock and a breaker
    assert provider.breaker is not None
    for twin in (copy.deepcopy(provider), pickle.loads(pickle.dumps(provider))):
        assert isinstance(twin, OpenAIProvider) and twin.max_retries == 1
        assert twin.api_key is not None and twin.api_key.get_secret_value() == "sk-live"
        assert twin.client() is not provider.client() and twin.client().max_retries == 0
