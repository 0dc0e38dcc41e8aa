"""A local Prefect server that outlives one command.

Without `PREFECT_API_URL`, Prefect starts a temporary server for every process (6–9 s here)
and drops it at exit, runs and artifacts with it; it also dies with the first Ctrl-C, because
it shares the terminal's process group. So the first `mmflow` command that needs Prefect starts
one server in the background, in a session of its own, and later commands reuse it:

- it listens on 127.0.0.1 only, keeps its SQLite database under the user's data folder
  (`$MMFLOW_HOME`, else `$XDG_DATA_HOME/mmflow`, else `~/.local/share/mmflow`), and records
  its address and process in `server/server.json`;
- a supervisor process owns it and stops it once it has been idle for `idle_s` (no mmflow
  command for that long and no flow run in progress), so nothing is lost by the shutdown;
- starting is serialised by a lock file, so two commands started at once share one server,
  and a server.json left by a dead process is detected (no process, or no answer) and replaced;
- `PREFECT_API_URL` set (environment or Prefect profile) means this is never used.

`mmflow server start|stop|status` manage it by hand (cli/app.py).
"""

from __future__ import annotations

import fcntl
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from mmflow.tasks.data_folder import data_dir

DEFAULT_IDLE_S = 3600.0  # an hour without a command or a running flow
START_TIMEOUT_S = 180.0  # a busy 2-core machine needs 10-20 s; give it room
PORTS = range(4200, 4300)


@dataclass(frozen=True)
class ServerInfo:
    """`server.json`: the running local server. (A dataclass and the standard library only:
    the first command imports this module before it spawns the server, and the supervisor
    before it starts it, so every import here delays the server.)"""

    url: str  # the API URL clients use (…/api)
    port: int
    pid: int  # the supervisor, which owns the server process
    home: str  # PREFECT_HOME of the server: its SQLite database lives there
    idle_s: float
    started_at: float
    server_pid: int | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServerInfo:
        """Raises ValueError for anything but a complete record."""
        data = json.loads(text)
        try:
            info = cls(**data)
        except TypeError as error:
            raise ValueError(f"not a server record: {error}") from error
        numbers = (info.port, info.pid, info.idle_s, info.started_at)
        if not isinstance(info.url, str) or not all(isinstance(n, int | float) for n in numbers):
            raise ValueError("not a server record")
        return info


def server_dir() -> Path:
    return data_dir() / "server"


def _info_path() -> Path:
    return server_dir() / "server.json"


def _used_path() -> Path:
    return server_dir() / "last-used"


def _configured_note() -> Path:
    return server_dir() / "api-configured"


def remember_configured(configured: bool) -> None:
    """Note whether this command found an API URL configured (a Prefect profile, a
    prefect.toml), for `configured_last_time`."""
    note = _configured_note()
    with suppress(OSError):  # a read-only data folder: early starts just go by the default
        if configured:
            note.parent.mkdir(parents=True, exist_ok=True)
            note.touch()
        else:
            note.unlink(missing_ok=True)


def configured_last_time() -> bool:
    """Whether the last command found an API URL configured. Knowing it for sure needs
    Prefect's settings (about a second of imports, which `begin_start` exists to overlap),
    so an early start goes by this note: wrong only after the configuration changed, and
    then the server merely starts later, or is started and stopped once."""
    return _configured_note().exists()


def configured_api_url() -> str | None:
    """The API URL the user configured (environment or Prefect profile), if any."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return str(url) if url else None


@contextmanager
def _start_lock() -> Iterator[None]:
    server_dir().mkdir(parents=True, exist_ok=True)
    with open(server_dir() / "start.lock", "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process took the number
        return False
    return True


def _call(url: str, path: str, body: object = None, timeout_s: float = 2.0) -> tuple[int, bytes]:
    """One request to the local server (always plain http on the loopback): status and body.
    Standard-library HTTP: an httpx client loads the CA bundle first (~40 ms), for a
    connection that never uses TLS. Raises OSError or http.client.HTTPException."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout_s)
    try:
        if body is None:
            connection.request("GET", f"{parts.path}{path}")
        else:
            headers = {"Content-Type": "application/json"}
            connection.request("POST", f"{parts.path}{path}", json.dumps(body), headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _healthy(url: str, timeout_s: float = 2.0) -> bool:
    """Whether the server at `url` answers its health check."""
    try:
        return _call(url, "/health", timeout_s=timeout_s)[0] == 200
    except (OSError, http.client.HTTPException):
        return False


def _write_info(info: ServerInfo) -> None:
    """Replace server.json at once: a command reading it never sees half a file."""
    partial = _info_path().with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(info.to_json(), encoding="utf-8")
    partial.replace(_info_path())


def read_info() -> ServerInfo | None:
    try:
        return ServerInfo.from_json(_info_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def running() -> ServerInfo | None:
    """The local server, if its supervisor is alive and its API answers."""
    info = read_info()
    if info is not None and _alive(info.pid) and _healthy(info.url):
        return info
    return None


def touch() -> None:
    """Tell the supervisor a command used the server (it stops after `idle_s` without one)."""
    path = _used_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def _free_port() -> int:
    for port in PORTS:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1} for the local server")


_spawned: list[subprocess.Popen[bytes]] = []  # supervisors this process started


def _booting(info: ServerInfo) -> bool:
    """Its supervisor is alive and it started less than START_TIMEOUT_S ago: wait for it."""
    return _alive(info.pid) and time.time() - info.started_at < START_TIMEOUT_S


def begin_start(idle_s: float = DEFAULT_IDLE_S) -> bool:
    """Start the local server in the background unless one is running or starting; returns at
    once, True when this call started it.

    The CLI calls this before it imports Prefect and the pipeline (about 1.5 s), so the server
    boots meanwhile instead of afterwards; `start()` then waits for it. The spawning command
    writes `server.json` itself (the supervisor rewrites it with the server's pid), so a
    command started meanwhile finds this server starting and waits for it instead of
    starting a second one or taking it for a stale one.
    """
    with _start_lock():
        info = read_info()
        if info is not None and (_booting(info) or running() is not None):
            touch()
            return False
        _forget_stale()
        port = _free_port()
        touch()
        log = open(server_dir() / "server.log", "ab")  # noqa: SIM115 (the child owns it)
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "mmflow.deployments.local_server", str(port), str(idle_s)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # not in the terminal's process group: Ctrl-C spares it
            env=os.environ | {"PREFECT_SERVER_ANALYTICS_ENABLED": "false"},
        )
        log.close()
        starting = ServerInfo(
            url=f"http://127.0.0.1:{port}/api",
            port=port,
            pid=supervisor.pid,
            home=str(_prefect_home()),
            idle_s=idle_s,
            started_at=time.time(),
        )
        _write_info(starting)
        _spawned.append(supervisor)
        return True


