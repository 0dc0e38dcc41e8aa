"""Anthropic's Messages API through the official `anthropic` SDK: structured output by a forced
tool call (the tool's input_schema is the Pydantic schema), and Message Batches."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from pydantic import Field, SecretStr

from mmflow.blocks.providers.base import (
    SYSTEM_PROMPT,
    ProviderBlock,
    WireReply,
    WireRequest,
    repair_instructions,
)
from mmflow.blocks.providers.resilience import classify_http_failure
from mmflow.tasks.errors import MissingDependency
from mmflow.tasks.estimate import ProviderFamily
from mmflow.tasks.provider.errors import FailureKind, ProviderCallFailed
from mmflow.tasks.provider.images import PreparedImage
from mmflow.tasks.provider.results import BatchStatus, Detail, Usage

INSTALL = "pip install 'mmflow[providers]' (or: pip install anthropic)"


def _sdk() -> Any:
    try:
        import anthropic
    except ImportError as exc:
        raise MissingDependency("the Anthropic provider", INSTALL) from exc
    return anthropic


def tool_name(request: WireRequest) -> str:
    return f"record_{request.schema.__name__}"[:64]


class AnthropicProvider(ProviderBlock):
    """Claude models. Claude has no detail switch: "low" sends images fitted in a small box."""

    _block_type_name: ClassVar[str | None] = "mmflow Anthropic provider"
    _family: ClassVar[ProviderFamily] = ProviderFamily.ANTHROPIC
    _wire_name: ClassVar[str] = "anthropic"
    supports_batches: ClassVar[bool] = True  # Message Batches

    model: str = Field(default="claude-sonnet-4", description="model name sent to the API")
    api_key: SecretStr | None = Field(default=None, description="None: read ANTHROPIC_API_KEY")
    low_detail_max_side: int = Field(
        default=512, ge=64, description="box images are fitted in at low detail"
    )

    def _build_client(self) -> Any:
        return _sdk().Anthropic(
            api_key=self.api_key.get_secret_value() if self.api_key else None,
            base_url=self.endpoint,
            timeout=self.timeout_s,
            max_retries=0,  # our policy (resilience.py) is the one in force
        )

    def _wire_image(self, image: PreparedImage, detail: Detail) -> PreparedImage:
        return image.fitted(self.low_detail_max_side) if detail == "low" else image

    def messages_body(self, request: WireRequest) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        for original in request.images:
            image = self._wire_image(original, request.detail)
            source = {"type": "base64", "media_type": image.media_type, "data": image.base64()}
            content.append({"type": "image", "source": source})
        content.append({"type": "text", "text": request.prompt})
        messages: list[dict[str, Any]] = [{"role": "user", "content": content}]
        name = tool_name(request)
        if request.repair is not None:
            previous = request.repair.previous
            note = repair_instructions(request.repair)
            if previous.turn_id is not None:  # answer the tool call with its error
                messages.append(
                    {
                        "role": "assistant",
                        "content": [
                            {
                                "type": "tool_use",
                                "id": previous.turn_id,
                                "name": name,
                                "input": json.loads(previous.text or "{}"),
                            }
                        ],
                    }
                )
                result = {
                    "type": "tool_result",
                    "tool_use_id": previous.turn_id,
                    "is_error": True,
                    "content": note,
                }
                messages.append({"role": "user", "content": [result]})
            else:
                messages.append({"role": "assistant", "content": previous.text or "(no answer)"})
                messages.append({"role": "user", "content": note})
        tool = {
            "name": name,
            "description": f"Record the extracted {request.schema.__name__}.",
            "input_schema": request.schema.model_json_schema(),
        }
        return {
            "model": self.model,
            "max_tokens": request.max_output_tokens,
            "system": SYSTEM_PROMPT,
            "messages": messages,
            "tools": [tool],
            "tool_choice": {"type": "tool", "name": name},
        }

    @staticmethod
    def _reply(message: Any, name: str) -> WireReply:
        text, turn_id = "", None
        for block in message.content:
            if block.type == "tool_use" and block.name == name:
                text, turn_id = json.dumps(block.input), block.id
                break
        else:  # no tool call: keep the prose so the repair can show it back
            text = "".join(b.text for b in message.content if b.type == "text")
        return WireReply(
            text=text,
            usage=Usage(
                input_tokens=message.usage.input_tokens, output_tokens=message.usage.output_tokens
            ),
            model=message.model,
            truncated=message.stop_reason == "max_tokens",
            turn_id=turn_id,
        )

    def _send(self, client: Any, request: WireRequest) -> WireReply:
        message = client.messages.create(**self.messages_body(request))
        return self._reply(message, tool_name(request))

    def _classify(self, exc: BaseException) -> ProviderCallFailed | None:
        anthropic = _sdk()
        if isinstance(exc, anthropic.APITimeoutError):
            return ProviderCallFailed(FailureKind.TIMEOUT, str(exc))
        if isinstance(exc, anthropic.APIConnectionError):
            return ProviderCallFailed(FailureKind.CONNECTION, str(exc))
        if isinstance(exc, anthropic.APIStatusError):
            return classify_http_failure(
                exc.status_code, exc.response.headers, exc.body, self._rt.clock.time()
            )
        return None

    # ------------------------------------------------------------ Message Batches

    def _batch_submit(self, items: list[tuple[str, WireRequest]]) -> str:
        client = self.client()
        requests = [{"custom_id": cid, "params": self.messages_body(r)} for cid, r in items]
        # Tool names are needed again at collect time; they derive from the schema, so they are.
        batch, _ = self.call(lambda: client.messages.batches.create(requests=requests))
        return str(batch.id)

    def _batch_status(self, batch_id: str) -> BatchStatus:
        client = self.client()
        batch, _ = self.call(lambda: client.messages.batches.retrieve(batch_id))
        counts = batch.request_counts
        failed = counts.errored + counts.canceled + counts.expired
        return BatchStatus(
            batch_id=batch_id,
            state="ended" if batch.processing_status == "ended" else "running",
            provider_status=batch.processing_status,
            succeeded=counts.succeeded,
            failed=failed,
            total=counts.succeeded + failed + counts.processing,
        )

    def _batch_results(self, batch_id: str) -> dict[str, WireReply | str]:
        client = self.client()
        rows, _ = self.call(lambda: list(client.messages.batches.results(batch_id)))
        out: dict[str, WireReply | str] = {}
        for row in rows:
            result = row.result
            if result.type == "succeeded":
                tool = next((b.name for b in result.message.content if b.type == "tool_use"), "")
                out[row.custom_id] = self._reply(result.message, tool)
            elif result.type == "errored":
                out[row.custom_id] = f"request failed: {result.error.error.message}"
            else:
                out[row.custom_id] = f"request {result.type}"
        return out
