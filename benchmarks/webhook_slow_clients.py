"""Half-sent requests against the webhook receiver: none may keep its connection open for long.

A client holds a connection by never finishing what it sends. This opens connections of three
kinds at once over loopback, against the receiver served as `mmflow webhook` serves it
(deployments/webhook_server.py), and watches each until the receiver closes it:

- unsigned: declares a 4 MB body and sends 1 KB of it (a forged upload): refused with 401 from
  its headers, before its body is read, and closed at once;
- signed, body stalls: a validly signed upload whose body stops after 100 bytes: 408 once the
  body timeout has passed, then closed;
- headers never end: a request line and one header: closed at the header deadline.

It prints, per kind, what the connections got (status line, or closed without an answer) and
the longest any stayed open (from its connect to its close), then the latency of a good upload
sent while they were all open.

    .venv/bin/python -m benchmarks.webhook_slow_clients --connections 500
"""

from __future__ import annotations

import argparse
import selectors
import socket
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from benchmarks.webhook_load import BENCHMARK_SECRET, CountingSink, distinct_bodies, serving
from mmflow.deployments.webhook import WebhookSettings, create_app, signed_headers

MAX_CONNECTIONS = 500  # under the receiver's 512 concurrent connections: a test, not a flood
INGEST = "/v1/ingest/invoice"
KINDS = ("unsigned", "signed, body stalls", "headers never end")


def half_sent_requests(secret: bytes, body: bytes) -> dict[str, bytes]:
    """What each kind of slow client sends before it stops sending, by kind."""
    forged = (
        f"POST {INGEST} HTTP/1.1\r\nHost: x\r\nContent-Type: application/pdf\r\n"
        "Content-Length: 4000000\r\n\r\n"
    )
    return {
        "unsigned": forged.encode() + b"%PDF-1.7 " * 114,
        "signed, body stalls": signed_request_head(secret, body) + body[:100],
        "headers never end": f"POST {INGEST} HTTP/1.1\r\nHost: x\r\n".encode(),
    }


def signed_request_head(secret: bytes, body: bytes) -> bytes:
    """The request line and headers of a signed upload of `body`, as sent on a raw socket."""
    headers = signed_headers(secret, "POST", INGEST, body, content_type="application/pdf")
    headers |= {"Host": "x", "Content-Length": str(len(body))}
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"POST {INGEST} HTTP/1.1\r\n{head}\r\n".encode()


@dataclass
class SlowClients:
    """How the receiver ended each connection: by kind, its first status line or "closed"."""

    answers: dict[str, Counter[str]] = field(default_factory=dict)
    longest_open_s: dict[str, float] = field(default_factory=dict)
    still_open: int = 0
    good_upload_status: int | None = None
    good_upload_s: float = float("nan")


def _first_line(data: bytes) -> str:
    return data.split(b"\r\n", 1)[0].decode("latin-1") if data else "closed, no answer"


def _timed_upload(url: str, secret: bytes, body: bytes) -> tuple[int, float]:
    started = time.monotonic()
    with httpx.Client(base_url=url, timeout=30) as client:
        headers = signed_headers(secret, "POST", INGEST, body, content_type="application/pdf")
        status = client.post(INGEST, content=body, headers=headers).status_code
    return status, time.monotonic() - started


def _watch_until_closed(
    selector: selectors.BaseSelector,
    received: dict[socket.socket, bytearray],
    result: SlowClients,
    started: float,
    wait_s: float,
) -> None:
    """Read every connection until the receiver closes it, noting what it got and when."""
    while selector.get_map() and time.monotonic() - started < wait_s:
        for key, _ in selector.select(timeout=0.1):
            conn = key.fileobj
            assert isinstance(conn, socket.socket)
            try:
                chunk = conn.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if chunk:
                received[conn] += chunk
                continue
            selector.unregister(conn)
            kind, opened_at = key.data
            result.answers[kind][_first_line(bytes(received[conn]))] += 1
            open_s = time.monotonic() - opened_at
            result.longest_open_s[kind] = max(result.longest_open_s.get(kind, 0), open_s)


def hold_half_sent(url: str, per_kind: int, wait_s: float, secret: bytes) -> SlowClients:
    """Open `per_kind` connections of each kind, send a good upload, watch them all close."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError("only a receiver on this machine")
    if per_kind * len(KINDS) > MAX_CONNECTIONS:
        raise ValueError(f"at most {MAX_CONNECTIONS} connections")
    port = int(url.rsplit(":", 1)[1])
    good, sample = distinct_bodies(2, 20_000)
    sends = half_sent_requests(secret, sample)
    result = SlowClients(answers={kind: Counter() for kind in KINDS})
    received: dict[socket.socket, bytearray] = {}
    with selectors.DefaultSelector() as selector:
        try:
            for kind in KINDS:
                for _ in range(per_kind):
                    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
                    conn.sendall(sends[kind])
                    conn.setblocking(False)
                    selector.register(conn, selectors.EVENT_READ, (kind, time.monotonic()))
                    received[conn] = bytearray()
            started = time.monotonic()
            with ThreadPoolExecutor(max_workers=1) as pool:  # sent while the loop below watches
                good_upload = pool.submit(_timed_upload, url, secret, good)
                _watch_until_closed(selector, received, result, started, wait_s)
                result.good_upload_status, result.good_upload_s = good_upload.result()
            result.still_open = len(selector.get_map())
        finally:
            for conn in received:
                conn.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=500, help="in all, split by kind")
    parser.add_argument("--body-timeout", type=float, default=5.0, help="the receiver's, in s")
    parser.add_argument("--header-timeout", type=float, default=10.0, help="the receiver's")
    args = parser.parse_args()

    per_kind = args.connections // len(KINDS)
    wait_s = max(args.body_timeout, args.header_timeout) + 20
    with tempfile.TemporaryDirectory() as storage:
        settings = WebhookSettings(
            storage=storage, secret=BENCHMARK_SECRET, body_timeout_s=args.body_timeout
        )
        app = create_app(settings, sink=CountingSink())
        with serving(app, header_timeout_s=args.header_timeout) as url:
            result = hold_half_sent(url, per_kind, wait_s, BENCHMARK_SECRET)
    print(
        f"{per_kind * len(KINDS)} half-sent connections ({per_kind} per kind); body timeout "
        f"{args.body_timeout:g} s, header timeout {args.header_timeout:g} s"
    )
    print(f"| {'kind':<20} | {'what the receiver did':<40} | longest open |")
    print(f"|{'-' * 22}|{'-' * 42}|{'-' * 14}|")
    for kind in KINDS:
        what = ", ".join(f"{n} × {line}" for line, n in result.answers[kind].most_common())
        longest = result.longest_open_s.get(kind, float("nan"))
        print(f"| {kind:<20} | {what:<40} | {longest:>10.2f} s |")
    print(f"still open after {wait_s:g} s: {result.still_open}")
    print(
        f"a good upload sent meanwhile: {result.good_upload_status} "
        f"in {result.good_upload_s * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
