"""OpenAI and OpenAI-compatible servers (vLLM, Ollama, llama.cpp server, LM Studio) through the
official `openai` SDK: chat completions or the responses API with native JSON-schema output,
transcription, and the Batch API."""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, SecretStr

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
from mmflow.tasks.provider.results import BatchStatus, ProviderSegment, ProviderTranscript, Usage

INSTALL = "pip install 'mmflow[providers]' (or: pip install openai)"


def _sdk() -> Any:
    try:
        import openai
    except ImportError as exc:
        raise MissingDependency("the OpenAI provider", INSTALL) from exc
    return openai


def wire_schema(schema: type[BaseModel]) -> tuple[dict[str, Any], bool]:
    """The schema in OpenAI's strict form when it converts, else as Pydantic writes it."""
    try:
        from openai.lib._pydantic import to_strict_json_schema

        return to_strict_json_schema(schema), True
    except Exception:  # a construct strict mode cannot express: send it non-strict
        return schema.model_json_schema(), False


class OpenAIProvider(ProviderBlock):
    """OpenAI's API: vision and text extraction into a schema, transcription, batches."""

    _block_type_name: ClassVar[str | None] = "mmflow OpenAI provider"
    _family: ClassVar[ProviderFamily] = ProviderFamily.OPENAI
    _wire_name: ClassVar[str] = "openai"
    supports_batches: ClassVar[bool] = True  # OpenAI Batch / Anthropic Message Batches
    # OpenAI's chat API renamed max_tokens; most compatible servers still want the old name.
    _max_tokens_param: ClassVar[str] = "max_completion_tokens"

    model: str = Field(default="gpt-4o", description="model name sent to the API")
    api_key: SecretStr | None = Field(default=None, description="None: read OPENAI_API_KEY")
    organization: str | None = None
    api: Literal["chat", "responses"] = Field(
        default="chat", description="chat completions or the responses API"
    )
    transcription_model: str = "whisper-1"

    def _api_key(self) -> str | None:
        return self.api_key.get_secret_value() if self.api_key else None

    def _build_client(self) -> Any:
        return _sdk().OpenAI(
            api_key=self._api_key(),
            organization=self.organization,
            base_url=self.endpoint,
            timeout=self.timeout_s,
            max_retries=0,  # our policy (resilience.py) is the one in force
        )

    # ------------------------------------------------------------ request bodies

    def _schema_format(self, request: WireRequest) -> tuple[str, dict[str, Any], bool]:
        schema, strict = wire_schema(request.schema)
        return request.schema.__name__, schema, strict

    def chat_body(self, request: WireRequest) -> dict[str, Any]:
        content: list[dict[str, Any]] = [{"type": "text", "text": request.prompt}]
        for image in request.images:
            url = {"url": image.data_url(), "detail": request.detail}
            content.append({"type": "image_url", "image_url": url})
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": content},
        ]
        if request.repair is not None:
            messages.append({"role": "assistant", "content": request.repair.previous.text})
            messages.append({"role": "user", "content": repair_instructions(request.repair)})
        name, schema, strict = self._schema_format(request)
        return {
            "model": self.model,
            "messages": messages,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": name, "schema": schema, "strict": strict},
            },
            self._max_tokens_param: request.max_output_tokens,
        }

    def responses_body(self, request: WireRequest) -> dict[str, Any]:
        content: list[dict[str, Any]] = [{"type": "input_text", "text": request.prompt}]
        for image in request.images:
            content.append(
                {"type": "input_image", "image_url": image.data_url(), "detail": request.detail}
            )
        items: list[dict[str, Any]] = [{"role": "user", "content": content}]
        if request.repair is not None:
            items.append({"role": "assistant", "content": request.repair.previous.text})
            items.append({"role": "user", "content": repair_instructions(request.repair)})
        name, schema, strict = self._schema_format(request)
        return {
            "model": self.model,
            "instructions": SYSTEM_PROMPT,
            "input": items,
            "text": {
                "format": {"type": "json_schema", "name": name, "schema": schema, "strict": strict}
            },
            "max_output_tokens": request.max_output_tokens,
        }

    def _endpoint(self) -> str:
        return "/v1/responses" if self.api == "responses" else "/v1/chat/completions"

    def _body(self, request: WireRequest) -> dict[str, Any]:
        return self.responses_body(request) if self.api == "responses" else self.chat_body(request)

    # ------------------------------------------------------------ replies

    @staticmethod
    def _reply_from_chat(completion: Any) -> WireReply:
        choice = completion.choices[0]
        usage = completion.usage
        return WireReply(
            text=choice.message.content or "",
            usage=Usage(
                input_tokens=usage.prompt_tokens if usage else 0,
                output_tokens=usage.completion_tokens if usage else 0,
            ),
            model=completion.model,
            truncated=choice.finish_reason == "length",
        )

    @staticmethod
    def _reply_from_response(response: Any) -> WireReply:
        usage = response.usage
        return WireReply(
            text=response.output_text,
            usage=Usage(
                input_tokens=usage.input_tokens if usage else 0,
                output_tokens=usage.output_tokens if usage else 0,
            ),
            model=response.model,
            truncated=response.status == "incomplete",
        )

    def _send(self, client: Any, request: WireRequest) -> WireReply:
        body = self._body(request)
        if self.api == "responses":
            return self._reply_from_response(client.responses.create(**body))
        return self._reply_from_chat(client.chat.completions.create(**body))

    def _classify(self, exc: BaseException) -> ProviderCallFailed | None:
        openai = _sdk()
        if isinstance(exc, openai.APITimeoutError):
            return ProviderCallFailed(FailureKind.TIMEOUT, str(exc))
        if isinstance(exc, openai.APIConnectionError):
            return ProviderCallFailed(FailureKind.CONNECTION, str(exc))
        if isinstance(exc, openai.APIStatusError):
            return classify_http_failure(
                exc.status_code, exc.response.headers, exc.body, self._rt.clock.time()
            )
        return None

    # ------------------------------------------------------------ transcription

    def transcribe(
        self, audio: bytes, *, filename: str = "audio.wav", language: str | None = None
    ) -> ProviderTranscript:
        """Speech to text with segment times (verbose JSON), under the same retry policy."""
        client = self.client()
        extra = {"language": language} if language else {}

        def send() -> Any:
            return client.audio.transcriptions.create(
                file=(filename, audio),
                model=self.transcription_model,
                response_format="verbose_json",
                timestamp_granularities=["segment"],
                **extra,
            )

        result, attempts = self.call(send)
        segments = [
            ProviderSegment(start=s.start, end=s.end, text=s.text.strip())
            for s in (getattr(result, "segments", None) or [])
        ]
        return ProviderTranscript(
            text=result.text,
            language=getattr(result, "language", None),
            duration_s=getattr(result, "duration", None),
            segments=segments,
            model=self.transcription_model,
            attempts=attempts,
        )

    # ------------------------------------------------------------ batch API

    def _batch_submit(self, items: list[tuple[str, WireRequest]]) -> str:
        client = self.client()
        endpoint = self._endpoint()
        lines = [
            json.dumps({"custom_id": cid, "method": "POST", "url": endpoint, "body": self._body(r)})
            for cid, r in items
        ]
        data = ("\n".join(lines) + "\n").encode()
        uploaded, _ = self.call(
            lambda: client.files.create(file=("batch.jsonl", data), purpose="batch")
        )
        batch, _ = self.call(
            lambda: client.batches.create(
                input_file_id=uploaded.id, endpoint=endpoint, completion_window="24h"
            )
        )
        return str(batch.id)

    def _batch_status(self, batch_id: str) -> BatchStatus:
        client = self.client()
        batch, _ = self.call(lambda: client.batches.retrieve(batch_id))
        counts = batch.request_counts
        ended = batch.status in ("completed", "failed", "expired", "cancelled")
        return BatchStatus(
            batch_id=batch_id,
            state="ended" if ended else "running",
            provider_status=batch.status,
            succeeded=counts.completed if counts else 0,
            failed=counts.failed if counts else 0,
            total=counts.total if counts else 0,
        )

    def _batch_results(self, batch_id: str) -> dict[str, WireReply | str]:
        openai = _sdk()
        client = self.client()
        batch, _ = self.call(lambda: client.batches.retrieve(batch_id))
        out: dict[str, WireReply | str] = {}
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            content, _ = self.call(lambda fid=file_id: client.files.content(fid))
            for line in content.text.splitlines():
                if not line.strip():
                    continue
                row = json.loads(line)
                response = row.get("response") or {}
                if row.get("error") or response.get("status_code") != 200:
                    error = row.get("error") or response.get("body", {}).get("error")
                    out[row["custom_id"]] = f"request failed: {json.dumps(error)}"
                    continue
                body = response["body"]
                if self.api == "responses":
                    parsed = openai.types.responses.Response.model_validate(body)
                    out[row["custom_id"]] = self._reply_from_response(parsed)
                else:
                    parsed = openai.types.chat.ChatCompletion.model_validate(body)
                    out[row["custom_id"]] = self._reply_from_chat(parsed)
        return out


class OpenAICompatibleProvider(OpenAIProvider):
    """Any server speaking OpenAI's chat API: vLLM, Ollama, llama.cpp server, LM Studio.

    Self-hosted models cost nothing per token unless `price_as` names a price-table row; image
    tokens are then estimated with OpenAI's tile formula.
    """

    _block_type_name: ClassVar[str | None] = "mmflow OpenAI-compatible provider"
    _wire_name: ClassVar[str] = "openai-compatible"
    _max_tokens_param: ClassVar[str] = "max_tokens"

    base_url: str | None = Field(
        default="http://127.0.0.1:8000/v1",
        description="e.g. http://localhost:11434/v1 (Ollama), http://localhost:8000/v1 (vLLM)",
    )
    model: str = Field(default="local-model", description="model name the server serves")

    def _api_key(self) -> str | None:
        # Local servers usually ignore the key, but the SDK refuses to start without one.
        return self.api_key.get_secret_value() if self.api_key else "not-needed"

    def pricing_model(self) -> str | None:
        return self.price_as