def wait_until_up() -> ServerInfo:
    """The local server once its API answers; raises RuntimeError when it cannot start."""
    log = server_dir() / "server.log"
    while True:
        info = read_info()
        exited = any(p.pid == getattr(info, "pid", None) and p.poll() is not None for p in _spawned)
        if info is None or exited or not _alive(info.pid):
            raise RuntimeError(f"the local Prefect server did not start (see {log})")
        if _healthy(info.url, timeout_s=1.0):
            return info
        if not _booting(info):
            raise RuntimeError(
                f"the local Prefect server did not answer within {START_TIMEOUT_S:g} s (see {log})"
            )
        time.sleep(0.1)


def start(idle_s: float = DEFAULT_IDLE_S) -> ServerInfo:
    """The running local server, started (and waited for) when there is none."""
    begin_start(idle_s)
    return wait_until_up()


def _forget_stale() -> None:
    """A server.json whose supervisor is gone (killed, machine restarted): clean up after it."""
    info = read_info()
    if info is None:
        return
    with suppress(ProcessLookupError, PermissionError):
        if _alive(info.pid):  # the supervisor leads its own process group, server included
            os.killpg(info.pid, signal.SIGTERM)
        elif _alive(info.server_pid) and info.server_pid:
            os.kill(info.server_pid, signal.SIGTERM)
    _info_path().unlink(missing_ok=True)


def stop(timeout_s: float = 30.0) -> bool:
    """Stop the local server; False when none was running."""
    with _start_lock():
        info = read_info()
        if info is None or not _alive(info.pid):
            _info_path().unlink(missing_ok=True)
            return False
        os.kill(info.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _alive(info.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(info.pid):
            os.killpg(info.pid, signal.SIGKILL)
        _info_path().unlink(missing_ok=True)
        return True


def ensure_api_url(idle_s: float = DEFAULT_IDLE_S) -> str:
    """The Prefect API this process should use: the configured one, else the local server
    (started if needed), which is then set as `PREFECT_API_URL` for this process."""
    configured = configured_api_url()
    if configured:
        return configured
    info = start(idle_s)
    os.environ["PREFECT_API_URL"] = info.url
    # Prefect read its settings when first imported (configured_api_url above did): without a
    # refresh its client would still see no API URL and start a temporary server of its own.
    from prefect.context import refresh_global_settings_context

    refresh_global_settings_context()
    return info.url


# ---------------------------------------------------------------- the supervisor process


def _active_runs(url: str) -> int:
    """Flow runs the server has in progress (pending, running, cancelling)."""
    body = {"flow_runs": {"state": {"type": {"any_": ["PENDING", "RUNNING", "CANCELLING"]}}}}
    try:
        status, answer = _call(url, "/flow_runs/count", body, timeout_s=10)
        if status != 200:
            raise ValueError(f"status {status}")
        return int(json.loads(answer))
    except (OSError, http.client.HTTPException, ValueError):
        return 1  # cannot tell: assume busy, never stop a server that may be working


def _prefect_home() -> Path:
    return server_dir() / "prefect-home"


def supervise(port: int, idle_s: float) -> int:
    """Run `prefect server start` on 127.0.0.1:`port` until it has been idle for `idle_s`."""
    home = _prefect_home()
    home.mkdir(parents=True, exist_ok=True)
    env = os.environ | {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
    }
    env.pop("PREFECT_API_URL", None)  # the server is the API; it must not look for another
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/api"
    info = ServerInfo(
        url=url,
        port=port,
        pid=os.getpid(),
        server_pid=server.pid,
        home=str(home),
        idle_s=idle_s,
        started_at=time.time(),
    )
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    _write_info(info)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not stopping and server.poll() is None and not _healthy(url, timeout_s=1.0):
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    touch()  # the idle clock starts when the server answers, not before its start-up
    check_every = min(30.0, max(1.0, idle_s / 4))
    next_check = time.monotonic() + check_every
    try:
        while not stopping and server.poll() is None:
            time.sleep(0.5)
            if time.monotonic() < next_check:
                continue
            next_check = time.monotonic() + check_every
            try:
                idle_for = time.time() - _used_path().stat().st_mtime
            except OSError:
                idle_for = 0.0
            if idle_for > idle_s and _active_runs(url) == 0:
                break
    finally:
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
        current = read_info()
        if current is not None and current.pid == os.getpid():
            _info_path().unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(supervise(int(sys.argv[1]), float(sys.argv[2])))
