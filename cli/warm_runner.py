"""A warm runner: `mmflow run` commands served by a process that has already imported
Prefect and the pipeline.

A text PDF takes about 25 ms to read; a fresh `mmflow run` process spends ~1.5 s importing
Prefect, pandas and the pipeline before it starts. While the local Prefect server runs
(deployments/local_server.py), a runner process keeps those modules imported and forks a
copy of itself for each command, the way `multiprocessing`'s forkserver, Android's zygote or
Spring's preloader do:

1. the `mmflow` command (cli/launch.py, which imports nothing heavy) connects to the runner's
   socket and sends its arguments, working folder, environment, umask, resource limits,
   niceness, CPU affinity and `sys.path`, and its standard input, output and error as file
   descriptors (SCM_RIGHTS);
2. the runner forks a session process for the connection, which forks the command process: it
   takes the terminal's descriptors as its own 0, 1 and 2, the caller's folder, environment and
   arguments, refreshes Prefect's settings and logging from that environment, and runs the
   ordinary command line (`mmflow.cli.app`) exactly as the caller would have;
3. the session process waits for it and sends its exit status back; the caller forwards
   Ctrl-C and other signals to it (Ctrl-Z stops both), and exits with its status.

So output, colours, progress bars, relative paths, provider keys, `-v`, `nice`, `ulimit`,
Ctrl-C and exit codes are those of a command run in place. The runner refuses (and the caller
runs the command itself) when the caller uses another interpreter or other `PYTHON*`
settings, asks for a limit or a priority an unprivileged runner cannot grant, or when the
runner's preloaded code changed on disk (an edit, a `pip install`): it then exits, and the
next command starts a fresh one.

Lifetime: the first command that used the local server starts the runner as it exits (so its
1.5 s of imports never compete with a run), and the runner ends within a second of the local
server's supervisor. Linux only (fork, abstract sockets, SO_PEERCRED); elsewhere, and with
`MMFLOW_WARM_RUNNER=0`, every command runs in its own process as before. Only the caller's
own user may connect (checked with SO_PEERCRED).

The caller's side, and starting, asking and stopping a runner: cli/runner_client.py.
"""

from __future__ import annotations

import os
import resource
import select
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

from mmflow.cli.runner_client import (
    GO,
    PROTOCOL,
    address,
    enabled,
    receive_exactly,
    receive_message,
    send_message,
)

# What a `mmflow run` imports, loaded once by the runner. mmflow.cli itself is not preloaded:
# its consoles detect the terminal when created, so each command creates them itself.
PRELOAD = (
    "prefect",
    "prefect.flow_engine",
    "prefect.task_engine",
    "prefect.client.orchestration",
    "prefect.events.clients",
    "prefect.assets",
    "fastapi.encoders",
    "pandas",
    "pyarrow.parquet",
    "typer",
    "rich.console",
    "rich.progress",
    "rich.table",
    "mmflow.flows.runs",
    "mmflow.flows.invoice",
    "mmflow.flows.runners",
    "mmflow.flows.registry",
    "mmflow.tasks.invoice",
    "mmflow.deployments.local_server",
)


# ---------------------------------------------------------------- the runner process


def _watched_files() -> list[str]:
    """What the runner has loaded and could go stale: mmflow's own modules, and the package
    folders on sys.path (a `pip install` changes them)."""
    paths = [
        str(module.__file__)
        for name, module in list(sys.modules.items())
        if name.startswith("mmflow.") and getattr(module, "__file__", None)
    ]
    return paths + [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]


def _stamp(paths: list[str]) -> dict[str, int]:
    return {path: _mtime(path) for path in paths}


def _warm_versions() -> list[Path]:
    """Compute the version of every pipeline step now (a command would spend ~0.25 s reading
    their source for cache keys); returns the files those versions were read from."""
    from mmflow.tasks.caching import Step, dependency_files

    modules: set[str] = set()
    for name, module in list(sys.modules.items()):
        if name.startswith("mmflow."):
            for value in list(vars(module).values()):
                if isinstance(value, Step):
                    value.version  # noqa: B018 (a cached property: computed once, here)
                    modules.add(value.fn.__module__)
    return dependency_files(modules)


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


def _python_env(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith("PYTHON")}


def _above(limit: int, ceiling: int) -> bool:
    """Whether resource limit `limit` exceeds `ceiling` (RLIM_INFINITY above everything)."""
    if ceiling == resource.RLIM_INFINITY:
        return False
    return limit == resource.RLIM_INFINITY or limit > ceiling


