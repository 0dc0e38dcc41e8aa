"""Finding a provider block: an instance as given, or a saved block by name."""

from __future__ import annotations

from typing import cast

from prefect.blocks.core import Block

from mmflow.blocks.providers.anthropic_provider import AnthropicProvider
from mmflow.blocks.providers.base import ProviderBlock
from mmflow.blocks.providers.openai_provider import OpenAICompatibleProvider, OpenAIProvider


def resolve_provider(provider: ProviderBlock | str | None) -> ProviderBlock | None:
    """A block instance as given, or a saved block loaded by name ("type-slug/name" or name)."""
    if provider is None or isinstance(provider, ProviderBlock):
        return provider
    if "/" in provider:
        return cast(ProviderBlock, Block.load(provider))
    for cls in (OpenAIProvider, AnthropicProvider, OpenAICompatibleProvider):
        try:
            return cast(ProviderBlock, cls.load(provider))
        except ValueError:
            continue
    raise ValueError(
        f"no saved provider block named {provider!r}; save one with "
        "OpenAIProvider(...).save(name) or pass 'block-type-slug/name'"
    )
