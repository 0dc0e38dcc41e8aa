"""Local HTTP servers that speak OpenAI's and Anthropic's wire formats, for driving the real SDKs.

Every response body is built from the SDKs' own types (`ChatCompletion`, `Response`, `Batch`,
`FileObject`, `TranscriptionVerbose`, `anthropic.types.Message`, `MessageBatch`, …) and dumped to
JSON, so a reply the SDK could not parse would fail the test. Error bodies follow the documented
shapes: OpenAI `{"error": {"message", "type", "param", "code"}}`, Anthropic
`{"type": "error", "error": {"type", "message"}}`.

Each test scripts the server: `queue()` one-shot replies for a route (consumed first, in order),
`on()` a default handler. Every request is recorded (method, path, headers, body) so tests assert
what was sent.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anthropic.types as at
import openai.types as ot
from anthropic.types import messages as atm
from openai.types import chat as oc
from openai.types import responses as orsp
from openai.types.audio import TranscriptionSegment, TranscriptionVerbose
from openai.types.completion_usage import CompletionUsage

# ---------------------------------------------------------------- recording and replying


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, bytes]:
        """Fields of a multipart/form-data body (file uploads, audio)."""
        head = f"Content-Type: {self.headers['content-type']}\r\n\r\n".encode()
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + self.body)
        out: dict[str, bytes] = {}
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            out[str(name)] = payload if isinstance(payload, bytes) else b""
        return out


@dataclass
class Reply:
    status: int = 200
    body: bytes | str | dict[str, Any] | list[Any] = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # sleep before answering (a slow server, for client timeouts)
    content_type: str = "application/json"

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


Handler = Callable[[Recorded], Reply]


class FakeServer:
    """A threaded HTTP server on 127.0.0.1 and a free port; routes are (method, path regex)."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._queues: dict[tuple[str, str], deque[Reply | Handler]] = {}
        self._lock = threading.Lock()
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                return

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                req = Recorded(
                    self.command,
                    self.path.split("?")[0],
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                reply = server._dispatch(req)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                payload = reply.payload()
                try:
                    self.send_response(reply.status)
                    self.send_header("content-type", reply.content_type)
                    self.send_header("content-length", str(len(payload)))
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out first
                    pass

            do_GET = _handle
            do_POST = _handle
            do_DELETE = _handle

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def on(self, method: str, path: str, handler: Handler) -> None:
        """Default handler for a route (a regex matched against the whole path)."""
        self._routes.append((method, re.compile(path), handler))

    def queue(self, method: str, path: str, *replies: Reply | Handler) -> None:
        """One-shot replies for a route, used in order before its default handler."""
        with self._lock:
            self._queues.setdefault((method, path), deque()).extend(replies)

    def _dispatch(self, req: Recorded) -> Reply:
        with self._lock:
            self.requests.append(req)
            for (method, path), queued in self._queues.items():
                if method == req.method and re.fullmatch(path, req.path) and queued:
                    item = queued.popleft()
                    return item(req) if callable(item) else item
        for method, pattern, handler in self._routes:
            if method == req.method and pattern.fullmatch(req.path):
                return handler(req)
        return Reply(
            404,
            {
                "error": {
                    "message": f"no route {req.method} {req.path}",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "unknown_url",
                }
            },
        )

    def sent(self, path: str, method: str = "POST") -> list[Recorded]:
        """Requests recorded for a path regex."""
        with self._lock:
            return [r for r in self.requests if r.method == method and re.fullmatch(path, r.path)]


# ---------------------------------------------------------------- OpenAI wire format

OPENAI_CHAT = r"/v1/chat/completions"
OPENAI_RESPONSES = r"/v1/responses"
OPENAI_TRANSCRIBE = r"/v1/audio/transcriptions"
ANTHROPIC_MESSAGES = r"/v1/messages"


def openai_chat(
    content: str,
    *,
    model: str = "gpt-4o",
    prompt_tokens: int = 900,
    completion_tokens: int = 60,
    finish_reason: str = "stop",
) -> Reply:
    completion = oc.ChatCompletion(
        id=f"chatcmpl-{uuid.uuid4().hex[:12]}",
        object="chat.completion",
        created=int(time.time()),
        model=model,
        choices=[
            oc.chat_completion.Choice(
                index=0,
                finish_reason=finish_reason,
                message=oc.ChatCompletionMessage(role="assistant", content=content),
            )
        ],
        usage=CompletionUsage(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        ),
    )
    return Reply(200, completion.model_dump_json())


def openai_response(
    text: str, *, model: str = "gpt-4o", input_tokens: int = 900, output_tokens: int = 60
) -> Reply:
    response = orsp.Response(
        id=f"resp_{uuid.uuid4().hex[:12]}",
        object="response",
        created_at=time.time(),
        model=model,
        status="completed",
        output=[
            orsp.ResponseOutputMessage(
                id=f"msg_{uuid.uuid4().hex[:8]}",
                type="message",
                role="assistant",
                status="completed",
                content=[orsp.ResponseOutputText(type="output_text", text=text, annotations=[])],
            )
        ],
        parallel_tool_calls=False,
        tool_choice="auto",
        tools=[],
        usage=orsp.ResponseUsage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            total_tokens=input_tokens + output_tokens,
            input_tokens_details=orsp.response_usage.InputTokensDetails(
                cached_tokens=0, cache_write_tokens=0
            ),
            output_tokens_details=orsp.response_usage.OutputTokensDetails(reasoning_tokens=0),
        ),
    )
    return Reply(200, response.model_dump_json())