def _process_refusal(request: dict[str, Any]) -> str | None:
    """Why the command process could not take the caller's resource limits or priority: only
    a privileged process may raise a hard limit or lower its niceness."""
    if os.geteuid() == 0:
        return None
    for name, (_soft, hard) in request.get("limits", {}).items():
        if _above(hard, resource.getrlimit(getattr(resource, name))[1]):
            return f"a higher {name} than the runner's"
    if int(request.get("nice", 0)) < os.getpriority(os.PRIO_PROCESS, 0):
        return "a higher priority (lower nice) than the runner's"
    return None


class Runner:
    """The listening process. Single-threaded, so that forking it is safe."""

    def __init__(self) -> None:
        self.started_at = time.time()
        self.pid = os.getpid()  # a forked session or command process has another
        self.served = 0
        self.watched: list[str] = []
        self.stamp: dict[str, int] = {}
        self.supervisor_pid: int | None = None
        self.stopping = False
        self.listener: socket.socket | None = None

    def refusal(self, request: dict[str, Any]) -> str | None:
        """Why this runner cannot serve the request, or None."""
        if request.get("protocol") != PROTOCOL:
            return "another mmflow version"
        executable = os.path.realpath(str(request.get("executable")))
        if (executable, request.get("prefix")) != (os.path.realpath(sys.executable), sys.prefix):
            return f"another Python ({request.get('executable')})"
        if _python_env(request.get("env", {})) != _python_env(dict(os.environ)):
            return "other PYTHON* settings"
        if _stamp(self.watched) != self.stamp:
            self.stopping = True  # a fresh runner, started by the next command, loads the new code
            return "mmflow or a package changed since the runner started"
        return _process_refusal(request)

    def unforkable(self) -> str | None:
        """A runner with a second thread must not fork (a lock held by that thread would stay
        held in the child for ever); none is ever started, but it is checked, and it retires."""
        import threading

        if threading.active_count() != 1:
            self.stopping = True
            return "the runner has started a thread"
        return None

    def supervisor_gone(self) -> bool:
        from mmflow.deployments import local_server

        info = local_server.read_info()
        if info is None or not local_server._alive(info.pid):
            return True
        if self.supervisor_pid is None:
            self.supervisor_pid = info.pid
        return info.pid != self.supervisor_pid

    def serve(self, listener: socket.socket) -> dict[str, Any] | None:
        """Accept commands until stopped. Returns only in a forked command process, with the
        request it is to run."""
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # session processes reap themselves
        self.listener = listener
        listener.settimeout(1.0)
        while not self.stopping:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                self.stopping = self.supervisor_gone()
                continue
            except InterruptedError:
                continue
            job = self.handle(conn)
            if job is not None:
                return job
        return None

    def handle(self, conn: socket.socket) -> dict[str, Any] | None:
        """One connection: a ping, a refusal, or a command (forked off)."""
        fds: list[int] = []
        try:
            conn.settimeout(5.0)
            uid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[1]
            if uid != os.getuid():
                return None
            request, fds = receive_message(conn, max_fds=3)
            if request.get("ping"):
                send_message(
                    conn, {"pid": os.getpid(), "started_at": self.started_at, "served": self.served}
                )
                return None
            why = self.refusal(request) or self.unforkable()
            if why is not None or len(fds) != 3:
                send_message(conn, {"refused": why or "the terminal's descriptors did not arrive"})
                _log(f"refused: {why}")
                return None
            # The caller goes ahead only now: one that gave up waiting (a runner still
            # importing on a loaded machine) runs the command itself and never says "go".
            send_message(conn, {"ready": True})
            if receive_exactly(conn, len(GO)) != GO:
                return None
            self.served += 1
            if os.fork() == 0:
                if self.listener is not None:  # a long command must not hold the address
                    self.listener.close()
                return _session(conn, request, fds)  # returns only in the command process
            return None
        except EOFError:  # a probe (ensure_running) connects and leaves
            return None
        except (OSError, ValueError) as error:
            _log(f"connection dropped: {error}")
            return None
        finally:
            if fds and os.getpid() == self.pid:
                for fd in fds:
                    os.close(fd)
            if os.getpid() == self.pid:
                conn.close()


def _log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} runner {os.getpid()}: {message}", flush=True)


