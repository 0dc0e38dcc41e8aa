"""Serving the webhook receiver with uvicorn so that slow or half-sent requests cannot pile up.

Three limits, each for a different way a client can hold a connection open:
- request headers: uvicorn has no deadline for them, so `HeaderDeadlineProtocol` closes a
  connection whose request line and headers are not complete `header_timeout_s` after its first
  byte (or after the connection opened);
- the body: the app's own deadline (`WebhookSettings.body_timeout_s`) answers 408 and uvicorn
  closes the connection, since the rest of the body was never read;
- idle keep-alive connections close after `keep_alive_s`, and at most `limit_concurrency`
  connections are served at once (uvicorn answers 503 beyond that).
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

MAX_HEADER_BYTES = 16 * 1024  # the receiver reads a handful of short headers


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, plus a deadline for a request's headers to arrive in full."""

    header_timeout_s: float = 10.0
    _header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        if self._header_deadline is None and not self._in_request():
            self._arm_header_deadline()  # the first bytes of the next request on a keep-alive
        super().data_received(data)
        if self._in_request():
            self._disarm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _in_request(self) -> bool:
        """Headers complete and the response not yet sent."""
        return self.cycle is not None and not self.cycle.response_complete

    def _arm_header_deadline(self) -> None:
        self._header_deadline = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_late(self) -> None:
        self._header_deadline = None
        if not self._in_request() and not self.transport.is_closing():
            self.transport.close()


def server_config(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    header_timeout_s: float = 10.0,
    keep_alive_s: int = 5,
    limit_concurrency: int = 512,
    **uvicorn_options: Any,
) -> uvicorn.Config:
    """The uvicorn configuration `mmflow webhook` (and the load benchmark) serve with."""
    protocol = type(
        "HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), {"header_timeout_s": header_timeout_s}
    )
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        timeout_keep_alive=keep_alive_s,
        limit_concurrency=limit_concurrency,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        timeout_graceful_shutdown=10,
        **uvicorn_options,
    )
