"""A provider another package would ship: found through the `mmflow.providers` entry point."""

from __future__ import annotations

from typing import Any, ClassVar

from mmflow.blocks.providers.base import ProviderBlock, WireReply, WireRequest
from mmflow.tasks.estimate import ProviderFamily
from mmflow.tasks.provider.results import Usage


class PluginProvider(ProviderBlock):
    _block_type_name: ClassVar[str | None] = "mmflow test plugin provider"
    _family: ClassVar[ProviderFamily] = ProviderFamily.ANTHROPIC
    _wire_name: ClassVar[str] = "plugin"

    model: str = "plugin-1"

    def _build_client(self) -> Any:
        return object()

    def _send(self, client: Any, request: WireRequest) -> WireReply:
        return WireReply('{"text": "plugin"}', Usage(), self.model)