def _session(conn: socket.socket, request: dict[str, Any], fds: list[int]) -> dict[str, Any]:
    """In the session process: fork the command process, tell the caller its pid, wait for
    it and send its exit status. Returns only in the command process."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    pid = os.fork()
    if pid == 0:
        conn.close()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        return request
    for fd in fds:
        os.close(fd)
    code = 1
    try:
        send_message(conn, {"pid": pid})
        started = time.perf_counter()
        code = _wait(pid, conn)
        send_message(conn, {"exit": code})
        words = list(request["argv"])  # the scenario only: options may carry secrets
        command = " ".join(words[words.index("run") :][:2] if "run" in words else words[:1])
        _log(f"{command}: exit {code} in {time.perf_counter() - started:.2f} s")
    except (OSError, ValueError):
        pass
    finally:
        os._exit(0)  # the session process never returns into the runner's loop


def _wait(pid: int, conn: socket.socket) -> int:
    """The command's exit code (minus the signal that killed it); a caller that disappears
    (its terminal closed) hangs the command up, as the terminal would have."""
    watch = os.pidfd_open(pid)
    hung_up = False
    try:
        while True:
            waiting: list[int] = [watch] if hung_up else [watch, conn.fileno()]
            ready, _, _ = select.select(waiting, [], [])
            if watch in ready:
                return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
            if not conn.recv(1, socket.MSG_PEEK):
                hung_up = True
                os.kill(pid, signal.SIGHUP)
    finally:
        os.close(watch)


def _run_command(request: dict[str, Any]) -> int:
    """In the command process: become the caller's command, and run it."""
    import io

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.setpgid(0, 0)  # its own group: the runner's stop never takes a running command along
    os.umask(int(request["umask"]))
    for name, (soft, hard) in request.get("limits", {}).items():
        resource.setrlimit(getattr(resource, name), (soft, hard))
    os.setpriority(os.PRIO_PROCESS, 0, int(request.get("nice", 0)))
    if request.get("cpus"):
        os.sched_setaffinity(0, request["cpus"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = list(request["argv"])
    sys.path[:] = request.get("path") or sys.path  # modules imported from now on
    encoding, errors = request.get("encoding") or "utf-8", request.get("errors") or "strict"
    sys.stdin = io.TextIOWrapper(open(0, "rb", closefd=False), encoding=encoding, errors=errors)  # noqa: SIM115
    for fd, name in ((1, "stdout"), (2, "stderr")):
        stream = io.TextIOWrapper(
            open(fd, "wb", buffering=0, closefd=False),  # noqa: SIM115
            encoding=encoding,
            errors="backslashreplace" if fd == 2 else errors,
            line_buffering=fd == 2 or os.isatty(fd),
            write_through=True,
        )
        setattr(sys, name, stream)
    try:
        os.chdir(request["cwd"])
    except OSError as error:
        print(f"mmflow: cannot enter {request['cwd']}: {error.strerror}", file=sys.stderr)
        return 1
    from mmflow.cli.launch import apply_env_defaults, run_here

    apply_env_defaults()
    _refresh_prefect()
    return run_here(request.get("prog_name"))


def _refresh_prefect() -> None:
    """Prefect read its settings and set up logging when the runner imported it, from the
    runner's environment; read them again from the caller's."""
    from prefect.context import refresh_global_settings_context
    from prefect.logging.configuration import setup_logging

    refresh_global_settings_context()
    setup_logging(incremental=False)


def main() -> int:
    if not enabled():
        return 0
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(address())  # taken: another runner serves this data folder
    except OSError:
        return 0
    listener.listen(16)  # callers queue here while the imports below run
    import mmflow.cli.ending as ending
    from mmflow.cli.launch import apply_env_defaults

    ending.install()  # first, so that it runs last in a command process
    apply_env_defaults()
    runner = Runner()
    if runner.supervisor_gone():
        return 0
    started = time.perf_counter()
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    runner.watched = sorted(set(_watched_files()) | {str(path) for path in _warm_versions()})
    runner.stamp = _stamp(runner.watched)
    _log(f"ready: {len(sys.modules)} modules imported in {time.perf_counter() - started:.2f} s")

    def on_term(signum: int, frame: object) -> None:
        runner.stopping = True

    signal.signal(signal.SIGTERM, on_term)
    job = runner.serve(listener)
    if job is None:
        _log(f"stopped after {runner.served} commands")
        return 0
    return _run_command(job)


if __name__ == "__main__":
    sys.exit(main())
