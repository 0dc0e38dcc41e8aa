"""Talking to the warm runner (cli/warm_runner.py): its address, its messages, and starting,
asking and stopping it.

`mmflow` (cli/launch.py) imports this in every command, so its top level imports the
standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import struct
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmflow.tasks.data_folder import data_dir

PROTOCOL = 1
DISABLE_ENV = "MMFLOW_WARM_RUNNER"  # "0": never start or use a runner
CONNECT_TIMEOUT_S = 5.0  # a runner still importing accepts once it is ready (~1.5 s)
GO = b"go"  # the caller's commitment: from here on, the runner runs the command


def enabled() -> bool:
    return sys.platform == "linux" and os.environ.get(DISABLE_ENV, "1") != "0"


def address() -> str:
    """The runner's socket, in Linux's abstract namespace (no file to go stale, no path
    length limit), one per data folder and user."""
    folder = os.path.realpath(data_dir() / "server")
    key = hashlib.sha256(folder.encode()).hexdigest()[:20]
    return f"\0mmflow-runner-{os.getuid()}-{key}"


def log_path() -> Path:
    return data_dir() / "server" / "runner.log"


# ---------------------------------------------------------------- messages


def send_message(sock: socket.socket, message: dict[str, Any], fds: Sequence[int] = ()) -> None:
    """One length-prefixed JSON message, with file descriptors attached when given."""
    body = json.dumps(message).encode()
    data = struct.pack("!I", len(body)) + body
    sent = socket.send_fds(sock, [data], list(fds)) if fds else 0
    sock.sendall(data[sent:])


def receive_exactly(sock: socket.socket, size: int, data: bytes = b"") -> bytes:
    """Read until `data` is `size` bytes long, never past it (the next message stays)."""
    while len(data) < size:
        more = sock.recv(size - len(data))
        if not more:
            raise EOFError
        data += more
    return data


def receive_message(sock: socket.socket, max_fds: int = 0) -> tuple[dict[str, Any], list[int]]:
    """The next message and the descriptors that came with it; raises EOFError when the
    other end closed first."""
    head, fds, _flags, _addr = socket.recv_fds(sock, 4, max_fds)
    try:
        if not head:
            raise EOFError
        (size,) = struct.unpack("!I", receive_exactly(sock, 4, head))
        return json.loads(receive_exactly(sock, size)), list(fds)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def connect(timeout_s: float = CONNECT_TIMEOUT_S) -> socket.socket | None:
    """A connection to this data folder's runner, or None when none is listening."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(address())
    except OSError:
        sock.close()
        return None
    sock.settimeout(timeout_s)
    return sock


def listening() -> bool:
    """Whether a runner listens (it may still be importing)."""
    sock = connect()
    if sock is None:
        return False
    sock.close()
    return True


def ping() -> dict[str, Any] | None:
    """The runner's status (pid, start time, commands served), or None when none runs."""
    sock = connect()
    if sock is None:
        return None
    with sock:
        try:
            send_message(sock, {"protocol": PROTOCOL, "ping": True})
            answer, _ = receive_message(sock)
        except (OSError, EOFError, ValueError):
            return None
    return answer


def ensure_running() -> None:
    """Start the runner in the background unless one runs (or it is disabled). Called as a
    command that used the local server exits; a second runner started by a race finds the
    address taken and exits at once."""
    if not enabled():
        return
    if listening():  # perhaps still importing: nothing to start
        return
    import subprocess

    log = log_path()
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as handle:
            subprocess.Popen(
                # -P and its own folder: nothing is imported from the caller's working folder
                [sys.executable, "-P", "-m", "mmflow.cli.warm_runner"],
                cwd=log.parent,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in the terminal spares it
            )
    except OSError:
        pass  # no runner: commands run in their own process, as without one


def stop(timeout_s: float = 10.0) -> bool:
    """Stop the runner; False when none was running."""
    status = ping()
    if status is None:
        return False
    pid = int(status["pid"])
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and listening():
        time.sleep(0.05)
    return True
