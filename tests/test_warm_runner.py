"""The warm runner (cli/warm_runner.py): `mmflow run` served by a process that has
Prefect and the pipeline imported, behaving exactly as the command run in place.

Real processes throughout: a real local Prefect server, a real runner, the `mmflow` script
started as a user starts it, signals sent as a terminal sends them.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

import mmflow.cli.runner_client as runner_client
import mmflow.cli.warm_runner as warm_runner
from mmflow.tasks.samples import numbered_invoices, write_files

MMFLOW = str(Path(sys.executable).with_name("mmflow"))

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the runner is Linux-only")


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    env.pop(runner_client.DISABLE_ENV, None)
    return env | {"MMFLOW_HOME": str(home)} | extra


@contextmanager
def _home(home: Path) -> Iterator[None]:
    """This process looks at `home`'s runner (address() reads MMFLOW_HOME)."""
    before = os.environ.get("MMFLOW_HOME")
    os.environ["MMFLOW_HOME"] = str(home)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MMFLOW_HOME", None)
        else:
            os.environ["MMFLOW_HOME"] = before


def _ping(home: Path) -> dict[str, object] | None:
    with _home(home):
        return runner_client.ping()


def _wait_for(check: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _mmflow(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MMFLOW, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def _served(home: Path) -> list[str]:
    """The commands the runner has run (its log)."""
    log = home / "server" / "runner.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return [line for line in lines if ": run " in line and " exit " in line]


def _first_command(home: Path, work: Path) -> None:
    """The first `mmflow run` with `home` (one text PDF in work/in): it starts the local
    server, and the runner as it ends."""
    write_files(work / "in", numbered_invoices(1))
    first = _mmflow(["-q", "run", "invoice", "in", "--out", "first"], _env(home), work, timeout=600)
    assert first.returncode == 0, first.stderr
    _wait_for(lambda: _ping(home) is not None, 120, "the runner the first command starts")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """A local server started by a first `mmflow run`, and the runner that command left as it
    ended; yields (MMFLOW_HOME, a folder with one text PDF in `in/`)."""
    work = tmp_path_factory.mktemp("warm")
    home = work / "home"
    try:
        _first_command(home, work)
        yield home, work
    finally:
        _mmflow(["server", "stop"], _env(home), work)


def test_the_first_command_leaves_a_runner_that_serves_the_next_one_as_if_in_place(
    served: tuple[Path, Path],
) -> None:
    home, work = served
    env = _env(home)
    before = len(_served(home))
    warm = _mmflow(["-q", "run", "invoice", "in", "--out", "warm"], env, work)
    assert warm.returncode == 0, warm.stderr
    assert len(_served(home)) == before + 1  # the runner ran it
    assert "1 ok, 0 rejected, 0 failed" in warm.stdout  # on the caller's own stdout
    in_place = _mmflow(
        ["-q", "run", "invoice", "in", "--out", "in-place"],
        _env(home, MMFLOW_WARM_RUNNER="0"),
        work,
    )
    assert in_place.returncode == 0, in_place.stderr
    assert len(_served(home)) == before + 1  # not the runner
    # relative paths are the caller's, and the results are the same
    ran, local = (
        json.loads((work / o / "invoice-10000.json").read_text()) for o in ("warm", "in-place")
    )
    assert ran["fields"] == local["fields"] and ran["checks"] == local["checks"]
    status = _mmflow(["server", "status"], env, work)
    assert "ready (pid" in status.stdout
    # the run, its state and its logs are on the server, as for a command run in place
    run_id = json.loads((work / "warm" / "manifest.jsonl").read_text())["trace"]["run_id"]
    api = json.loads((home / "server" / "server.json").read_text())["url"]
    flow_run = httpx.get(f"{api}/flow_runs/{run_id}", timeout=30).json()
    assert flow_run["state"]["type"] == "COMPLETED"
    query = {"logs": {"flow_run_id": {"any_": [run_id]}}}
    logs = httpx.post(f"{api}/logs/filter", json=query, timeout=30).json()
    assert any(log["message"].startswith("Beginning flow run") for log in logs)


def test_exit_statuses_usage_lines_and_the_callers_environment_carry_over(
    served: tuple[Path, Path],
) -> None:
    home, work = served
    env = _env(home)
    before = len(_served(home))
    usage = _mmflow(["run", "invoice", "--bogus"], env, work)
    assert usage.returncode == 2
    assert "Usage: mmflow run invoice" in usage.stderr  # the script's name, not the runner's
    missing = _mmflow(["-q", "run", "invoice", "missing.pdf", "--out", "m"], env, work)
    assert missing.returncode == 1
    assert "not_found" in (work / "m" / "manifest.jsonl").read_text()
    # Prefect's console logs follow the caller's environment (and -v), not the runner's
    quiet = _mmflow(["run", "invoice", "in", "--out", "q"], env, work)
    loud = _mmflow(
        ["run", "invoice", "in", "--out", "l"],
        env | {"PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "INFO"},
        work,
    )
    verbose = _mmflow(["-v", "run", "invoice", "in", "--out", "v"], env, work)
    assert "Finished in state" not in quiet.stderr + quiet.stdout
    assert "Finished in state" in loud.stderr + loud.stdout
    assert "Finished in state" in verbose.stderr + verbose.stdout
    assert len(_served(home)) == before + 5


def _long_run(
    home: Path, folder: Path, command: list[str], **popen: Any
) -> tuple[subprocess.Popen[Any], Path]:
    """`mmflow <command> invoice` over 300 text PDFs, once its first input has ended; the
    caller and its manifest."""
    write_files(folder / "many", numbered_invoices(300))
    caller = subprocess.Popen(
        [MMFLOW, *command, "invoice", "many", "--out", "out"],
        env=_env(home),
        cwd=folder,
        stdout=subprocess.DEVNULL,
        **({"stderr": subprocess.DEVNULL} | popen),
    )
    manifest = folder / "out" / "manifest.jsonl"
    _wait_for(lambda: manifest.exists() and manifest.stat().st_size > 0, 120, "the first input")
    return caller, manifest


def test_ctrl_c_reaches_the_command_which_stops_gently(
    served: tuple[Path, Path], tmp_path: Path
) -> None:
    """SIGINT to the caller (what the terminal sends on Ctrl-C) is forwarded: the run stops
    starting inputs, every input still ends in the manifest, the status is 130."""
    caller, manifest = _long_run(served[0], tmp_path, ["run"], stderr=subprocess.PIPE, text=True)
    caller.send_signal(signal.SIGINT)
    _, err = caller.communicate(timeout=120)
    assert caller.returncode == 130, err
    assert "Stopping" in err
    assert len(manifest.read_text().splitlines()) == 300


def _command_process(cwd: Path) -> int:
    """The runner's command process working in `cwd`."""
    for entry in Path("/proc").iterdir():
        try:
            here = (entry / "cwd").resolve() == cwd.resolve()
            runner = b"mmflow.cli.warm_runner" in (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if here and runner:
            return int(entry.name)
    raise AssertionError(f"no command process in {cwd}")


def _state(pid: int) -> str:
    """The process's state letter (R, S, T for stopped…), from /proc."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


def _limit_them() -> None:
    os.nice(3)
    resource.setrlimit(resource.RLIMIT_NOFILE, (900, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))


def test_a_command_takes_its_callers_priority_and_limits_and_a_signal_ends_both(
    served: tuple[Path, Path], tmp_path: Path
) -> None:
    """`nice mmflow run …` and `ulimit` hold for the command the runner forks; Ctrl-Z stops
    it with its caller; a command killed by a signal ends its caller the same way."""
    home = served[0]
    caller, _ = _long_run(home, tmp_path, ["-q", "run"], preexec_fn=_limit_them)
    command = _command_process(tmp_path)
    assert os.getpriority(os.PRIO_PROCESS, command) == os.getpriority(os.PRIO_PROCESS, caller.pid)
    assert os.getpriority(os.PRIO_PROCESS, command) >= 3
    limits = Path(f"/proc/{command}/limits").read_text()
    assert any(
        line.startswith("Max open files") and " 900 " in line for line in limits.splitlines()
    )
    # Ctrl-Z stops both, `fg` (SIGCONT to the caller) resumes both
    caller.send_signal(signal.SIGTSTP)
    _wait_for(lambda: _state(command) == "T" and _state(caller.pid) == "T", 30, "both stopped")
    caller.send_signal(signal.SIGCONT)
    _wait_for(lambda: _state(command) != "T" and _state(caller.pid) != "T", 30, "both resumed")
    caller.send_signal(signal.SIGTERM)
    assert caller.wait(timeout=120) == -signal.SIGTERM
    _wait_for(lambda: any("exit -15" in line for line in _served(home)), 30, "the runner's log")


def test_other_python_settings_are_declined_and_the_command_runs_in_place(
    served: tuple[Path, Path],
) -> None:
    home, work = served
    before = len(_served(home))
    done = _mmflow(
        ["-q", "run", "invoice", "in", "--out", "declined"], _env(home, PYTHONHASHSEED="7"), work
    )
    assert done.returncode == 0, done.stderr
    assert (work / "declined" / "invoice-10000.json").exists()
    assert len(_served(home)) == before
    log = (home / "server" / "runner.log").read_text()
    assert "refused: other PYTHON* settings" in log


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_another_user_cannot_use_the_runner(served: tuple[Path, Path]) -> None:
    """Abstract sockets have no file permissions: the runner checks who connected."""
    home, _ = served
    with _home(home):
        address = runner_client.address()
    probe = (
        "import json, socket, struct, sys\n"
        "s = socket.socket(socket.AF_UNIX); s.connect('\\0' + sys.argv[1]); s.settimeout(30)\n"
        "body = json.dumps({'protocol': 1, 'ping': True}).encode()\n"
        "try:\n"
        "    s.sendall(struct.pack('!I', len(body)) + body)\n"
        "    print('answer', s.recv(100))\n"
        "except (BrokenPipeError, ConnectionResetError):\n"
        "    print('closed')\n"
    )
    system_python = Path("/usr/bin/python3")  # the venv under /root is not theirs to run
    if not system_python.exists():
        pytest.skip("no /usr/bin/python3 to run as another user")
    done = subprocess.run(
        [str(system_python), "-c", probe, address.removeprefix("\0")],
        user=65534,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() in ("closed", "answer b''")  # turned away, no answer
    assert _ping(home) is not None  # while its own user is served


def test_server_stop_ends_the_runner_too(tmp_path: Path) -> None:
    home = tmp_path / "home"
    try:
        _first_command(home, tmp_path)
    finally:
        stopped = _mmflow(["server", "stop"], _env(home), tmp_path)
    assert stopped.returncode == 0
    assert _ping(home) is None


# ---------------------------------------------------------------- the runner's own checks


def _request(**changes: object) -> dict[str, object]:
    return {
        "protocol": runner_client.PROTOCOL,
        "executable": sys.executable,
        "prefix": sys.prefix,
        "env": dict(os.environ),
    } | changes


def test_a_runner_declines_another_interpreter_and_retires_once_its_code_changed(
    tmp_path: Path,
) -> None:
    runner = warm_runner.Runner()
    source = tmp_path / "module.py"
    source.write_text("x = 1\n")
    runner.watched = [str(source)]
    runner.stamp = warm_runner._stamp(runner.watched)
    assert runner.refusal(_request()) is None
    assert "another Python" in str(runner.refusal(_request(prefix="/elsewhere")))
    assert "PYTHON" in str(runner.refusal(_request(env=dict(os.environ) | {"PYTHONPATH": "x"})))
    assert runner.stopping is False
    low = _request(limits={"RLIMIT_NOFILE": (64, 64)}, nice=os.getpriority(os.PRIO_PROCESS, 0))
    assert runner.refusal(low) is None  # lowering a limit is anyone's right
    os.utime(source, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert "changed" in str(runner.refusal(_request()))
    assert runner.stopping is True  # the next command starts a fresh one


def test_only_run_commands_go_to_the_runner() -> None:
    from mmflow.cli.launch import is_run_command

    assert is_run_command(["mmflow", "run", "invoice", "x.pdf"])
    assert is_run_command(["mmflow", "-q", "-v", "run", "meeting", "a.wav"])
    assert not is_run_command(["mmflow", "server", "stop"])
    assert not is_run_command(["mmflow", "eval", "run", "core"])
    assert not is_run_command(["mmflow"])


def test_an_unprivileged_runner_declines_what_it_could_not_grant(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only a privileged process may raise a hard limit or lower its niceness: a caller
    asking for either runs its command in place instead."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    runner = warm_runner.Runner()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY:
        above = _request(limits={"RLIMIT_NOFILE": (64, resource.RLIM_INFINITY)})
        assert "RLIMIT_NOFILE" in str(runner.refusal(above))
    eager = _request(nice=os.getpriority(os.PRIO_PROCESS, 0) - 1)
    assert "priority" in str(runner.refusal(eager))
    assert warm_runner._above(resource.RLIM_INFINITY, 10)
    assert not warm_runner._above(10, resource.RLIM_INFINITY)
