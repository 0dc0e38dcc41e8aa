"""Load on the webhook receiver over loopback: N distinct signed uploads from T client threads.

Prints how many were accepted, stored and announced (none may be lost or doubled) and the
p50/p95 latency from sending a request to its 202. The receiver runs in this process under
uvicorn on a free 127.0.0.1 port with a counting emitter, so the figure is the receiver's own
cost (auth, hashing, storing, record) without the Prefect API; run with `--prefect` to emit real
events to the configured Prefect API instead.

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
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette

from mmflow.deployments.webhook import (
    Emitter,
    Upload,
    WebhookSettings,
    create_app,
    emit_upload_event,
    signed_headers,
)

MAX_REQUESTS = 2000  # loopback only, and bounded: this is a benchmark, not a flood tool


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serving(app: Starlette) -> Iterator[str]:
    """`app` under uvicorn on a free loopback port, in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
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


class CountingEmitter:
    """Records every upload it is asked to announce (thread-safe)."""

    def __init__(self) -> None:
        self.uploads: list[Upload] = []
        self._lock = threading.Lock()

    def __call__(self, upload: Upload) -> str:
        with self._lock:
            self.uploads.append(upload)
            return f"counted-{len(self.uploads)}"


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
            headers = signed_headers(secret, body, content_type)
            started = time.perf_counter()
            response = client.post(f"/v1/ingest/{scenario}", content=body, headers=headers)
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

    secret = b"benchmark-secret"
    emitter = CountingEmitter()
    emit: Emitter = emit_upload_event if args.prefect else emitter
    bodies = distinct_bodies(args.requests, args.size)
    with tempfile.TemporaryDirectory() as storage:
        app = create_app(WebhookSettings(storage=storage, secret=secret), emit=emit)
        with serving(app) as url:
            started = time.perf_counter()
            result = run_load(url, secret, bodies, args.threads)
            wall = time.perf_counter() - started
        uploads = Path(storage) / "uploads"
        stored = [p for p in uploads.iterdir() if "." not in p.name]
        records = list(uploads.glob("*.json"))
    expected = {hashlib.sha256(b).hexdigest() for b in bodies}
    print(f"requests {args.requests} × {args.size} B from {args.threads} threads, {wall:.2f} s")
    print(f"statuses {dict(result.statuses)}")
    print(f"stored objects {len(stored)} · records {len(records)} · expected {len(expected)}")
    print(
        f"lost {len(expected - {p.name for p in stored})} · hashes acked {len(set(result.hashes))}"
    )
    if not args.prefect:
        print(
            f"events {len(emitter.uploads)} (distinct {len({u.sha256 for u in emitter.uploads})})"
        )
    print(
        f"latency to 202: p50 {result.percentile(50) * 1000:.1f} ms · "
        f"p95 {result.percentile(95) * 1000:.1f} ms · "
        f"{len(result.latencies_s) / wall:.0f} uploads/s"
    )


if __name__ == "__main__":
    main()
