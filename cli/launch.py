"""The `mmflow` command's entry point.

`mmflow run …` is handed to the warm runner when one is listening (cli/warm_runner.py:
a process that has Prefect and the pipeline imported already and forks a copy of itself per
command); every other command, and every command when no runner answers or it declines, runs
in this process through `mmflow.cli.app`. This module imports nothing but the standard
library and the runner's protocol, so the hand-over costs a bare Python start (~30 ms).
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import sys
from collections.abc import Sequence

import mmflow.cli.ending as ending
import mmflow.cli.runner_client as runner_client

ENV_DEFAULTS = {
    # Prefect's own console logs would tear through the progress bar; the UI still gets them.
    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # A server started on a busy 2-core machine needs room.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}
GLOBAL_FLAGS = {"-q", "--quiet", "-v", "-vv", "-vvv", "--verbose"}
# Resource limits a command process takes from its caller (`ulimit`, a service's limits).
LIMITS = ("RLIMIT_AS", "RLIMIT_DATA", "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_CORE")
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def apply_env_defaults() -> None:
    for name, value in ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)


def prog_name(argv: Sequence[str]) -> str:
    """What usage lines call the command, as click would name it in this process: the
    script's name, or `python -m <package>`."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if not getattr(main, "__package__", None) or spec is None:
        return os.path.basename(argv[0])
    return f"python -m {spec.name.removesuffix('.__main__')}"


def run_here(name: str | None = None) -> int:
    """The command line in this process; its exit status. `name` is the program name usage
    lines show (by default click's, from this process)."""
    from mmflow.cli.app import app

    try:
        app(prog_name=name)
        code: object = 0
    except SystemExit as exit_:  # typer always ends this way
        code = exit_.code
    if isinstance(code, str):  # as Python itself: the message on stderr, status 1
        print(code, file=sys.stderr)
    status = 0 if code is None else code if isinstance(code, int) else 1
    if is_run_command(sys.argv):
        ending.end_quickly(status)
    return status


def is_run_command(argv: Sequence[str]) -> bool:
    """`mmflow [-q|-v…] run …`: the commands a warm runner serves."""
    args = list(argv[1:])
    while args and args[0] in GLOBAL_FLAGS:
        args.pop(0)
    return bool(args) and args[0] == "run"


def _terminal_open() -> bool:
    try:
        for fd in (0, 1, 2):
            os.fstat(fd)
    except OSError:
        return False
    return True


class _Relay:
    """Passes the terminal's signals on to the command the runner runs: Ctrl-C, SIGTERM,
    hang-up and quit as they come (held until the command's pid is known), and Ctrl-Z as a
    stop of both, resumed together by `fg`."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.held: list[int] = []
        for signum in FORWARDED:
            signal.signal(signum, self.forward)
        signal.signal(signal.SIGTSTP, self.suspend)

    def start(self, pid: int) -> None:
        self.pid = pid
        for signum in self.held:
            self.send(signum)

    def send(self, signum: int) -> None:
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def forward(self, signum: int, frame: object) -> None:
        if self.pid is None:
            self.held.append(signum)
        self.send(signum)

    def suspend(self, signum: int, frame: object) -> None:
        self.send(signal.SIGSTOP)  # its own process group: the terminal's stop never reaches it
        # SIGSTOP, not SIGTSTP: the kernel discards a SIGTSTP to a process whose group is
        # orphaned (a command started from a script), which would resume the command at once
        os.kill(os.getpid(), signal.SIGSTOP)  # stops here until the shell continues this process
        self.send(signal.SIGCONT)


def run_in_warm_runner(argv: Sequence[str]) -> int | None:
    """The command's exit status once the warm runner ran it; None when no runner took it
    (none listening, or it declined), and the command is to run here."""
    if not (runner_client.enabled() and is_run_command(argv) and _terminal_open()):
        return None
    sock = runner_client.connect()
    if sock is None:
        return None
    with sock:
        umask = os.umask(0o022)
        os.umask(umask)
        request = {
            "protocol": runner_client.PROTOCOL,
            "argv": list(argv),
            "cwd": os.getcwd(),
            "env": dict(os.environ),
            "umask": umask,
            "limits": {name: resource.getrlimit(getattr(resource, name)) for name in LIMITS},
            "nice": os.getpriority(os.PRIO_PROCESS, 0),
            "cpus": sorted(os.sched_getaffinity(0)),
            "path": sys.path,
            "executable": sys.executable,
            "prefix": sys.prefix,
            "prog_name": prog_name(argv),
            "encoding": sys.stdout.encoding,
            "errors": sys.stdout.errors,
        }
        try:
            runner_client.send_message(sock, request, [0, 1, 2])
            answer, _ = runner_client.receive_message(sock)
        except (OSError, EOFError, ValueError):
            return None
        if not answer.get("ready"):
            return None  # declined (answer["refused"] says why): run here
        # Committed: the runner runs the command from here on, so it never runs here too.
        relay = _Relay()
        sock.settimeout(None)
        try:
            sock.sendall(runner_client.GO)
            relay.start(int(runner_client.receive_message(sock)[0]["pid"]))
        except (OSError, EOFError, ValueError, KeyError):
            print("mmflow: the warm runner did not start the command", file=sys.stderr)
            return 1
        try:
            answer, _ = runner_client.receive_message(sock)
            code = int(answer["exit"])
        except (OSError, EOFError, ValueError, KeyError):
            print("mmflow: the warm runner ended before the command did", file=sys.stderr)
            return 1
    if code < 0:  # killed by a signal: end the same way, so the shell sees what happened
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        return 128 - code
    return code


def main() -> None:
    code = run_in_warm_runner(sys.argv)
    if code is None:
        ending.install()
        apply_env_defaults()
        code = run_here()
    sys.exit(code)
