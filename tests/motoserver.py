"""A real S3-compatible server (`moto_server`) on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class ServerMissing(RuntimeError):
    """moto_server is not installed beside this Python."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True  # it answered, even if with an error status
    except OSError:
        return False


@contextmanager
def moto_server(startup_timeout_s: float = 60) -> Iterator[str]:
    """Start `moto_server`, point the AWS environment at it, yield its endpoint; undo at exit."""
    server = Path(sys.executable).parent / "moto_server"
    if not server.exists():
        raise ServerMissing("moto_server is not installed: pip install 'moto[server]'")
    endpoint = f"http://127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", endpoint.rsplit(":", 1)[1]],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    saved = {k: os.environ.get(k) for k in [*AWS_ENV, "AWS_ENDPOINT_URL"]}
    try:
        deadline = time.monotonic() + startup_timeout_s
        while not _answers(endpoint):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto_server did not start on {endpoint}")
            time.sleep(0.2)
        os.environ.update(AWS_ENV | {"AWS_ENDPOINT_URL": endpoint})
        yield endpoint
    finally:
        process.kill()
        process.wait(timeout=10)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
