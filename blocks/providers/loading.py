"""Finding a provider block: an instance as given, or a saved block by name, among every
provider class known — mmflow's own and those other packages add.

A provider class registers itself when it is defined (blocks/providers/base.py); a class in
another package is found through an entry point in the group `mmflow.providers` (its value the
class, `package.module:ClassName`), imported the first time a provider is looked up.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import cast

from prefect.blocks.core import Block

# mmflow's own providers register themselves on import.
import mmflow.blocks.providers.anthropic_provider
import mmflow.blocks.providers.openai_provider  # noqa: F401
from mmflow.blocks.providers.base import ProviderBlock, registered_providers

ENTRY_POINT_GROUP = "mmflow.providers"
_plugins_loaded = False


def provider_classes() -> list[type[ProviderBlock]]:
    """Every provider class: mmflow's and the ones other packages' entry points name."""
    global _plugins_loaded
    if not _plugins_loaded:
        for point in entry_points(group=ENTRY_POINT_GROUP):
            loaded = point.load()
            if not (isinstance(loaded, type) and issubclass(loaded, ProviderBlock)):
                raise TypeError(f"entry point {point.name} ({point.value}) is not a ProviderBlock")
        _plugins_loaded = True
    return registered_providers()


def resolve_provider(provider: ProviderBlock | str | None) -> ProviderBlock | None:
    """A block instance as given, or a saved block loaded by name ("type-slug/name" or name)."""
    if provider is None or isinstance(provider, ProviderBlock):
        return provider
    if "/" in provider:
        return cast(ProviderBlock, Block.load(provider))
    for cls in provider_classes():
        try:
            return cast(ProviderBlock, cls.load(provider))
        except ValueError:
            continue
    raise ValueError(
        f"no saved provider block named {provider!r}; save one with "
        "OpenAIProvider(...).save(name) or pass 'block-type-slug/name'"
    )