def openai_error(
    status: int,
    message: str,
    *,
    type: str = "invalid_request_error",
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    body = {"error": {"message": message, "type": type, "param": None, "code": code}}
    return Reply(status, body, headers or {})


def openai_transcription(text: str, segments: list[tuple[float, float, str]]) -> Reply:
    verbose = TranscriptionVerbose(
        text=text,
        language="english",
        duration=segments[-1][1] if segments else 0.0,
        segments=[
            TranscriptionSegment(
                id=i,
                seek=0,
                start=start,
                end=end,
                text=seg_text,
                tokens=[1, 2, 3],
                temperature=0.0,
                avg_logprob=-0.2,
                compression_ratio=1.1,
                no_speech_prob=0.01,
            )
            for i, (start, end, seg_text) in enumerate(segments)
        ],
    )
    return Reply(200, verbose.model_dump_json())


class OpenAIBatchBackend:
    """Files + Batches: upload JSONL, create, retrieve (in_progress for `polls_until_done`
    retrievals, then completed), download the output file. `answer(body)` gives each line's
    ChatCompletion content."""

    def __init__(
        self, server: FakeServer, answer: Callable[[dict[str, Any]], str], polls_until_done: int
    ) -> None:
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, ot.Batch] = {}
        self.retrievals: dict[str, int] = {}
        self.answer = answer
        self.polls_until_done = polls_until_done
        server.on("POST", r"/v1/files", self._upload)
        server.on("POST", r"/v1/batches", self._create)
        server.on("GET", r"/v1/batches/[^/]+", self._retrieve)
        server.on("GET", r"/v1/files/[^/]+/content", self._content)

    def _upload(self, req: Recorded) -> Reply:
        form = req.form()
        file_id = f"file-{uuid.uuid4().hex[:10]}"
        self.files[file_id] = form["file"]
        obj = ot.FileObject(
            id=file_id,
            object="file",
            bytes=len(form["file"]),
            created_at=int(time.time()),
            filename="batch.jsonl",
            purpose=form["purpose"].decode(),
            status="processed",
        )
        return Reply(200, obj.model_dump_json())

    def _create(self, req: Recorded) -> Reply:
        body = req.json()
        batch = ot.Batch(
            id=f"batch_{uuid.uuid4().hex[:10]}",
            object="batch",
            endpoint=body["endpoint"],
            input_file_id=body["input_file_id"],
            completion_window=body["completion_window"],
            created_at=int(time.time()),
            status="validating",
        )
        self.batches[batch.id] = batch
        self.retrievals[batch.id] = 0
        return Reply(200, batch.model_dump_json())

    def _retrieve(self, req: Recorded) -> Reply:
        batch_id = req.path.rsplit("/", 1)[1]
        batch = self.batches[batch_id]
        self.retrievals[batch_id] += 1
        lines = [json.loads(x) for x in self.files[batch.input_file_id].splitlines() if x.strip()]
        counts = ot.batch_request_counts.BatchRequestCounts(total=len(lines), completed=0, failed=0)
        if self.retrievals[batch_id] > self.polls_until_done and batch.status != "completed":
            output = []
            for line in lines:
                completion = openai_chat(self.answer(line["body"]), model=line["body"]["model"])
                output.append(
                    json.dumps(
                        {
                            "id": f"batch_req_{uuid.uuid4().hex[:8]}",
                            "custom_id": line["custom_id"],
                            "response": {
                                "status_code": 200,
                                "request_id": uuid.uuid4().hex,
                                "body": json.loads(completion.payload()),
                            },
                            "error": None,
                        }
                    )
                )
            out_id = f"file-{uuid.uuid4().hex[:10]}"
            self.files[out_id] = ("\n".join(output) + "\n").encode()
            batch = batch.model_copy(update={"status": "completed", "output_file_id": out_id})
            self.batches[batch_id] = batch
        if batch.status == "completed":
            counts = ot.batch_request_counts.BatchRequestCounts(
                total=len(lines), completed=len(lines), failed=0
            )
        else:
            batch = batch.model_copy(update={"status": "in_progress"})
        return Reply(200, batch.model_copy(update={"request_counts": counts}).model_dump_json())

    def _content(self, req: Recorded) -> Reply:
        file_id = req.path.split("/")[3]
        return Reply(200, self.files[file_id], content_type="application/octet-stream")


