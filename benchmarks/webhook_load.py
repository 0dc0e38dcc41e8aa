"""Load on the webhook receiver over loopback: N distinct signed uploads from T client threads.

Prints how many were accepted, stored and announced (none may be lost or doubled) and the
p50/p95 latency from sending a request to its 202. The receiver runs in this process under
uvicorn on a free 127.0.0.1 port (served as `mmflow webhook` serves it) with a counting event
sink, so the figure is the receiver's own cost (auth, hashing, durable storing, outbox commit)
without the Prefect API; run with `--prefect` to deliver real events to the configured Prefect
API instead. "announced" counts what the delivery loop handed to the sink once the outbox drained.

    .venv/bin/python -m benchmarks.webhook_load --requests 200 --threads 16
"""

from __future__ import annotations

import argparse
import hashlib
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import uvicorn
from starlette.applications import Starlette

from mmflow.deployments.delivery import EventSink, PrefectEventSink
from mmflow.deployments.webhook import Upload, WebhookSettings, create_app, signed_headers
from mmflow.deployments.webhook_server import server_config

MAX_REQUESTS = 2000  # loopback only, and bounded: this is a benchmark, not a flood tool
BENCHMARK_SECRET = hashlib.sha256(b"mmflow webhook benchmark").hexdigest().encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serving(
    app: Starlette, header_timeout_s: float = 10.0, port: int | None = None
) -> Iterator[str]:
    """`app` under uvicorn on a loopback port, in a thread, as `mmflow webhook` serves it."""
    port = port or free_port()
    config = server_config(
        app,
        "127.0.0.1",
        port,
        header_timeout_s=header_timeout_s,
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on 127.0.0.1:{port}")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


class CountingSink:
    """An event sink that records every event it is sent and holds it at once (thread-safe)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    async def send(self, events: Sequence[dict[str, Any]]) -> None:
        with self._lock:
            self.events.extend(events)

    async def held(self, event_ids: Sequence[UUID], since: datetime) -> set[UUID]:
        with self._lock:
            sent = {UUID(event["id"]) for event in self.events}
        return sent & set(event_ids)

    async def probe(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    @property
    def uploads(self) -> list[Upload]:
        """The uploads announced, in the order their events were sent."""
        with self._lock:
            return [Upload.model_validate(event["payload"]) for event in self.events]


def wait_until_drained(base_url: str, timeout_s: float = 120) -> dict[str, Any]:
    """Polls /healthz until the outbox holds nothing pending or sent; returns its outbox."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=base_url, timeout=10) as client:
        while True:
            outbox: dict[str, Any] = client.get("/healthz").json()["outbox"]
            if outbox["pending"] == 0 and outbox["sent"] == 0:
                return outbox
            if time.monotonic() > deadline:
                raise TimeoutError(f"the outbox did not drain in {timeout_s} s: {outbox}")
            time.sleep(0.1)


def distinct_bodies(count: int, size: int) -> list[bytes]:
    """`count` different PDF-looking bodies of `size` bytes (content the receiver never parses)."""
    bodies = []
    for index in range(count):
        seed = hashlib.sha256(f"mmflow-load-{index}".encode()).digest()
        bodies.append((b"%PDF-1.7\n" + seed * (size // len(seed) + 1))[:size])
    return bodies


@dataclass
class LoadResult:
    statuses: Counter[int] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile of the 202 latencies, in seconds."""
        ordered = sorted(self.latencies_s)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def run_load(
    base_url: str,
    secret: bytes,
    bodies: list[bytes],
    threads: int,
    scenario: str = "invoice",
    content_type: str = "application/pdf",
) -> LoadResult:
    """POST every body once, signed, from `threads` threads; loopback URLs only."""
    if not base_url.startswith(("http://127.0.0.1:", "http://localhost:")):
        raise ValueError("the load generator only targets a receiver on this machine")
    if len(bodies) > MAX_REQUESTS:
        raise ValueError(f"at most {MAX_REQUESTS} requests")
    result = LoadResult()
    lock = threading.Lock()
    limits = httpx.Limits(max_connections=threads, max_keepalive_connections=threads)
    with httpx.Client(base_url=base_url, limits=limits, timeout=120) as client:

        def send(body: bytes) -> None:
            path = f"/v1/ingest/{scenario}"
            headers = signed_headers(secret, "POST", path, body, content_type=content_type)
            started = time.perf_counter()
            response = client.post(path, content=body, headers=headers)
            elapsed = time.perf_counter() - started
            with lock:
                result.statuses[response.status_code] += 1
                if response.status_code == 202:
                    result.latencies_s.append(elapsed)
                    result.hashes.append(response.json()["sha256"])

        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(send, bodies))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--size", type=int, default=50_000, help="bytes per upload")
    parser.add_argument("--prefect", action="store_true", help="emit real Prefect events")
    args = parser.parse_args()

    secret = BENCHMARK_SECRET
    counting = CountingSink()
    sink: EventSink = PrefectEventSink.from_settings() if args.prefect else counting
    bodies = distinct_bodies(args.requests, args.size)
    with tempfile.TemporaryDirectory() as storage:
        app = create_app(WebhookSettings(storage=storage, secret=secret), sink=sink)
        with serving(app) as url:
            started = time.perf_counter()
            result = run_load(url, secret, bodies, args.threads)
            wall = time.perf_counter() - started
            wait_until_drained(url)
            drained = time.perf_counter() - started
        stored = [p for p in (Path(storage) / "uploads").iterdir() if "." not in p.name]
    expected = {hashlib.sha256(b).hexdigest() for b in bodies}
    print(f"requests {args.requests} × {args.size} B from {args.threads} threads, {wall:.2f} s")
    print(f"statuses {dict(result.statuses)}")
    print(f"stored objects {len(stored)} · expected {len(expected)}")
    print(
        f"lost {len(expected - {p.name for p in stored})} · hashes acked {len(set(result.hashes))}"
    )
    print(f"outbox drained {drained:.2f} s after the first request")
    if not args.prefect:
        announced = Counter(u.sha256 for u in counting.uploads)
        once = sum(1 for sha in expected if announced[sha] == 1)
        print(
            f"events {len(counting.events)} · announced once {once}/{len(expected)} · "
            f"announced twice or more {sum(1 for n in announced.values() if n > 1)}"
        )
    print(
        f"latency to 202: p50 {result.percentile(50) * 1000:.1f} ms · "
        f"p95 {result.percentile(95) * 1000:.1f} ms · "
        f"{len(result.latencies_s) / wall:.0f} uploads/s"
    )


if __name__ == "__main__":
    main()
