"""An HTTP proxy in front of `moto_server` that fails the S3 requests a test chooses.

moto's own fault injection is limited, and botocore event hooks live inside the process under
test; a proxy sits where real faults happen, on the wire, so the real s3fs/botocore retry logic
and mmflow's handling of what gets through are both exercised. A fault answers with an S3 error
(503 SlowDown, 500 InternalError), or drops the connection: before the request reaches the
store, or after the store has done it (the response is lost, as when a load balancer resets a
connection; a retried conditional PUT then finds its own object).
"""

from __future__ import annotations

import http.client
import random
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import urlsplit

Action = Literal["slowdown", "internal", "drop", "drop_after"]

_ERRORS = {
    "slowdown": (503, "SlowDown", "Please reduce your request rate."),
    "internal": (500, "InternalError", "We encountered an internal error. Please try again."),
}
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


@dataclass
class Fault:
    """Fail requests whose method is in `methods` (any if empty) and whose path holds
    `path_contains`, with `probability`, at most `times` times (None: for as long as it is on)."""

    actions: tuple[Action, ...]
    methods: tuple[str, ...] = ()
    path_contains: str = ""
    probability: float = 1.0
    times: int | None = None
    injected: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (not self.methods or method in self.methods) and self.path_contains in path


@dataclass
class FaultyS3:
    """The proxy's state: the faults in force and what was injected (by action)."""

    upstream: str
    seed: int = 1
    faults: list[Fault] = field(default_factory=list)
    injected: Counter[str] = field(default_factory=Counter)
    forwarded: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()

    def decide(self, method: str, path: str) -> Action | None:
        with self._lock:
            for fault in self.faults:
                if not fault.matches(method, path):
                    continue
                if fault.times is not None and fault.injected >= fault.times:
                    continue
                if self._random.random() >= fault.probability:
                    continue
                fault.injected += 1
                action = self._random.choice(fault.actions)
                self.injected[action] += 1
                return action
            self.forwarded += 1
            return None


def _handler(state: FaultyS3) -> type[BaseHTTPRequestHandler]:
    target = urlsplit(state.upstream)

    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def _body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _drop(self) -> None:
            self.close_connection = True
            # RST, not FIN: the client sees a reset connection, as from a failing balancer.
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            self.connection.close()

        def _error(self, status: int, code: str, message: str) -> None:
            body = (
                f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                f"<Message>{message}</Message></Error>"
            ).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            if body or self.command in ("PUT", "POST"):
                headers["Content-Length"] = str(len(body))
            upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            try:
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                return response.status, response.getheaders(), data
            finally:
                upstream.close()

        def _proxy(self) -> None:
            body = self._body()
            action = state.decide(self.command, self.path)
            if action == "drop":
                self._drop()
                return
            if action in _ERRORS:
                self._error(*_ERRORS[action])
                return
            status, headers, data = self._forward(body)
            if action == "drop_after":
                self._drop()
                return
            self.send_response(status)
            head = self.command == "HEAD"  # its Content-Length is the object's, not the body's
            for name, value in headers:
                if name.lower() not in _HOP_BY_HOP and (head or name.lower() != "content-length"):
                    self.send_header(name, value)
            if not head:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _proxy

    return Proxy


@contextmanager
def faulty_s3(upstream: str, seed: int = 1) -> Iterator[tuple[str, FaultyS3]]:
    """Serve the proxy on a free loopback port; yields its endpoint and its state."""
    state = FaultyS3(upstream=upstream, seed=seed)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="faulty-s3", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