# ---------------------------------------------------------------- Anthropic wire format


def anthropic_message(
    tool_input: dict[str, Any] | None,
    *,
    tool_name: str,
    model: str = "claude-sonnet-4",
    input_tokens: int = 1200,
    output_tokens: int = 80,
    stop_reason: str = "tool_use",
    text: str | None = None,
) -> at.Message:
    content: list[Any] = []
    if text is not None:
        content.append(at.TextBlock(type="text", text=text, citations=None))
    if tool_input is not None:
        content.append(
            at.ToolUseBlock(
                type="tool_use",
                id=f"toolu_{uuid.uuid4().hex[:12]}",
                name=tool_name,
                input=tool_input,
            )
        )
    return at.Message(
        id=f"msg_{uuid.uuid4().hex[:12]}",
        type="message",
        role="assistant",
        model=model,
        content=content,
        stop_reason=stop_reason,
        stop_sequence=None,
        usage=at.Usage(input_tokens=input_tokens, output_tokens=output_tokens),
    )


def anthropic_reply(tool_input: dict[str, Any] | None, **kwargs: Any) -> Reply:
    return Reply(200, anthropic_message(tool_input, **kwargs).model_dump_json())


def anthropic_error(
    status: int, error_type: str, message: str, headers: dict[str, str] | None = None
) -> Reply:
    body = {"type": "error", "error": {"type": error_type, "message": message}}
    return Reply(status, body, headers or {})


