"""A provider is one class with a small required surface, and providers find themselves: a
class registers itself when defined, and another package's is found by entry point."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from mmflow.blocks.providers import loading
from mmflow.blocks.providers.base import ProviderBlock, WireReply, WireRequest
from mmflow.tasks.estimate import ProviderFamily
from mmflow.tasks.provider import Budget, Provider
from mmflow.tasks.provider.results import BatchRequest, Usage
from tests.fakeproviders import png_bytes


class Answer(BaseModel):
    text: str


class EchoProvider(ProviderBlock):
    """A whole backend in two methods: it answers every request with the prompt's first word."""

    _block_type_name: ClassVar[str | None] = "mmflow test echo provider"
    _family: ClassVar[ProviderFamily] = ProviderFamily.OPENAI
    _wire_name: ClassVar[str] = "echo"

    model: str = "echo-1"
    price_as: str | None = "gpt-4o-mini"  # a model the price table lacks is billed as a known one

    def _build_client(self) -> Any:
        return object()

    def _send(self, client: Any, request: WireRequest) -> WireReply:
        word = request.prompt.split()[0]
        return WireReply(json.dumps({"text": word}), Usage(input_tokens=5), self.model)


def test_a_provider_needs_only_a_client_and_a_send() -> None:
    provider = EchoProvider()
    assert isinstance(provider, Provider)  # the steps' contract
    result = provider.extract_from_images(
        [png_bytes(64, 64)], "hello world", Answer, "low", budget=Budget()
    )
    assert result.value == Answer(text="hello")
    assert provider.complete("again please", Answer).value.text == "again"


def test_a_provider_class_registers_itself() -> None:
    assert EchoProvider in loading.provider_classes()


def test_batches_are_optional_and_say_so() -> None:
    request = BatchRequest(custom_id="a", prompt="x", images=[], detail="low")
    with pytest.raises(NotImplementedError, match="EchoProvider has no batch API"):
        EchoProvider().submit_batch([request], Answer)


def test_another_package_s_provider_is_found_by_its_entry_point(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from importlib.metadata import EntryPoint

    point = EntryPoint("echo", "tests.provider_plugin:PluginProvider", loading.ENTRY_POINT_GROUP)
    monkeypatch.setattr(loading, "entry_points", lambda group: [point])
    monkeypatch.setattr(loading, "_plugins_loaded", False)
    names = {cls.__name__ for cls in loading.provider_classes()}
    assert "PluginProvider" in names  # imported through the entry point, then registered


def test_an_entry_point_that_is_not_a_provider_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from importlib.metadata import EntryPoint

    point = EntryPoint("bad", "json:dumps", loading.ENTRY_POINT_GROUP)
    monkeypatch.setattr(loading, "entry_points", lambda group: [point])
    monkeypatch.setattr(loading, "_plugins_loaded", False)
    with pytest.raises(TypeError, match="is not a ProviderBlock"):
        loading.provider_classes()


def test_a_saved_provider_of_any_registered_class_is_resolved_by_name(
    prefect_server: str,
) -> None:
    EchoProvider(model="echo-2").save("echo-test", overwrite=True)
    resolved = loading.resolve_provider("echo-test")
    assert isinstance(resolved, EchoProvider) and resolved.model == "echo-2"