class AnthropicBatchBackend:
    """Message Batches: create, retrieve (in_progress for `polls_until_done` retrievals), and
    results as JSONL at `results_url`."""

    def __init__(
        self,
        server: FakeServer,
        answer: Callable[[dict[str, Any]], dict[str, Any]],
        polls_until_done: int,
    ) -> None:
        self.server = server
        self.answer = answer
        self.polls_until_done = polls_until_done
        self.requests: dict[str, list[dict[str, Any]]] = {}
        self.retrievals: dict[str, int] = {}
        server.on("POST", r"/v1/messages/batches", self._create)
        server.on("GET", r"/v1/messages/batches/[^/]+", self._retrieve)
        server.on("GET", r"/v1/messages/batches/[^/]+/results", self._results)

    def _batch(self, batch_id: str, ended: bool) -> atm.MessageBatch:
        n = len(self.requests[batch_id])
        now = time.time()
        from datetime import UTC, datetime, timedelta

        created = datetime.fromtimestamp(now, UTC)
        return atm.MessageBatch(
            id=batch_id,
            type="message_batch",
            processing_status="ended" if ended else "in_progress",
            request_counts=atm.MessageBatchRequestCounts(
                processing=0 if ended else n,
                succeeded=n if ended else 0,
                errored=0,
                canceled=0,
                expired=0,
            ),
            created_at=created,
            expires_at=created + timedelta(hours=24),
            ended_at=created if ended else None,
            results_url=f"{self.server.url}/v1/messages/batches/{batch_id}/results"
            if ended
            else None,
        )

    def _create(self, req: Recorded) -> Reply:
        batch_id = f"msgbatch_{uuid.uuid4().hex[:12]}"
        self.requests[batch_id] = req.json()["requests"]
        self.retrievals[batch_id] = 0
        return Reply(200, self._batch(batch_id, ended=False).model_dump_json())

    def _retrieve(self, req: Recorded) -> Reply:
        batch_id = req.path.rsplit("/", 1)[1]
        self.retrievals[batch_id] += 1
        ended = self.retrievals[batch_id] > self.polls_until_done
        return Reply(200, self._batch(batch_id, ended).model_dump_json())

    def _results(self, req: Recorded) -> Reply:
        batch_id = req.path.split("/")[4]
        lines = []
        for item in self.requests[batch_id]:
            params = item["params"]
            message = anthropic_message(
                self.answer(params), tool_name=params["tool_choice"]["name"], model=params["model"]
            )
            row = atm.MessageBatchIndividualResponse(
                custom_id=item["custom_id"],
                result=atm.MessageBatchSucceededResult(type="succeeded", message=message),
            )
            lines.append(row.model_dump_json())
        return Reply(200, "\n".join(lines) + "\n", content_type="application/binary")


# ---------------------------------------------------------------- shared test helpers


class FakeClock:
    """Injected time: `sleep` records the wait and advances both clocks instantly."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.wall = start
        self.mono = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.mono

    def time(self) -> float:
        return self.wall

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


def png_bytes(width: int, height: int, colour: tuple[int, int, int] = (240, 240, 240)) -> bytes:
    """A real PNG of the given size, with some dark strokes so it is not blank."""
    import io

    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), colour)
    draw = ImageDraw.Draw(img)
    for y in range(20, height, 40):
        draw.line([(10, y), (width - 10, y)], fill=(20, 20, 20), width=2)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def image_parts(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every image content part in an OpenAI chat/responses or Anthropic request body."""
    parts: list[dict[str, Any]] = []
    for message in body.get("messages", body.get("input", [])):
        content = message.get("content")
        if isinstance(content, list):
            parts.extend(
                p for p in content if p.get("type") in ("image_url", "input_image", "image")
            )
    return parts


def assert_no_auto_detail(server: FakeServer) -> None:
    """No request ever carried detail="auto" (or no detail at all) on an OpenAI image part."""
    for req in server.requests:
        if req.method != "POST" or "json" not in req.headers.get("content-type", ""):
            continue
        body = req.json()
        bodies = [body] + [line.get("body", {}) for line in body.get("requests", [])]
        for item in bodies:
            for part in image_parts(item):
                if part["type"] == "image_url":
                    detail = part["image_url"].get("detail")
                    assert detail in ("low", "high"), f"{req.path} sent detail={detail!r}"
                elif part["type"] == "input_image":
                    detail = part.get("detail")
                    assert detail in ("low", "high"), f"{req.path} sent detail={detail!r}"


def saved(block: Any) -> str:
    """Save a provider block under a fresh name on the test server; flows take blocks by name
    (a key never travels as a flow-run parameter)."""
    import uuid

    name = f"test-{uuid.uuid4().hex[:10]}"
    block.save(name, overwrite=True)
    return name
